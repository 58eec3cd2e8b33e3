/* SPDX-License-Identifier: Apache-2.0 */
/* The transparent proxy for ports 80 and 443 of domain-restricted VMs. The
 * connect4 program sends those connections here and records where they were
 * going; the proxy reads the TLS ClientHello (or the HTTP request head),
 * checks that its server name is allowed AND that DNS gave this VM the
 * original destination address for that very name, then connects there
 * itself and relays bytes both ways. */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http-host.h"
#include "log.h"
#include "netd.h"
#include "tls-sni.h"

#define PROXY_MAX_CONNS 1024
#define PROXY_HELLO_TIMEOUT_USEC (10 * 1000000ull)
#define PROXY_BUF (TLS_RECORD_MAX + 16)

typedef struct Flow {
        uint8_t buf[PROXY_BUF];
        size_t len, off;
        bool eof, shut;
} Flow;

struct ProxyConn {
        Netd *netd;
        ProxyConn *next;
        int client_fd, upstream_fd;
        sd_event_source *client_io, *upstream_io, *timer;
        struct netd_orig orig;
        char label[64];
        bool connecting, relaying;
        Flow up, down; /* client -> upstream, upstream -> client */
};

static ProxyConn *conn_free(ProxyConn *c) {
        if (!c)
                return NULL;
        for (ProxyConn **i = &c->netd->proxy_conns; *i; i = &(*i)->next)
                if (*i == c) {
                        *i = c->next;
                        c->netd->n_proxy_conns--;
                        break;
                }
        sd_event_source_disable_unref(c->client_io);
        sd_event_source_disable_unref(c->upstream_io);
        sd_event_source_disable_unref(c->timer);
        safe_close(c->client_fd);
        safe_close(c->upstream_fd);
        free(c);
        return NULL;
}

/* Refuses with a reset, so the client sees a failure at once. */
static void conn_refuse(ProxyConn *c) {
        struct linger l = {.l_onoff = 1, .l_linger = 0};

        (void) setsockopt(c->client_fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        conn_free(c);
}

/* Moves what it can in one direction. Returns <0 on a hard error. */
static int flow_pump(Flow *f, int src, int dst) {
        for (;;) {
                bool progress = false;

                if (f->off == f->len && !f->eof) {
                        ssize_t n = recv(src, f->buf, sizeof f->buf, MSG_DONTWAIT);
                        if (n > 0) {
                                f->len = (size_t) n;
                                f->off = 0;
                                progress = true;
                        } else if (n == 0) {
                                f->eof = true;
                                progress = true;
                        } else if (errno != EAGAIN && errno != EINTR)
                                return -errno;
                }
                if (f->off < f->len) {
                        ssize_t n = send(dst, f->buf + f->off, f->len - f->off, MSG_DONTWAIT | MSG_NOSIGNAL);
                        if (n > 0) {
                                f->off += (size_t) n;
                                progress = true;
                        } else if (n < 0 && errno != EAGAIN && errno != EINTR)
                                return -errno;
                }
                if (f->eof && f->off == f->len && !f->shut) {
                        (void) shutdown(dst, SHUT_WR);
                        f->shut = true;
                }
                if (!progress)
                        return 0;
        }
}

static void conn_relay(ProxyConn *c) {
        if (flow_pump(&c->up, c->client_fd, c->upstream_fd) < 0 ||
            flow_pump(&c->down, c->upstream_fd, c->client_fd) < 0) {
                conn_free(c);
                return;
        }
        if (c->up.shut && c->down.shut) {
                conn_free(c);
                return;
        }
        uint32_t ce = (c->up.off == c->up.len && !c->up.eof ? EPOLLIN : 0) | (c->down.off < c->down.len ? EPOLLOUT : 0);
        uint32_t ue =
                (c->down.off == c->down.len && !c->down.eof ? EPOLLIN : 0) | (c->up.off < c->up.len ? EPOLLOUT : 0);
        (void) sd_event_source_set_io_events(c->client_io, ce);
        (void) sd_event_source_set_io_events(c->upstream_io, ue);
        (void) sd_event_source_set_enabled(c->client_io, ce ? SD_EVENT_ON : SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(c->upstream_io, ue ? SD_EVENT_ON : SD_EVENT_OFF);
}

static int on_upstream_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        ProxyConn *c = userdata;

        (void) s;
        if (c->connecting) {
                int err = 0;
                socklen_t el = sizeof err;
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err != 0) {
                        char ip[16];
                        log_info_errno(err ?: errno, "vm=%s: upstream %s:%u failed: %m", c->label,
                                       ip4_to_string(c->orig.addr, ip), ntohs(c->orig.port));
                        conn_refuse(c);
                        return 0;
                }
                c->connecting = false;
                c->relaying = true;
        }
        (void) revents;
        conn_relay(c);
        return 0;
}

static int on_client_io(sd_event_source *s, int fd, uint32_t revents, void *userdata);

/* The first bytes are complete: decide, then connect upstream. */
static void conn_decide(ProxyConn *c, const char *name) {
        Netd *n = c->netd;
        NetdVm *vm = netd_vm_find(n, c->orig.cgroup_id);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = c->orig.addr, .sin_port = c->orig.port};
        char ip[16];
        int r;

        ip4_to_string(c->orig.addr, ip);
        if (!vm) {
                if (netd_log_refusal_ok(c->netd))
                        log_notice("refused: proxy %s:%u for a VM that is no longer registered", ip,
                                   ntohs(c->orig.port));
                conn_refuse(c);
                return;
        }
        if (!netd_vm_name_allowed(vm, name)) {
                if (netd_log_refusal_ok(c->netd))
                        log_notice("refused: vm=%s proxy %s:%u name %s not allowed", vm->label, ip, ntohs(c->orig.port),
                                   name);
                conn_refuse(c);
                return;
        }
        if (!netd_vm_bound(vm, name, c->orig.addr)) {
                if (netd_log_refusal_ok(c->netd))
                        log_notice("refused: vm=%s proxy %s:%u name %s: DNS did not give this address for it",
                                   vm->label, ip, ntohs(c->orig.port), name);
                conn_refuse(c);
                return;
        }
        if (netd_addr_blocked(n, c->orig.addr)) {
                if (netd_log_refusal_ok(c->netd))
                        log_notice("refused: vm=%s proxy %s:%u blocked address", vm->label, ip, ntohs(c->orig.port));
                conn_refuse(c);
                return;
        }

        c->upstream_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->upstream_fd < 0 ||
            (connect(c->upstream_fd, (struct sockaddr *) &sa, sizeof sa) < 0 && errno != EINPROGRESS)) {
                log_info_errno(errno, "vm=%s: cannot connect to %s:%u: %m", vm->label, ip, ntohs(c->orig.port));
                conn_refuse(c);
                return;
        }
        r = sd_event_add_io(n->event, &c->upstream_io, c->upstream_fd, EPOLLOUT, on_upstream_io, c);
        if (r < 0) {
                conn_refuse(c);
                return;
        }
        c->connecting = true;
        c->timer = sd_event_source_disable_unref(c->timer);
        (void) sd_event_source_set_enabled(c->client_io, SD_EVENT_OFF);
        log_info("vm=%s proxy %s:%u name %s allowed", vm->label, ip, ntohs(c->orig.port), name);
}

static int on_client_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        ProxyConn *c = userdata;
        char name[DOMAIN_NAME_MAX + 1], ip[16];
        int r;

        (void) s;
        (void) revents;
        if (c->relaying) {
                conn_relay(c);
                return 0;
        }
        ssize_t n = recv(fd, c->up.buf + c->up.len, sizeof c->up.buf - c->up.len, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        if (n <= 0) {
                conn_free(c);
                return 0;
        }
        c->up.len += (size_t) n;

        if (ntohs(c->orig.port) == 443) {
                r = tls_client_hello_sni(c->up.buf, c->up.len, name);
        } else {
                r = http_request_host(c->up.buf, c->up.len, name);
                if (r == -EAGAIN && c->up.len >= HTTP_HEADER_MAX)
                        r = -EMSGSIZE;
        }
        if (r == -EAGAIN)
                return 0;
        if (r < 0) {
                const char *why = r == -ENOENT     ? "no server name"
                                  : r == -EPROTO   ? "Encrypted Client Hello"
                                  : r == -EMSGSIZE ? "request head too long"
                                                   : "not a TLS ClientHello or HTTP/1 request";
                if (netd_log_refusal_ok(c->netd))
                        log_notice("refused: vm=%s proxy %s:%u: %s", c->label, ip4_to_string(c->orig.addr, ip),
                                   ntohs(c->orig.port), why);
                conn_refuse(c);
                return 0;
        }
        conn_decide(c, name);
        return 0;
}

static int on_hello_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        ProxyConn *c = userdata;
        char ip[16];

        (void) s;
        (void) usec;
        if (netd_log_refusal_ok(c->netd))
                log_notice("refused: vm=%s proxy %s:%u: no request within 10 s", c->label,
                           ip4_to_string(c->orig.addr, ip), ntohs(c->orig.port));
        conn_refuse(c);
        return 0;
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Netd *n = userdata;
        struct sockaddr_in peer;
        socklen_t pl = sizeof peer;
        ProxyConn *c;
        NetdVm *vm;
        int cfd, r;

        (void) s;
        (void) revents;
        cfd = accept4(fd, (struct sockaddr *) &peer, &pl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0)
                return 0;
        c = calloc(1, sizeof *c);
        if (!c) {
                safe_close(cfd);
                return 0;
        }
        c->netd = n;
        c->client_fd = cfd;
        c->upstream_fd = -EBADF;
        c->next = n->proxy_conns;
        n->proxy_conns = c;
        n->n_proxy_conns++;

        if (pl != sizeof peer || peer.sin_addr.s_addr != htonl(INADDR_LOOPBACK) ||
            netd_bpf_take_proxy_orig(n->bpf, ntohs(peer.sin_port), &c->orig) < 0) {
                if (netd_log_refusal_ok(c->netd))
                        log_notice("refused: proxy connection from port %u that no VM was redirected from",
                                   ntohs(peer.sin_port));
                conn_refuse(c);
                return 0;
        }
        vm = netd_vm_find(n, c->orig.cgroup_id);
        snprintf(c->label, sizeof c->label, "%s", vm ? vm->label : "?");
        if (n->n_proxy_conns > PROXY_MAX_CONNS) {
                log_warning("refused: vm=%s proxy: too many connections", c->label);
                conn_refuse(c);
                return 0;
        }
        r = sd_event_add_io(n->event, &c->client_io, cfd, EPOLLIN, on_client_io, c);
        if (r >= 0)
                r = sd_event_add_time_relative(n->event, &c->timer, CLOCK_MONOTONIC, PROXY_HELLO_TIMEOUT_USEC, 0,
                                               on_hello_timeout, c);
        if (r < 0)
                conn_free(c);
        return 0;
}

int netd_proxy_open(Netd *n, uint16_t port) {
        struct sockaddr_in sa = {
                .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = htons(port)};
        socklen_t sl = sizeof sa;
        int one = 1;

        n->proxy_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (n->proxy_fd < 0)
                return -errno;
        (void) setsockopt(n->proxy_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(n->proxy_fd, (struct sockaddr *) &sa, sizeof sa) < 0 || listen(n->proxy_fd, 128) < 0 ||
            getsockname(n->proxy_fd, (struct sockaddr *) &sa, &sl) < 0)
                return -errno;
        n->proxy_port = ntohs(sa.sin_port);
        return sd_event_add_io(n->event, &n->proxy_source, n->proxy_fd, EPOLLIN, on_accept, n);
}

void netd_proxy_close(Netd *n) {
        while (n->proxy_conns)
                conn_free(n->proxy_conns);
        n->proxy_source = sd_event_source_disable_unref(n->proxy_source);
        n->proxy_fd = safe_close(n->proxy_fd);
}
