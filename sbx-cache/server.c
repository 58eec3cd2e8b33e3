/* SPDX-License-Identifier: Apache-2.0 */
/* sbx-cache's socket: accepts clients, checks them (SO_PEERCRED, SO_PEERGROUPS), and answers their
 * requests (cache-proto.h). Lookups and list are answered at once; an INSERT is copied and hashed
 * by a child process (ingest.c) so that lookups never wait behind 256 MiB of I/O. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cache.h"
#include "fdio.h"
#include "ingest.h"
#include "list.h"
#include "log.h"
#include "macro.h"
#include "cache-request.h"

static void conn_free(Conn *k);

static Build *build_find(Cache *c, const char *key) {
        for (size_t i = 0; i < CACHE_MAX_BUILDS; i++)
                if (c->builds[i].key[0] && strcmp(c->builds[i].key, key) == 0)
                        return &c->builds[i];
        return NULL;
}

static void build_release(Build *b) {
        if (b->owner)
                b->owner->build = NULL;
        b->child = sd_event_source_disable_unref(b->child);
        *b = (Build){};
}

static bool key_busy(const char *key, void *userdata) {
        return build_find(userdata, key) != NULL;
}

static int send_reply(Conn *k, SbxMsg *m) {
        int r = framed_conn_send(&k->conn, m);
        sbx_msg_done(m);
        return r;
}

/* A reply with a formatted note: K_ERROR (with error), or K_BUILD / K_MISS (with key). */
static int send_note(Conn *k, uint8_t type, int error, const char *key, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));
static int send_note(Conn *k, uint8_t type, int error, const char *key, const char *fmt, ...) {
        char note[SBX_CACHE_NOTE_MAX + 1];
        va_list ap;
        SbxMsg m;

        va_start(ap, fmt);
        vsnprintf(note, sizeof note, fmt, ap);
        va_end(ap);
        sbx_msg_begin(&m, type);
        if (type == SBX_K_ERROR)
                sbx_msg_put_i32(&m, SBX_CT_ERRNO, error);
        if (key)
                sbx_msg_put_str(&m, SBX_CT_KEY, key);
        sbx_msg_put_str(&m, SBX_CT_NOTE, note);
        return send_reply(k, &m);
}
#define send_error(k, error, ...) send_note(k, SBX_K_ERROR, error, NULL, __VA_ARGS__)
#define send_miss(k, type, key, ...) send_note(k, type, 0, key, __VA_ARGS__)

/* Opens KEY's files read-only for the client and marks the entry used (LRU). */
static int send_hit(Conn *k, const char *key, const SnapshotMeta *meta) {
        Cache *c = k->cache;
        _cleanup_close_ int kfd = -EBADF, ram = -EBADF, state = -EBADF;
        SbxMsg m;

        kfd = openat(c->store.dir_fd, key, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (kfd < 0)
                return -errno;
        ram = openat(kfd, "ram", O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        state = openat(kfd, "state", O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (ram < 0 || state < 0)
                return -errno;
        (void) utimensat(kfd, "meta", NULL, AT_SYMLINK_NOFOLLOW);

        sbx_msg_begin(&m, SBX_K_HIT);
        sbx_msg_put_str(&m, SBX_CT_KEY, key);
        sbx_msg_put_u64(&m, SBX_CT_GENERATION, meta->created_usec);
        sbx_msg_put_str(&m, SBX_CT_LANGUAGE, meta->language);
        sbx_msg_put_str(&m, SBX_CT_QEMU_VERSION, meta->qemu_version);
        int fds[2] = {ram, state};
        int r = framed_conn_send_with_fds(&k->conn, &m, fds, 2);
        sbx_msg_done(&m);
        if (r >= 0)
                k->cache->n_hits++;
        return r;
}

static int handle_lookup(Conn *k, const CacheRequest *q, int fds[4]) {
        Cache *c = k->cache;
        char key[SNAPSHOT_KEY_SIZE], note[SBX_CACHE_NOTE_MAX + 1];
        const char *reason = NULL;
        SnapshotMeta meta;
        int r;

        r = snapshot_key(&c->store, fds, q->settings, key);
        if (r < 0)
                return send_error(k, -r, "cannot compute the cache key (%s)", strerror(-r));

        r = snapshot_validate(&c->store, key, q->memory_mb, &meta, &reason);
        if (r > 0) {
                r = send_hit(k, key, &meta);
                if (r >= 0) {
                        log_debug("Lookup %.12s by uid %d: hit.", key, (int) k->uid);
                        return 0;
                }
                return send_miss(k, SBX_K_MISS, key, "the snapshot could not be opened (%s)", strerror(-r));
        }
        if (build_find(c, key))
                return send_miss(k, SBX_K_MISS, key, "another worker is building the snapshot");
        if (r < 0) {
                log_warning("L1 snapshot %.12s is invalid (%s): dropping it, it will be rebuilt.", key, reason);
                (void) snapshot_drop(&c->store, key);
                snprintf(note, sizeof note, "the snapshot was invalid (%s) and was dropped; rebuilt", reason);
        } else
                snprintf(note, sizeof note, "no snapshot yet; built");

        uint64_t need = (uint64_t) q->memory_mb << 20;
        if (c->max_bytes < need)
                return send_miss(k, SBX_K_MISS, key, "cache_max_mb = %" PRIu64 " is too small for a snapshot",
                                 c->max_bytes >> 20);
        if (k->build)
                return send_error(k, EBUSY, "this connection already builds a snapshot");
        Build *b = NULL;
        for (size_t i = 0; i < CACHE_MAX_BUILDS && !b; i++)
                if (!c->builds[i].key[0])
                        b = &c->builds[i];
        if (!b)
                return send_miss(k, SBX_K_MISS, key, "too many snapshots are being built");
        r = snapshot_evict(&c->store, c->max_bytes, need, key_busy, c);
        if (r > 0)
                log_info("Evicted %d L1 snapshot(s) to stay under %" PRIu64 " MiB.", r, c->max_bytes >> 20);
        *b = (Build){.owner = k, .memory_mb = q->memory_mb};
        memcpy(b->key, key, sizeof b->key);
        k->build = b;
        log_info("L1 snapshot %.12s: uid %d builds it (%s).", key, (int) k->uid, note);
        return send_miss(k, SBX_K_BUILD, key, "%s", note);
}

static int on_ingest_exit(sd_event_source *s, const siginfo_t *si, void *userdata) {
        Build *b = userdata;
        Cache *c = NULL;
        (void) s;

        bool ok = si->si_code == CLD_EXITED && si->si_status == 0;
        int err = si->si_code == CLD_EXITED ? si->si_status : EINTR;
        if (ok) {
                log_debug("Ingest of %.12s done.", b->key);
        } else
                log_warning("Storing L1 snapshot %.12s failed (%s).", b->key, strerror(err));
        if (b->owner) {
                c = b->owner->cache;
                if (ok) {
                        SbxMsg m;
                        sbx_msg_begin(&m, SBX_K_DONE);
                        sbx_msg_put_str(&m, SBX_CT_KEY, b->key);
                        sbx_msg_put_u32(&m, SBX_CT_COUNT, 1);
                        (void) send_reply(b->owner, &m);
                } else
                        (void) send_error(b->owner, err, "storing the snapshot failed (%s)", strerror(err));
        }
        if (ok && c)
                c->n_builds++;
        build_release(b);
        return 0;
}

static int handle_insert(Conn *k, const CacheRequest *q, int fds[2]) {
        Cache *c = k->cache;
        Build *b = k->build;
        pid_t pid;

        if (!b || strcmp(b->key, q->key) != 0 || b->pid != 0)
                return send_error(k, EPERM, "no build of this key was granted to this connection");
        SnapshotMeta m = {.memory_mb = b->memory_mb, .save_ms = q->save_ms};
        snprintf(m.language, sizeof m.language, "%s", q->language);
        snprintf(m.qemu_version, sizeof m.qemu_version, "%s", q->qemu_version);

        pid = fork();
        if (pid < 0)
                return send_error(k, errno, "cannot start the copy (%m)");
        if (pid == 0) {
                /* A new daemon removes .tmp directories at start: we must not outlive this one. */
                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (getppid() == 1)
                        _exit(EINTR);
                int r = snapshot_ingest(&c->store, b->key, &m, fds[0], fds[1]);
                if (r < 0) {
                        char tmp[96], path[700];
                        snprintf(tmp, sizeof tmp, "%.64s.tmp-%d", b->key, (int) getpid());
                        snprintf(path, sizeof path, "%s/%s", c->store.path, tmp);
                        (void) rm_rf(path);
                        _exit(MIN(-r, 255));
                }
                _exit(0);
        }
        b->pid = pid;
        int r = sd_event_add_child(c->event, &b->child, pid, WEXITED, on_ingest_exit, b);
        if (r < 0) {
                /* Cannot watch it: wait for it here (rare; the copy takes well under a second). */
                siginfo_t si = {};
                (void) waitid(P_PID, (id_t) pid, &si, WEXITED);
                return on_ingest_exit(NULL, &si, b);
        }
        return 0;
}

static void handle_bad(Conn *k, const CacheRequest *q) {
        Cache *c = k->cache;
        SnapshotMeta meta;
        const char *reason;

        /* Only the entry the client was given: a rebuilt one has another generation. */
        if (snapshot_validate(&c->store, q->key, 0, &meta, &reason) > 0 && meta.created_usec == q->generation &&
            !build_find(c, q->key)) {
                log_warning("L1 snapshot %.12s failed to restore for uid %d (%s): dropping it, it will be rebuilt.",
                            q->key, (int) k->uid, q->note[0] ? q->note : "no reason given");
                (void) snapshot_drop(&c->store, q->key);
        }
}

static bool matches(const CacheRequest *q, const char *name) {
        if (q->n_prefixes == 0)
                return true;
        for (size_t i = 0; i < q->n_prefixes; i++)
                if (strncmp(name, q->prefixes[i], strlen(q->prefixes[i])) == 0)
                        return true;
        return false;
}

static int handle_list(Conn *k) {
        Cache *c = k->cache;
        _cleanup_free_ SnapshotEntry *l = NULL;
        size_t n = 0;
        SbxMsg m;
        int r;

        r = snapshot_list(&c->store, &l, &n);
        if (r < 0)
                return send_error(k, -r, "cannot list the cache (%s)", strerror(-r));
        for (size_t i = 0; i < n; i++) {
                const SnapshotEntry *e = &l[i];
                sbx_msg_begin(&m, SBX_K_ENTRY);
                sbx_msg_put_str(&m, SBX_CT_KEY, e->name);
                sbx_msg_put_u8(&m, SBX_CT_VALID, e->valid_meta);
                if (e->valid_meta) {
                        sbx_msg_put_str(&m, SBX_CT_LANGUAGE, e->meta.language);
                        sbx_msg_put_u32(&m, SBX_CT_MEMORY_MB, e->meta.memory_mb);
                        sbx_msg_put_str(&m, SBX_CT_QEMU_VERSION, e->meta.qemu_version);
                        sbx_msg_put_u64(&m, SBX_CT_STATE_SIZE, e->meta.state_size);
                        sbx_msg_put_u64(&m, SBX_CT_CREATED_USEC, e->meta.created_usec);
                }
                sbx_msg_put_u64(&m, SBX_CT_DISK_BYTES, e->disk_bytes);
                sbx_msg_put_u64(&m, SBX_CT_APPARENT_BYTES, e->apparent_bytes);
                sbx_msg_put_u64(&m, SBX_CT_LAST_USED, (uint64_t) MAX(e->last_used_sec, (int64_t) 0));
                r = send_reply(k, &m);
                if (r < 0)
                        return r;
        }
        sbx_msg_begin(&m, SBX_K_DONE);
        sbx_msg_put_u32(&m, SBX_CT_COUNT, (uint32_t) n);
        sbx_msg_put_u64(&m, SBX_CT_MAX_BYTES, c->max_bytes);
        sbx_msg_put_str(&m, SBX_CT_PATH, c->store.path);
        return send_reply(k, &m);
}

/* PURGE drops the matching entries; VERIFY re-hashes them and drops the bad ones. VERIFY runs in
 * the event loop: it is an administrator's command, and lookups wait (they fall back to cold). */
static int handle_purge_or_verify(Conn *k, const CacheRequest *q) {
        Cache *c = k->cache;
        _cleanup_free_ SnapshotEntry *l = NULL;
        size_t n = 0;
        uint32_t count = 0, skipped = 0;
        char note[SBX_CACHE_NOTE_MAX + 1];
        SbxMsg m;
        int r;

        r = snapshot_list(&c->store, &l, &n);
        if (r < 0)
                return send_error(k, -r, "cannot list the cache (%s)", strerror(-r));
        for (size_t i = 0; i < n; i++) {
                if (!matches(q, l[i].name))
                        continue;
                if (build_find(c, l[i].name)) {
                        skipped++;
                        continue;
                }
                if (q->type == SBX_C_VERIFY) {
                        const char *reason = NULL;
                        r = snapshot_verify(&c->store, l[i].name, &reason);
                        if (r >= 0)
                                continue;
                        log_warning("L1 snapshot %.12s failed verification (%s): dropping it.", l[i].name,
                                    reason ?: strerror(-r));
                }
                if (snapshot_drop(&c->store, l[i].name) >= 0)
                        count++;
        }
        log_info("%s by uid %d: %" PRIu32 " snapshot(s) dropped, %" PRIu32 " skipped (being built).",
                 q->type == SBX_C_VERIFY ? "Verify" : "Purge", (int) k->uid, count, skipped);
        snprintf(note, sizeof note, "%" PRIu32 " skipped (being built)", skipped);
        sbx_msg_begin(&m, SBX_K_DONE);
        sbx_msg_put_u32(&m, SBX_CT_COUNT, count);
        sbx_msg_put_str(&m, SBX_CT_NOTE, note);
        return send_reply(k, &m);
}

static int refuse(Conn *k, const char *what) {
        k->cache->n_refused++;
        log_warning("Refused %s for uid %d: not allowed.", what, (int) k->uid);
        return send_error(k, EACCES, "access denied: uid %d may not %s", (int) k->uid, what);
}

/* One frame. Returns < 0 to drop the connection. */
static int conn_handle(Conn *k, uint8_t type, const uint8_t *p, size_t n) {
        CacheRequest q;
        const char *reason;
        int fds[4] = {-EBADF, -EBADF, -EBADF, -EBADF};
        int r;

        r = cache_request_parse(type, p, n, &q, &reason);
        if (r < 0) {
                log_warning("Bad request from uid %d: %s; closing the connection.", (int) k->uid, reason);
                (void) send_error(k, EBADMSG, "bad request: %s", reason);
                return r;
        }
        for (unsigned i = 0; i < q.n_fds; i++) {
                fds[i] = framed_conn_take_fd(&k->conn);
                if (fds[i] < 0) {
                        for (unsigned j = 0; j < i; j++)
                                safe_close(fds[j]);
                        (void) send_error(k, EBADMSG, "bad request: fds missing");
                        return -EBADMSG;
                }
        }

        switch (type) {
        case SBX_C_LOOKUP:
                r = k->may_use ? handle_lookup(k, &q, fds) : refuse(k, "use the cache");
                break;
        case SBX_C_INSERT:
                r = k->may_use ? handle_insert(k, &q, fds) : refuse(k, "use the cache");
                break;
        case SBX_C_BAD:
                if (k->may_use)
                        handle_bad(k, &q);
                else
                        k->cache->n_refused++;
                r = 0;
                break;
        case SBX_C_LIST:
                r = k->may_use || k->is_admin ? handle_list(k) : refuse(k, "list the cache");
                break;
        default: /* PURGE, VERIFY */
                r = k->is_admin ? handle_purge_or_verify(k, &q)
                                : refuse(k, type == SBX_C_PURGE ? "purge the cache" : "verify the cache");
        }
        for (unsigned i = 0; i < q.n_fds; i++)
                safe_close(fds[i]);
        /* Whatever came along that this frame does not take is not trusted to belong to the next one. */
        for (int f; (f = framed_conn_take_fd(&k->conn)) >= 0;)
                safe_close(f);
        return r < 0 && r != -EPROTO ? r : 0;
}

static int on_conn_frame(FramedConn *c, uint8_t type, const uint8_t *p, size_t n, void *userdata) {
        Conn *k = userdata;
        (void) c;

        int r = conn_handle(k, type, p, n);
        if (r < 0) {
                if (r == -ENOBUFS)
                        log_warning("Client uid %d does not read its replies; closing the connection.", (int) k->uid);
                conn_free(k);
                return 1;
        }
        return 0;
}

static void on_conn_close(FramedConn *c, int error, void *userdata) {
        Conn *k = userdata;
        (void) c;

        if (error == -ETIMEDOUT)
                log_warning("Client uid %d does not read its replies; closing the connection.", (int) k->uid);
        conn_free(k);
}

static void conn_free(Conn *k) {
        Cache *c = k->cache;

        if (k->build) {
                /* Granted but never inserted: free the key. An ingest already running goes on. */
                if (k->build->pid == 0)
                        build_release(k->build);
                else
                        k->build->owner = NULL;
        }
        for (int f; (f = framed_conn_take_fd(&k->conn)) >= 0;)
                safe_close(f);
        framed_conn_close(&k->conn);
        LIST_REMOVE(c->conns, c->conns_tail, k);
        c->n_conns--;
        free(k);
}

static bool peer_in_group(int fd, gid_t primary, gid_t want) {
        gid_t groups[256];
        socklen_t len = sizeof groups;

        if (primary == want)
                return true;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0)
                return false;
        for (size_t i = 0; i < len / sizeof(gid_t); i++)
                if (groups[i] == want)
                        return true;
        return false;
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Cache *c = userdata;
        struct ucred cred;
        socklen_t len = sizeof cred;
        (void) s;
        (void) revents;

        int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (cfd < 0)
                return 0;
        if (c->n_conns >= CACHE_MAX_CONNECTIONS || getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
                log_warning("Refusing a client: %s.",
                            c->n_conns >= CACHE_MAX_CONNECTIONS ? "too many" : "no credentials");
                safe_close(cfd);
                return 0;
        }
        Conn *k = calloc(1, sizeof *k);
        if (!k) {
                safe_close(cfd);
                return 0;
        }
        k->cache = c;
        k->uid = cred.uid;
        k->may_use = cred.uid == 0;
        for (size_t i = 0; i < c->n_allow_uids; i++)
                k->may_use |= cred.uid == c->allow_uids[i];
        k->is_admin = cred.uid == 0 || (c->have_admin_gid && peer_in_group(cfd, cred.gid, c->admin_gid));
        if (framed_conn_open(&k->conn, c->event, "cache client", cfd, SBX_CACHE_FRAME_MAX, CACHE_CONN_OUT_MAX,
                             on_conn_frame, on_conn_close, k) < 0 ||
            framed_conn_set_stall_timeout(&k->conn, CACHE_CONN_STALL_USEC) < 0) {
                framed_conn_close(&k->conn);
                free(k);
                return 0;
        }
        framed_conn_set_recv_fds(&k->conn, true);
        LIST_APPEND(c->conns, c->conns_tail, k);
        c->n_conns++;
        if (!k->may_use && !k->is_admin)
                log_debug("Client uid %d may not use the cache; its requests will be refused.", (int) cred.uid);
        return 0;
}

int cache_listen_start(Cache *c) {
        (void) fd_set_nonblock(c->listen_fd, 1);
        return sd_event_add_io(c->event, &c->listen_io, c->listen_fd, EPOLLIN, on_accept, c);
}

void cache_done(Cache *c) {
        while (c->conns)
                conn_free(c->conns);
        for (size_t i = 0; i < CACHE_MAX_BUILDS; i++)
                if (c->builds[i].pid > 0) {
                        /* A half-written .tmp directory is removed at the next start. */
                        (void) kill(c->builds[i].pid, SIGKILL);
                        build_release(&c->builds[i]);
                }
        c->listen_io = sd_event_source_disable_unref(c->listen_io);
        c->listen_fd = safe_close(c->listen_fd);
        snapshot_store_close(&c->store);
        c->lock_fd = safe_close(c->lock_fd);
        c->event = sd_event_unref(c->event);
}
