/* SPDX-License-Identifier: Apache-2.0 */
/* sbx-netd: network policy for networked VMs. See docs/network.md. */

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include <bpf/libbpf.h>
#include <systemd/sd-daemon.h>

#include "log.h"
#include "netd.h"
#include "user.h"

#define GC_INTERVAL_USEC (5 * 1000000ull)

static const char *hook_name(uint8_t hook) {
        switch (hook) {
        case NETD_HOOK_CONNECT4:
                return "connect4";
        case NETD_HOOK_CONNECT6:
                return "connect6";
        case NETD_HOOK_SENDMSG4:
                return "sendmsg4";
        case NETD_HOOK_SENDMSG6:
                return "sendmsg6";
        case NETD_HOOK_EGRESS:
                return "egress";
        default:
                return "?";
        }
}

static const char *reason_name(uint8_t reason) {
        switch (reason) {
        case NETD_REASON_NO_POLICY:
                return "no policy for this cgroup";
        case NETD_REASON_BLOCKED_RANGE:
                return "blocked address range";
        case NETD_REASON_NOT_RESOLVED:
                return "address not resolved through DNS for this VM";
        case NETD_REASON_IPV6:
                return "IPv6 (incl. IPv4-mapped) is not allowed";
        case NETD_REASON_UDP:
                return "UDP other than DNS (incl. QUIC) is not allowed";
        case NETD_REASON_PROTOCOL:
                return "protocol not allowed";
        default:
                return "?";
        }
}

static void on_bpf_event(const struct netd_event *e, void *userdata) {
        Netd *n = userdata;
        NetdVm *vm = netd_vm_find(n, e->cgroup_id);
        char addr[INET6_ADDRSTRLEN];

        if (e->hook == NETD_HOOK_CONNECT6 || e->hook == NETD_HOOK_SENDMSG6 ||
            (e->hook == NETD_HOOK_EGRESS && e->reason == NETD_REASON_IPV6))
                inet_ntop(AF_INET6, e->addr6, addr, sizeof addr);
        else
                inet_ntop(AF_INET, &e->addr, addr, sizeof addr);
        if (netd_log_refusal_ok(n))
                log_notice("refused: vm=%s %s %s port %u proto %u: %s", vm ? vm->label : "?", hook_name(e->hook), addr,
                           e->port, e->protocol, reason_name(e->reason));
}

static int on_bpf_events(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Netd *n = userdata;

        (void) s;
        (void) fd;
        (void) revents;
        (void) netd_bpf_events_consume(n->bpf);
        return 0;
}

static int on_gc(sd_event_source *s, uint64_t usec, void *userdata) {
        Netd *n = userdata;
        uint64_t now = now_boottime_ns();

        for (NetdVm *vm = n->vms; vm; vm = vm->next)
                netd_vm_gc(vm, now);
        if (now > NETD_TTL_GRACE_NS)
                netd_bpf_allow_gc(n->bpf, now - NETD_TTL_GRACE_NS);
        (void) sd_event_source_set_time(s, usec + GC_INTERVAL_USEC);
        return 0;
}

static int libbpf_log(enum libbpf_print_level level, const char *fmt, va_list ap) {
        if (level == LIBBPF_DEBUG && log_get_max_level() < LOG_DEBUG)
                return 0;
        return vfprintf(stderr, fmt, ap);
}

static int parse_upstream(const char *s, struct sockaddr_in *ret) {
        char host[64];
        const char *colon = strrchr(s, ':');
        unsigned long port = 53;

        if (colon) {
                char *end;
                port = strtoul(colon + 1, &end, 10);
                if (*end || port == 0 || port > 65535 || (size_t) (colon - s) >= sizeof host)
                        return -EINVAL;
                memcpy(host, s, (size_t) (colon - s));
                host[colon - s] = 0;
        } else if (snprintf(host, sizeof host, "%s", s) >= (int) sizeof host)
                return -EINVAL;
        *ret = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t) port)};
        return inet_pton(AF_INET, host, &ret->sin_addr) == 1 ? 0 : -EINVAL;
}

/* The first IPv4 nameserver of /etc/resolv.conf. */
static int default_upstream(struct sockaddr_in *ret) {
        _cleanup_fclose_ FILE *f = fopen("/etc/resolv.conf", "re");
        char line[256], addr[64];

        if (!f)
                return -errno;
        while (fgets(line, sizeof line, f))
                if (sscanf(line, " nameserver %63s", addr) == 1 && parse_upstream(addr, ret) == 0)
                        return 0;
        return -ENOENT;
}

static int parse_cidr(const char *s, uint32_t *addr, uint8_t *len) {
        char buf[32];
        const char *slash = strchr(s, '/');
        char *end;
        unsigned long l = 32;

        if (slash) {
                l = strtoul(slash + 1, &end, 10);
                if (*end || l > 32 || (size_t) (slash - s) >= sizeof buf)
                        return -EINVAL;
                memcpy(buf, s, (size_t) (slash - s));
                buf[slash - s] = 0;
        } else if (snprintf(buf, sizeof buf, "%s", s) >= (int) sizeof buf)
                return -EINVAL;
        if (inet_pton(AF_INET, buf, addr) != 1)
                return -EINVAL;
        *len = (uint8_t) l;
        return 0;
}

/* /sys/fs/cgroup when it is the cgroup2 (unified) hierarchy, else the hybrid layout's unified/. */
static const char *default_cgroup_root(void) {
        struct statfs sfs;

        if (statfs("/sys/fs/cgroup", &sfs) == 0 && sfs.f_type == CGROUP2_SUPER_MAGIC)
                return "/sys/fs/cgroup";
        return "/sys/fs/cgroup/unified";
}

static void help(void) {
        printf("sbx-netd [OPTIONS]\n"
               "  --control PATH       control socket (default " NETD_CONTROL_SOCKET ")\n"
               "  --upstream IP[:PORT] upstream DNS resolver (default: first nameserver of /etc/resolv.conf)\n"
               "  --proxy-port PORT    port of the SNI/Host proxy on 127.0.0.1 (default: any free one)\n"
               "  --cgroup-root PATH   registered cgroups must be below it (default: the cgroup2 mount,\n"
               "                       /sys/fs/cgroup or /sys/fs/cgroup/unified)\n"
               "  --allow-uid UID      besides root, a uid (or user name) that may register VMs (repeatable)\n"
               "  --allow-range CIDR   a private IPv4 range VMs may reach (repeatable; never loopback or\n"
               "                       link-local)\n");
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                {"help", no_argument, NULL, 'h'},
                {"control", required_argument, NULL, 'c'},
                {"upstream", required_argument, NULL, 'u'},
                {"proxy-port", required_argument, NULL, 'p'},
                {"cgroup-root", required_argument, NULL, 'g'},
                {"allow-uid", required_argument, NULL, 'U'},
                {"allow-range", required_argument, NULL, 'R'},
                {},
        };
        Netd n = {
                .control_path = NETD_CONTROL_SOCKET,
                .cgroup_root = default_cgroup_root(),
                .proxy_fd = -EBADF,
                .control_fd = -EBADF,
        };
        struct {
                uint32_t addr;
                uint8_t len;
        } ranges[NETD_MAX_ALLOW_RANGES];
        size_t n_ranges = 0;
        unsigned long proxy_port = 0;
        bool have_upstream = false;
        sd_event_source *events_source = NULL;
        int c, r;

        log_set_ident("sbx-netd");
        log_parse_environment();

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case 'c':
                        n.control_path = optarg;
                        break;
                case 'u':
                        if (parse_upstream(optarg, &n.upstream) < 0) {
                                log_error("invalid --upstream %s", optarg);
                                return 2;
                        }
                        have_upstream = true;
                        break;
                case 'p': {
                        char *end;
                        proxy_port = strtoul(optarg, &end, 10);
                        if (*end || proxy_port > 65535) {
                                log_error("invalid --proxy-port %s", optarg);
                                return 2;
                        }
                        break;
                }
                case 'g':
                        n.cgroup_root = optarg;
                        break;
                case 'U':
                        if (n.n_allow_uids >= NETD_MAX_ALLOW_UIDS ||
                            sbx_parse_uid(optarg, &n.allow_uids[n.n_allow_uids]) < 0) {
                                log_error("invalid --allow-uid %s", optarg);
                                return 2;
                        }
                        n.n_allow_uids++;
                        break;
                case 'R':
                        if (n_ranges >= NETD_MAX_ALLOW_RANGES ||
                            parse_cidr(optarg, &ranges[n_ranges].addr, &ranges[n_ranges].len) < 0) {
                                log_error("invalid --allow-range %s", optarg);
                                return 2;
                        }
                        n_ranges++;
                        break;
                default:
                        return 2;
                }
        if (optind < argc) {
                log_error("unexpected argument %s", argv[optind]);
                return 2;
        }
        if (!have_upstream && default_upstream(&n.upstream) < 0) {
                log_error("no upstream resolver: give --upstream IP[:PORT]");
                return 1;
        }
        libbpf_set_print(libbpf_log);

        r = sd_event_default(&n.event);
        if (r < 0)
                return log_error_errno(r, "cannot create the event loop: %m"), 1;
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);
        (void) sd_event_add_signal(n.event, NULL, SIGTERM, NULL, NULL);
        (void) sd_event_add_signal(n.event, NULL, SIGINT, NULL, NULL);

        r = netd_proxy_open(&n, (uint16_t) proxy_port);
        if (r < 0) {
                log_error_errno(r, "cannot listen on 127.0.0.1:%lu: %m", proxy_port);
                goto finish;
        }
        r = netd_bpf_load(n.proxy_port, &n.bpf);
        if (r < 0) {
                log_error_errno(r, "cannot load the BPF programs (CAP_BPF and CAP_NET_ADMIN needed): %m");
                goto finish;
        }
        for (size_t i = 0; i < n_ranges; i++) {
                char ip[16];
                if (netd_addr_blocked(&n, ranges[i].addr) && ranges[i].len >= 8 &&
                    (ntohl(ranges[i].addr) >> 24 == 127 || ntohl(ranges[i].addr) >> 16 == 0xa9fe))
                        log_warning("--allow-range %s/%u: loopback and link-local stay blocked",
                                    ip4_to_string(ranges[i].addr, ip), ranges[i].len);
                r = netd_bpf_admin_allow(n.bpf, ranges[i].addr, ranges[i].len);
                if (r < 0) {
                        log_error_errno(r, "cannot store --allow-range: %m");
                        goto finish;
                }
        }
        r = netd_bpf_events_open(n.bpf, on_bpf_event, &n);
        if (r >= 0)
                r = sd_event_add_io(n.event, &events_source, netd_bpf_events_fd(n.bpf), EPOLLIN, on_bpf_events, &n);
        if (r < 0) {
                log_error_errno(r, "cannot watch the refusal ring buffer: %m");
                goto finish;
        }
        r = sd_event_add_time_relative(n.event, &n.gc_timer, CLOCK_MONOTONIC, GC_INTERVAL_USEC, 0, on_gc, &n);
        if (r >= 0)
                r = sd_event_source_set_enabled(n.gc_timer, SD_EVENT_ON);
        if (r < 0)
                goto finish;
        r = netd_control_open(&n);
        if (r < 0) {
                log_error_errno(r, "cannot listen on %s: %m", n.control_path);
                goto finish;
        }

        char up[16];
        log_info("ready: control %s, proxy 127.0.0.1:%u, upstream resolver %s:%u", n.control_path, n.proxy_port,
                 ip4_to_string(n.upstream.sin_addr.s_addr, up), ntohs(n.upstream.sin_port));
        (void) sd_notify(0, "READY=1");
        r = sd_event_loop(n.event);
        (void) sd_notify(0, "STOPPING=1");
        log_info("stopping: unregistering %zu VM(s)", n.n_vms);

finish:
        netd_control_close(&n); /* frees every VM: links detached, map entries removed */
        while (n.vms)
                netd_vm_free(n.vms);
        netd_proxy_close(&n);
        sd_event_source_disable_unref(events_source);
        sd_event_source_disable_unref(n.gc_timer);
        n.bpf = netd_bpf_free(n.bpf);
        sd_event_unref(n.event);
        return r < 0 ? 1 : 0;
}
