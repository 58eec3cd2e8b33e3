/* SPDX-License-Identifier: Apache-2.0 */
/* One registered VM: its cgroup, policy, BPF links, resolver socket and the
 * name -> address bindings its DNS answers created. */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>

#include "log.h"
#include "netd.h"
#include "sbx-error.h"

uint64_t now_boottime_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_BOOTTIME, &ts);
        return (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec;
}

bool netd_log_refusal_ok(Netd *n) {
        uint64_t now = now_boottime_ns() / 1000;

        if (now - n->log_window_usec >= 1000000) {
                if (n->log_suppressed > 0)
                        log_notice("refused: %u more refusals not logged (rate limit)", n->log_suppressed);
                n->log_window_usec = now;
                n->log_count = 0;
                n->log_suppressed = 0;
        }
        if (n->log_count >= NETD_LOG_BURST) {
                n->log_suppressed++;
                return false;
        }
        n->log_count++;
        return true;
}

const char *ip4_to_string(uint32_t addr, char buf[static 16]) {
        struct in_addr a = {.s_addr = addr};

        return inet_ntop(AF_INET, &a, buf, 16) ?: "?";
}

/* The same ranges as classify4() in bpf/netd.bpf.c. */
bool netd_addr_blocked(const Netd *n, uint32_t addr) {
        static const struct {
                uint32_t net;
                unsigned bits;
                bool never;
        } ranges[] = {
                {0x00000000, 8, true},   {0x7f000000, 8, true},   {0xa9fe0000, 16, true},  {0xe0000000, 4, true},
                {0xf0000000, 4, true},   {0x0a000000, 8, false},  {0xac100000, 12, false}, {0xc0a80000, 16, false},
                {0x64400000, 10, false}, {0xc0000000, 24, false}, {0xc6120000, 15, false},
        };
        uint32_t a = ntohl(addr);

        (void) n; /* private ranges the admin allows are checked by the BPF programs */
        for (size_t i = 0; i < ELEMENTSOF(ranges); i++)
                if ((a >> (32 - ranges[i].bits)) == (ranges[i].net >> (32 - ranges[i].bits)))
                        return ranges[i].never;
        return false;
}

static int cgroup_id_of(int fd, uint64_t *ret) {
        union {
                struct file_handle fh;
                uint8_t buf[sizeof(struct file_handle) + sizeof(uint64_t)];
        } h = {.fh.handle_bytes = sizeof(uint64_t)};
        int mnt;

        if (name_to_handle_at(fd, "", &h.fh, &mnt, AT_EMPTY_PATH) < 0)
                return -errno;
        if (h.fh.handle_bytes != sizeof(uint64_t))
                return -EOPNOTSUPP;
        memcpy(ret, h.fh.f_handle, sizeof(uint64_t));
        return 0;
}

/* The path must name a cgroup2 directory strictly below the configured root. */
static int open_cgroup(const Netd *n, const char *path, uid_t peer_uid, SbxError *error) {
        size_t rl = strlen(n->cgroup_root);
        _cleanup_close_ int fd = -EBADF;
        struct statfs sfs;
        struct stat st;

        if (strncmp(path, n->cgroup_root, rl) != 0 || path[rl] != '/' || path[rl + 1] == 0 || strstr(path, "/..") ||
            strstr(path, "//") || strlen(path) > 4096)
                return sbx_error_set(error, -EINVAL, "cgroup path must be below %s", n->cgroup_root);
        fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) {
                int k = errno;
                return sbx_error_set(error, -k, "cannot open cgroup %s: %s", path, strerror(k));
        }
        if (fstatfs(fd, &sfs) < 0 || sfs.f_type != CGROUP2_SUPER_MAGIC || fstat(fd, &st) < 0)
                return sbx_error_set(error, -EINVAL, "%s is not a cgroup2 directory", path);
        if (peer_uid != 0 && st.st_uid != peer_uid)
                return sbx_error_set(error, -EPERM, "cgroup %s is not owned by the caller", path);
        return TAKE_FD(fd);
}

int netd_vm_new(Netd *n, const char *cgroup_path, uid_t peer_uid, bool full, char *const *patterns, size_t n_patterns,
                const NetdExpose *expose, size_t n_expose, NetdVm **ret, SbxError *error) {
        _cleanup_close_ int cgfd = -EBADF;
        NetdVm *vm;
        uint64_t id = 0;
        int r;

        if (n->n_vms >= NETD_MAX_VMS)
                return sbx_error_set(error, -EBUSY, "too many registered VMs");
        if (n_patterns > NETD_MAX_DOMAINS)
                return sbx_error_set(error, -E2BIG, "too many allowed domains");
        cgfd = open_cgroup(n, cgroup_path, peer_uid, error);
        if (cgfd < 0)
                return cgfd;
        r = cgroup_id_of(cgfd, &id);
        if (r < 0)
                return sbx_error_set(error, r, "cannot get the id of cgroup %s: %s", cgroup_path, strerror(-r));
        if (netd_vm_find(n, id))
                return sbx_error_set(error, -EEXIST, "cgroup %s is already registered", cgroup_path);

        vm = calloc(1, sizeof *vm);
        if (!vm)
                return sbx_error_set_errno(error, -ENOMEM);
        vm->netd = n;
        vm->dns_fd = -EBADF;
        vm->cgroup_id = id;
        vm->full = full;
        vm->cgroup_path = strdup(cgroup_path);
        if (!vm->cgroup_path) {
                r = sbx_error_set_errno(error, -ENOMEM);
                goto fail;
        }
        snprintf(vm->label, sizeof vm->label, "%s", strrchr(cgroup_path, '/') + 1);
        if (!full && n_patterns > 0) {
                vm->patterns = calloc(n_patterns, sizeof *vm->patterns);
                if (!vm->patterns) {
                        r = sbx_error_set_errno(error, -ENOMEM);
                        goto fail;
                }
                for (size_t i = 0; i < n_patterns; i++) {
                        r = domain_pattern_normalize(patterns[i], vm->patterns[i]);
                        if (r < 0) {
                                r = sbx_error_set(error, r, "invalid allowed domain \"%.64s\"", patterns[i]);
                                goto fail;
                        }
                }
                vm->n_patterns = n_patterns;
        }

        r = netd_dns_open(vm);
        if (r < 0) {
                r = sbx_error_set(error, r, "cannot open the resolver socket: %s", strerror(-r));
                goto fail;
        }
        struct netd_vm policy = {.flags = full ? NETD_VM_FULL : 0, .dns_port = vm->dns_port};
        r = netd_bpf_vm_set(n->bpf, id, &policy);
        if (r < 0) {
                r = sbx_error_set(error, r, "cannot store the policy: %s", strerror(-r));
                goto fail;
        }
        for (size_t i = 0; i < n_expose; i++) {
                r = netd_bpf_expose(n->bpf, id, expose[i].port, expose[i].udp ? IPPROTO_UDP : IPPROTO_TCP);
                if (r < 0) {
                        r = sbx_error_set(error, r, "cannot store the exposed ports: %s", strerror(-r));
                        goto fail;
                }
        }
        r = netd_bpf_attach(n->bpf, cgfd, vm->links, &vm->n_links);
        if (r < 0) {
                r = sbx_error_set(error, r, "cannot attach BPF programs to %s: %s", cgroup_path, strerror(-r));
                goto fail;
        }

        vm->next = n->vms;
        n->vms = vm;
        n->n_vms++;
        log_info("registered vm=%s cgroup=%s id=%llu %s%zu domain(s), resolver 127.0.0.1:%u", vm->label, cgroup_path,
                 (unsigned long long) id, full ? "full outbound access, " : "", vm->n_patterns, vm->dns_port);
        *ret = vm;
        return 0;

fail:
        netd_bpf_detach(vm->links, &vm->n_links);
        netd_bpf_vm_remove(n->bpf, id);
        netd_dns_close(vm);
        free(vm->patterns);
        free(vm->cgroup_path);
        free(vm);
        return r;
}

NetdVm *netd_vm_free(NetdVm *vm) {
        Netd *n;

        if (!vm)
                return NULL;
        n = vm->netd;
        for (NetdVm **p = &n->vms; *p; p = &(*p)->next)
                if (*p == vm) {
                        *p = vm->next;
                        n->n_vms--;
                        break;
                }
        netd_bpf_detach(vm->links, &vm->n_links);
        netd_bpf_vm_remove(n->bpf, vm->cgroup_id);
        netd_dns_close(vm);
        log_info("unregistered vm=%s (programs detached, map entries removed)", vm->label);
        free(vm->bindings);
        free(vm->patterns);
        free(vm->cgroup_path);
        free(vm);
        return NULL;
}

NetdVm *netd_vm_find(Netd *n, uint64_t cgroup_id) {
        for (NetdVm *vm = n->vms; vm; vm = vm->next)
                if (vm->cgroup_id == cgroup_id)
                        return vm;
        return NULL;
}

bool netd_vm_name_allowed(const NetdVm *vm, const char *name) {
        if (vm->full)
                return true;
        for (size_t i = 0; i < vm->n_patterns; i++)
                if (domain_pattern_match(vm->patterns[i], name))
                        return true;
        return false;
}

void netd_vm_learn(NetdVm *vm, const char *name, uint32_t addr, uint32_t ttl) {
        uint64_t now = now_boottime_ns();
        uint64_t expires = now + (uint64_t) MIN(MAX(ttl, NETD_TTL_MIN), NETD_TTL_MAX) * 1000000000ull;
        NameBinding *b = NULL;
        char ip[16];
        int r;

        for (size_t i = 0; i < vm->n_bindings; i++)
                if (vm->bindings[i].addr == addr && strcmp(vm->bindings[i].name, name) == 0) {
                        b = &vm->bindings[i];
                        break;
                }
        if (!b) {
                if (vm->n_bindings >= NETD_MAX_BINDINGS) {
                        netd_vm_gc(vm, now);
                        if (vm->n_bindings >= NETD_MAX_BINDINGS) {
                                log_warning("vm=%s: too many resolved addresses, not adding %s for %s", vm->label,
                                            ip4_to_string(addr, ip), name);
                                return;
                        }
                }
                if (vm->n_bindings % 64 == 0) {
                        NameBinding *nb = realloc(vm->bindings, (vm->n_bindings + 64) * sizeof *nb);
                        if (!nb) {
                                log_oom();
                                return;
                        }
                        vm->bindings = nb;
                }
                b = &vm->bindings[vm->n_bindings++];
                snprintf(b->name, sizeof b->name, "%s", name);
                b->addr = addr;
                b->expires_ns = 0;
        }
        b->expires_ns = MAX(b->expires_ns, expires);
        r = netd_bpf_allow(vm->netd->bpf, vm->cgroup_id, addr, b->expires_ns);
        if (r < 0)
                log_warning_errno(r, "vm=%s: cannot allow %s: %m", vm->label, ip4_to_string(addr, ip));
        else
                log_debug("vm=%s: %s -> %s for %us", vm->label, name, ip4_to_string(addr, ip), ttl);
}

bool netd_vm_bound(const NetdVm *vm, const char *name, uint32_t addr) {
        uint64_t now = now_boottime_ns();

        for (size_t i = 0; i < vm->n_bindings; i++)
                if (vm->bindings[i].addr == addr && strcmp(vm->bindings[i].name, name) == 0)
                        return vm->bindings[i].expires_ns + NETD_TTL_GRACE_NS > now;
        return false;
}

void netd_vm_gc(NetdVm *vm, uint64_t now) {
        size_t j = 0;

        for (size_t i = 0; i < vm->n_bindings; i++)
                if (vm->bindings[i].expires_ns + NETD_TTL_GRACE_NS > now)
                        vm->bindings[j++] = vm->bindings[i];
        vm->n_bindings = j;
}
