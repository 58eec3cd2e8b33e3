/* SPDX-License-Identifier: Apache-2.0 */
/* Each VM's resolver: a UDP socket on 127.0.0.1 to which the BPF programs
 * send the VM's DNS traffic. Allowed names are resolved upstream and their
 * A records are allowed for that VM until their TTL runs out; every other
 * name gets NXDOMAIN, so names that are not allowed never leave the host. */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dns-packet.h"
#include "log.h"
#include "netd.h"

#define DNS_UPSTREAM_TIMEOUT_USEC (3 * 1000000ull)
#define DNS_MAX_PENDING 64
#define DNS_MAX_ADDRESSES 32
/* HTTPS and SVCB carry address hints and ECH keys; AAAA is of no use without IPv6. */
#define DNS_TYPE_AAAA 28
#define DNS_TYPE_SVCB 64
#define DNS_TYPE_HTTPS 65

struct DnsPending {
        NetdVm *vm;
        DnsPending *next;
        DnsQuery q; /* with the upstream id */
        uint16_t client_id;
        struct sockaddr_in client;
        int fd;
        sd_event_source *io, *timer;
};

static void reply(NetdVm *vm, const struct sockaddr_in *to, const uint8_t *msg, size_t len) {
        if (sendto(vm->dns_fd, msg, len, MSG_DONTWAIT | MSG_NOSIGNAL, (const struct sockaddr *) to, sizeof *to) < 0)
                log_debug_errno(errno, "vm=%s: cannot send a DNS reply: %m", vm->label);
}

static DnsPending *pending_free(DnsPending *p) {
        if (!p)
                return NULL;
        for (DnsPending **i = &p->vm->pending; *i; i = &(*i)->next)
                if (*i == p) {
                        *i = p->next;
                        p->vm->n_pending--;
                        break;
                }
        sd_event_source_disable_unref(p->io);
        sd_event_source_disable_unref(p->timer);
        safe_close(p->fd);
        free(p);
        return NULL;
}

static int on_upstream_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        DnsPending *p = userdata;

        (void) s;
        (void) usec;
        log_info("vm=%s: upstream resolver did not answer for %s", p->vm->label, p->q.name);
        pending_free(p);
        return 0;
}

static int on_upstream(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        DnsPending *p = userdata;
        NetdVm *vm = p->vm;
        DnsAddress addrs[DNS_MAX_ADDRESSES];
        uint8_t buf[DNS_MESSAGE_MAX];
        size_t na = 0;
        uint8_t rcode;
        ssize_t n;
        int r;

        (void) s;
        (void) revents;
        n = recv(fd, buf, sizeof buf, MSG_DONTWAIT | MSG_TRUNC);
        if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                        return 0;
                log_info_errno(errno, "vm=%s: upstream resolver error for %s: %m", vm->label, p->q.name);
                pending_free(p);
                return 0;
        }
        if ((size_t) n > sizeof buf)
                return 0; /* too big: ignore, wait for the timeout */
        r = dns_parse_response(buf, (size_t) n, &p->q, addrs, ELEMENTSOF(addrs), &na, &rcode);
        if (r < 0)
                return 0; /* not the answer to our question: keep waiting */

        for (size_t i = 0; i < na; i++) {
                char ip[16];
                if (netd_addr_blocked(vm->netd, addrs[i].addr)) {
                        if (netd_log_refusal_ok(vm->netd))
                                log_notice("refused: vm=%s dns %s answered with blocked address %s (not allowed)",
                                           vm->label, p->q.name, ip4_to_string(addrs[i].addr, ip));
                        continue;
                }
                netd_vm_learn(vm, p->q.name, addrs[i].addr, addrs[i].ttl);
        }
        buf[0] = (uint8_t) (p->client_id >> 8);
        buf[1] = (uint8_t) p->client_id;
        reply(vm, &p->client, buf, (size_t) n);
        pending_free(p);
        return 0;
}

static int forward(NetdVm *vm, const DnsQuery *q, const uint8_t *msg, size_t len, const struct sockaddr_in *client) {
        Netd *n = vm->netd;
        uint8_t buf[DNS_MESSAGE_MAX];
        DnsPending *p;
        uint16_t id;
        int r;

        if (vm->n_pending >= DNS_MAX_PENDING)
                return -EBUSY;
        if (getrandom(&id, sizeof id, 0) != sizeof id)
                return -EIO;
        p = calloc(1, sizeof *p);
        if (!p)
                return -ENOMEM;
        p->vm = vm;
        p->q = *q;
        p->q.id = id;
        p->client_id = q->id;
        p->client = *client;
        p->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        p->next = vm->pending;
        vm->pending = p;
        vm->n_pending++;
        if (p->fd < 0) {
                r = -errno;
                goto fail;
        }
        if (connect(p->fd, (const struct sockaddr *) &n->upstream, sizeof n->upstream) < 0) {
                r = -errno;
                goto fail;
        }
        memcpy(buf, msg, len);
        buf[0] = (uint8_t) (id >> 8);
        buf[1] = (uint8_t) id;
        if (send(p->fd, buf, len, MSG_NOSIGNAL) < 0) {
                r = -errno;
                goto fail;
        }
        r = sd_event_add_io(n->event, &p->io, p->fd, EPOLLIN, on_upstream, p);
        if (r < 0)
                goto fail;
        r = sd_event_add_time_relative(n->event, &p->timer, CLOCK_MONOTONIC, DNS_UPSTREAM_TIMEOUT_USEC, 0,
                                       on_upstream_timeout, p);
        if (r < 0)
                goto fail;
        return 0;
fail:
        pending_free(p);
        return r;
}

static void handle_query(NetdVm *vm, const uint8_t *msg, size_t len, const struct sockaddr_in *client) {
        uint8_t out[DNS_MESSAGE_MAX];
        DnsQuery q;
        int r, k;

        r = dns_parse_query(msg, len, &q);
        if (r == -EBADMSG) {
                if (netd_log_refusal_ok(vm->netd))
                        log_notice("refused: vm=%s dns malformed query (%zu bytes)", vm->label, len);
                k = dns_build_formerr(msg, len, out, sizeof out);
                if (k > 0)
                        reply(vm, client, out, (size_t) k);
                return;
        }
        if (r < 0) {
                if (netd_log_refusal_ok(vm->netd))
                        log_notice("refused: vm=%s dns unsupported query (opcode, class or name)", vm->label);
                k = q.question_end > 0 ? dns_build_empty_reply(&q, msg, len, DNS_RCODE_REFUSED, out, sizeof out)
                                       : dns_build_formerr(msg, len, out, sizeof out);
                if (k > 0) {
                        out[3] = (uint8_t) ((out[3] & 0xf0) | DNS_RCODE_REFUSED);
                        reply(vm, client, out, (size_t) k);
                }
                return;
        }

        if (!netd_vm_name_allowed(vm, q.name)) {
                if (netd_log_refusal_ok(vm->netd))
                        log_notice("refused: vm=%s dns %s type %u: name not allowed (NXDOMAIN)", vm->label, q.name,
                                   q.qtype);
                k = dns_build_empty_reply(&q, msg, len, DNS_RCODE_NXDOMAIN, out, sizeof out);
                if (k > 0)
                        reply(vm, client, out, (size_t) k);
                return;
        }
        if (q.qtype == DNS_TYPE_AAAA || q.qtype == DNS_TYPE_HTTPS || q.qtype == DNS_TYPE_SVCB ||
            (!vm->full && q.qtype != DNS_TYPE_A && q.qtype != DNS_TYPE_CNAME)) {
                /* An allowed name, but a type the VM cannot use: no data. */
                k = dns_build_empty_reply(&q, msg, len, DNS_RCODE_NOERROR, out, sizeof out);
                if (k > 0)
                        reply(vm, client, out, (size_t) k);
                return;
        }
        r = forward(vm, &q, msg, len, client);
        if (r < 0) {
                log_warning_errno(r, "vm=%s: cannot forward the query for %s: %m", vm->label, q.name);
                k = dns_build_empty_reply(&q, msg, len, DNS_RCODE_SERVFAIL, out, sizeof out);
                if (k > 0)
                        reply(vm, client, out, (size_t) k);
        }
}

static int on_query(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        NetdVm *vm = userdata;

        (void) s;
        (void) revents;
        for (int i = 0; i < 32; i++) { /* bounded, so one VM cannot starve the others */
                uint8_t buf[DNS_MESSAGE_MAX];
                struct sockaddr_in from;
                socklen_t fl = sizeof from;
                ssize_t n = recvfrom(fd, buf, sizeof buf, MSG_DONTWAIT | MSG_TRUNC, (struct sockaddr *) &from, &fl);
                if (n < 0)
                        break;
                if (fl != sizeof from || from.sin_family != AF_INET || (size_t) n > sizeof buf)
                        continue;
                handle_query(vm, buf, (size_t) n, &from);
        }
        return 0;
}

int netd_dns_open(NetdVm *vm) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t sl = sizeof sa;
        int r;

        vm->dns_fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (vm->dns_fd < 0)
                return -errno;
        if (bind(vm->dns_fd, (struct sockaddr *) &sa, sizeof sa) < 0 ||
            getsockname(vm->dns_fd, (struct sockaddr *) &sa, &sl) < 0)
                return -errno;
        vm->dns_port = ntohs(sa.sin_port);
        r = sd_event_add_io(vm->netd->event, &vm->dns_source, vm->dns_fd, EPOLLIN, on_query, vm);
        return r < 0 ? r : 0;
}

void netd_dns_close(NetdVm *vm) {
        while (vm->pending)
                pending_free(vm->pending);
        vm->dns_source = sd_event_source_disable_unref(vm->dns_source);
        vm->dns_fd = safe_close(vm->dns_fd);
}
