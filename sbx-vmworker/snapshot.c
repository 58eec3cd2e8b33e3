/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "broker-channel.h"
#include "config.h"
#include "fdio.h"
#include "frame.h"
#include "guest-channel.h"
#include "host-tsc.h"
#include "log.h"
#include "macro.h"
#include "qmp.h"
#include "cache-client.h"
#include "snapshot.h"
#include "validate.h"

typedef enum AttemptKind {
        ATTEMPT_COLD,
        ATTEMPT_BUILD,   /* cold boot on a shared RAM file, warm, save */
        ATTEMPT_RESTORE, /* restore the snapshot */
} AttemptKind;

typedef enum SnapshotMode {
        SNAPSHOT_MODE_NONE,
        SNAPSHOT_MODE_RESTORE,
        SNAPSHOT_MODE_BUILD,
} SnapshotMode;

struct Snapshot {
        Worker *w;
        bool want_snapshot, want_warm;
        bool rewarm; /* WARM = 1 with SNAPSHOT = 1: also run the warm-up in the restored VM before READY */
        SnapshotMode mode;
        int cache_fd;        /* the connection to sbx-cache: BAD after a failed restore, INSERT after a build */
        char key[65];        /* the cache key, as sbx-cache computed it */
        uint64_t generation; /* of the entry restored (for BAD) */
        int ram_rw_fd;       /* build: the new (unlinked) RAM file (QEMU's fd 9 for the build); sent to sbx-cache */
        int ram_ro_fd;       /* restore: QEMU's fd 9 */
        int state_w_fd;      /* build: the state file, write-only (fdset 2 of the build) */
        int state_r_fd;      /* restore: the state file, read-only (fdset 2 of the restore) */
        int state_keep_fd;   /* build: the state file, read-only, sent to sbx-cache */
        int qmp_fd[SNAPSHOT_ATTEMPTS_MAX], qmp_child_fd[SNAPSHOT_ATTEMPTS_MAX];
        AttemptKind kind[SNAPSHOT_ATTEMPTS_MAX];
        char **argv[SNAPSHOT_ATTEMPTS_MAX];
        unsigned fallback; /* index of the cold attempt */
        uint32_t memory_mb;
        bool saved, l1, warm, resuming;
        uint64_t restore_ms, save_ms;
        char note[256];
        char qemu_version[32];
        sd_event_source *defer; /* the next boot attempt, started outside the guest channel's callbacks */
        Qmp qmp;
};

/* What starts each interpreter before the snapshot. JavaScript: Bun's Math.random() state is
 * seeded once per process, so every VM restored from one snapshot would get the same sequence;
 * replace it by one that draws from crypto.getRandomValues() (fresh after the guest's reseed) on
 * first use, i.e. after the restore. Python's random module is not imported by the driver (it seeds
 * itself from the kernel when user code imports it); bash's $RANDOM is a known gap
 * (docs/snapshots.md). */
static void start_warm(Snapshot *s);

static const char *const warm_code[_SBX_LANG_MAX] = {
        [SBX_LANG_PYTHON] = "pass",
        [SBX_LANG_JAVASCRIPT] =
                "(() => { const fill = crypto.getRandomValues.bind(crypto), buf = new Uint32Array(64); let i = 64;\n"
                "Object.defineProperty(Math, 'random', { writable: true, configurable: true, enumerable: false,\n"
                "  value: function random() { if (i >= 64) { fill(buf); i = 0; }\n"
                "    const hi = buf[i++] >>> 5, lo = buf[i++] >>> 6; return (hi * 67108864 + lo) / 9007199254740992; } "
                "});\n"
                "})();\n",
        [SBX_LANG_RAW] = ":",
};

int snapshot_request_parse(const uint8_t *p, size_t n, bool *ret_snapshot, bool *ret_warm) {
        SbxTlvIter it;
        uint16_t tag;
        const uint8_t *v;
        uint32_t len;
        uint8_t b;
        int r;

        *ret_snapshot = *ret_warm = false;
        sbx_tlv_iter_init(&it, p, n);
        while ((r = sbx_tlv_next(&it, &tag, &v, &len)) > 0) {
                if (tag != SBX_T_SNAPSHOT && tag != SBX_T_WARM)
                        continue;
                if (sbx_tlv_u8(v, len, &b) < 0 || b > 1)
                        return -EBADMSG;
                if (tag == SBX_T_SNAPSHOT)
                        *ret_snapshot = b;
                else
                        *ret_warm = b;
        }
        return r < 0 ? -EBADMSG : 0;
}

int snapshot_new(Worker *w, bool snapshot, bool warm, Snapshot **ret) {
        Snapshot *s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->w = w;
        s->want_snapshot = snapshot;
        s->want_warm = warm || snapshot;
        s->rewarm = warm && snapshot;
        s->cache_fd = s->ram_rw_fd = s->ram_ro_fd = s->state_w_fd = s->state_r_fd = s->state_keep_fd = -EBADF;
        for (size_t i = 0; i < SNAPSHOT_ATTEMPTS_MAX; i++)
                s->qmp_fd[i] = s->qmp_child_fd[i] = -EBADF;
        *ret = s;
        return 0;
}

static void close_child_fds(Snapshot *s) {
        s->ram_ro_fd = safe_close(s->ram_ro_fd);
        s->state_w_fd = safe_close(s->state_w_fd);
        s->state_r_fd = safe_close(s->state_r_fd);
        for (size_t i = 0; i < SNAPSHOT_ATTEMPTS_MAX; i++)
                s->qmp_child_fd[i] = safe_close(s->qmp_child_fd[i]);
}

Snapshot *snapshot_free(Snapshot *s) {
        if (!s)
                return NULL;
        close_child_fds(s);
        s->ram_rw_fd = safe_close(s->ram_rw_fd);
        s->state_keep_fd = safe_close(s->state_keep_fd);
        for (size_t i = 0; i < SNAPSHOT_ATTEMPTS_MAX; i++) {
                s->qmp_fd[i] = safe_close(s->qmp_fd[i]);
                strv_free(s->argv[i]);
        }
        s->cache_fd = safe_close(s->cache_fd); /* an unused build grant goes back to sbx-cache */
        s->defer = sd_event_source_disable_unref(s->defer);
        free(s);
        return NULL;
}

static void set_note(Snapshot *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_note(Snapshot *s, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s->note, sizeof s->note, fmt, ap);
        va_end(ap);
        log_info("L1 snapshot: %s", s->note);
}

/* ---- planning (before the seccomp filter) ---- */

int snapshot_host_tsc_khz(Snapshot *s, uint32_t *ret) {
        char boot_id[64], path[600], buf[128];
        unsigned long khz;
        int r;

        /* Measuring takes 10 ms: keep the figure for this host boot in the state directory. */
        if (read_small_file("/proc/sys/kernel/random/boot_id", boot_id, sizeof boot_id) < 0)
                return host_tsc_khz(ret);
        boot_id[strcspn(boot_id, "\n")] = 0;
        snprintf(path, sizeof path, "%s/host-tsc", s->w->config->state_dir ?: "");
        if (read_small_file(path, buf, sizeof buf) >= 0) {
                char id[64];
                if (sscanf(buf, "%63s %lu", id, &khz) == 2 && strcmp(id, boot_id) == 0 && khz > 0 && khz < UINT32_MAX) {
                        *ret = (uint32_t) khz;
                        return 0;
                }
        }
        r = host_tsc_khz(ret);
        if (r < 0)
                return r;
        snprintf(buf, sizeof buf, "%s %" PRIu32 "\n", boot_id, *ret);
        char tmp[640];
        snprintf(tmp, sizeof tmp, "%s.tmp-%d", path, (int) getpid());
        _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd >= 0 && loop_write(fd, buf, strlen(buf)) >= 0)
                (void) rename(tmp, path);
        else if (fd >= 0)
                (void) unlink(tmp);
        return 0;
}

static int add_qmp(Snapshot *s, unsigned i) {
        int pair[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, pair) < 0)
                return -errno;
        s->qmp_fd[i] = pair[0];
        s->qmp_child_fd[i] = pair[1];
        /* QEMU's end must block (QEMU sets what it needs itself). */
        (void) fd_set_nonblock(pair[1], 0);
        return 0;
}

static int build_argv(Snapshot *s, unsigned i, const QemuOptions *cold, AttemptKind kind) {
        QemuOptions o = *cold;
        int r;

        s->kind[i] = kind;
        if (kind == ATTEMPT_COLD)
                return 0;
        o.ram = kind == ATTEMPT_BUILD ? QEMU_RAM_SHARED : QEMU_RAM_PRIVATE;
        o.qmp = true;
        o.state_fdset = true;
        o.incoming = kind == ATTEMPT_RESTORE;
        r = add_qmp(s, i);
        if (r < 0)
                return r;
        return qemu_build_argv(&o, &s->argv[i]);
}

/* An unlinked temporary file in the worker's scratch directory, re-opened with the given access
 * mode (QEMU's fdsets match fds by access mode). */
static int tmpfile_open(int *ret_rw) {
        const char *dir = getenv("TMPDIR") ?: "/var/tmp";
        char path[512];

        if ((size_t) snprintf(path, sizeof path, "%s/sbx-l1-XXXXXX", dir) >= sizeof path)
                return -ENAMETOOLONG;
        int fd = mkostemp(path, O_CLOEXEC);
        if (fd < 0)
                return -errno;
        (void) unlink(path);
        *ret_rw = fd;
        return 0;
}

static int reopen_fd(int fd, int flags) {
        char p[64];
        snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
        int r = open(p, flags | O_CLOEXEC);
        return r < 0 ? -errno : r;
}

/* The build's files, in the worker's own scratch space: sbx-cache copies them at INSERT, so
 * nothing the build QEMU could write ends up in the cache. QEMU's user must be able to re-open the
 * RAM file for writing through /proc/self/fd (the build maps it shared): it owns it. */
static int create_build(Snapshot *s) {
        const QemuCreds *c = &s->w->qemu_creds;
        _cleanup_close_ int state_rw = -EBADF;
        int r;

        r = tmpfile_open(&s->ram_rw_fd);
        if (r < 0)
                return r;
        if (ftruncate(s->ram_rw_fd, (off_t) s->memory_mb << 20) < 0)
                return -errno;
        if (c->drop && fchown(s->ram_rw_fd, c->uid, c->gid) < 0)
                return -errno;
        r = tmpfile_open(&state_rw);
        if (r < 0)
                return r;
        s->state_w_fd = reopen_fd(state_rw, O_WRONLY);
        s->state_r_fd = reopen_fd(state_rw, O_RDONLY);
        s->state_keep_fd = reopen_fd(state_rw, O_RDONLY);
        s->ram_ro_fd = reopen_fd(s->ram_rw_fd, O_RDONLY);
        if (s->state_w_fd < 0 || s->state_r_fd < 0 || s->state_keep_fd < 0 || s->ram_ro_fd < 0)
                return -EIO;
        return 0;
}

/* Opens the four images for sbx-cache to hash (it never opens our paths itself). */
static int open_images(const QemuOptions *cold, int fds[4]) {
        const char *paths[4] = {cold->kernel, cold->initrd, cold->rootfs, cold->binary};
        char qemu_path[512];

        /* QEMU may be configured by name: find it in $PATH. */
        if (!strchr(paths[3], '/')) {
                const char *pathenv = getenv("PATH") ?: "/usr/local/bin:/usr/bin:/bin";
                qemu_path[0] = 0;
                for (const char *p = pathenv; *p;) {
                        size_t len = strcspn(p, ":");
                        snprintf(qemu_path, sizeof qemu_path, "%.*s/%s", (int) len, p, paths[3]);
                        if (access(qemu_path, X_OK) == 0)
                                break;
                        qemu_path[0] = 0;
                        p += len + (p[len] == ':');
                }
                if (!qemu_path[0])
                        return -ENOENT;
                paths[3] = qemu_path;
        }
        for (size_t i = 0; i < 4; i++) {
                fds[i] = open(paths[i], O_RDONLY | O_CLOEXEC);
                if (fds[i] < 0) {
                        int r = -errno;
                        for (size_t j = 0; j < i; j++)
                                fds[j] = safe_close(fds[j]);
                        return r;
                }
        }
        return 0;
}

static void reset_attempts(Snapshot *s) {
        close_child_fds(s);
        s->ram_rw_fd = safe_close(s->ram_rw_fd);
        s->state_keep_fd = safe_close(s->state_keep_fd);
        for (size_t i = 0; i < SNAPSHOT_ATTEMPTS_MAX; i++) {
                strv_free(s->argv[i]);
                s->argv[i] = NULL;
                s->kind[i] = ATTEMPT_COLD;
                s->qmp_fd[i] = safe_close(s->qmp_fd[i]);
        }
}

void snapshot_plan(Snapshot *s, const QemuOptions *cold) {
        Worker *w = s->w;
        char sock[256], settings[SBX_CACHE_SETTINGS_MAX];
        int images[4] = {-EBADF, -EBADF, -EBADF, -EBADF};
        SbxCacheLookup res;
        int r;

        w->n_attempts = WORKER_BOOT_ATTEMPTS;
        s->mode = SNAPSHOT_MODE_NONE;
        s->memory_mb = w->req.memory_mb;
        if (!s->want_snapshot)
                return;

        /* Every input of the snapshot but the images, which sbx-cache hashes from our fds. */
        snprintf(settings, sizeof settings,
                 "accel=%s\nmachine=%s\ncpu=%s\nmemory_mb=%" PRIu32 "\nvcpus=%" PRIu32
                 "\nlanguage=%s\ncmdline_extra=%s\n",
                 sbx_accel_to_string(cold->accel), QEMU_MACHINE, cold->accel == SBX_ACCEL_KVM ? "host" : "max",
                 cold->memory_mb, cold->vcpus, sbx_language_to_string(w->req.language), cold->cmdline_extra ?: "");
        r = sbx_cache_socket_path(w->config->cache_socket, w->config->runtime_dir, sock, sizeof sock);
        if (r >= 0)
                r = sbx_cache_connect(sock, &s->cache_fd);
        if (r < 0) {
                set_note(s, "sbx-cache is not available at %s (%s)", sock, strerror(-r));
                return;
        }
        r = open_images(cold, images);
        if (r < 0) {
                set_note(s, "cannot open the images for the cache key (%s)", strerror(-r));
                s->cache_fd = safe_close(s->cache_fd);
                return;
        }
        r = sbx_cache_lookup(s->cache_fd, settings, s->memory_mb, images, &res);
        for (size_t i = 0; i < 4; i++)
                safe_close(images[i]);
        if (r < 0) {
                set_note(s, "sbx-cache did not answer the lookup (%s)", r == -EPROTO ? res.note : strerror(-r));
                s->cache_fd = safe_close(s->cache_fd);
                return;
        }
        memcpy(s->key, res.key, sizeof s->key);

        if (res.kind == SBX_K_HIT) {
                s->ram_ro_fd = res.ram_fd;
                s->state_r_fd = res.state_fd;
                s->generation = res.generation;
                if (build_argv(s, 0, cold, ATTEMPT_RESTORE) >= 0 && build_argv(s, 1, cold, ATTEMPT_COLD) >= 0) {
                        s->mode = SNAPSHOT_MODE_RESTORE;
                        s->fallback = 1;
                        w->n_attempts = 2;
                        log_info("L1 snapshot %.12s found (%s, %" PRIu32 " MiB, saved by QEMU %s); restoring it.",
                                 s->key, res.language, s->memory_mb, res.qemu_version);
                        return;
                }
                set_note(s, "the restore could not be prepared");
                reset_attempts(s);
                s->cache_fd = safe_close(s->cache_fd);
                return;
        }
        set_note(s, "%s", res.note);
        if (res.kind != SBX_K_BUILD) {
                s->cache_fd = safe_close(s->cache_fd);
                return;
        }

        r = create_build(s);
        if (r >= 0)
                r = build_argv(s, 0, cold, ATTEMPT_BUILD);
        if (r >= 0)
                r = build_argv(s, 1, cold, ATTEMPT_RESTORE);
        if (r >= 0)
                r = build_argv(s, 2, cold, ATTEMPT_COLD);
        if (r < 0) {
                set_note(s, "cannot prepare the snapshot files (%s)", strerror(-r));
                reset_attempts(s);
                s->cache_fd = safe_close(s->cache_fd); /* gives the build back */
                return;
        }
        s->mode = SNAPSHOT_MODE_BUILD;
        s->fallback = 2;
        w->n_attempts = 3;
        log_info("L1 snapshot %.12s: building it (%s).", s->key, s->note);
}

char **snapshot_attempt_argv(Snapshot *s, unsigned i) {
        return i < SNAPSHOT_ATTEMPTS_MAX ? s->argv[i] : NULL;
}

bool snapshot_attempt_fds(Snapshot *s, unsigned i, QemuExtraFds *ret) {
        if (i >= SNAPSHOT_ATTEMPTS_MAX || s->kind[i] == ATTEMPT_COLD)
                return false;
        *ret = (QemuExtraFds){
                .qmp_fd = s->qmp_child_fd[i],
                .ram_fd = s->kind[i] == ATTEMPT_BUILD ? s->ram_rw_fd : s->ram_ro_fd,
                .state_fd = s->kind[i] == ATTEMPT_BUILD ? s->state_w_fd : s->state_r_fd,
        };
        return true;
}

void snapshot_after_prepare(Snapshot *s) {
        close_child_fds(s);
}

/* ---- after the seccomp filter ---- */

static AttemptKind current_kind(Snapshot *s) {
        unsigned i = s->w->boot_attempt - 1;
        return i < SNAPSHOT_ATTEMPTS_MAX ? s->kind[i] : ATTEMPT_COLD;
}

bool snapshot_expects_resume(Snapshot *s) {
        return s && s->resuming;
}

static void send_ready(Snapshot *s) {
        Worker *w = s->w;
        SbxMsg m;

        worker_discard_attempts(w);
        w->timer = sd_event_source_disable_unref(w->timer);
        w->state = WORKER_SESSION;
        w->boot_ms = ms_since(w->t_spawn);
        log_info("The %s session is ready after %" PRIu64 " ms (attempt %u, tier %s%s%s).",
                 sbx_language_to_string(w->req.language), w->boot_ms, w->boot_attempt,
                 s->l1 && !s->saved ? "l1" : "cold", s->warm ? ", interpreter warm" : "",
                 s->saved ? ", snapshot saved" : "");

        sbx_msg_begin(&m, SBX_W_SESSION_READY);
        sbx_msg_put_u64(&m, SBX_T_BOOT_MS, w->boot_ms);
        sbx_msg_put_u64(&m, SBX_T_SETUP_MS, w->setup_ms);
        sbx_msg_put_str(&m, SBX_T_ACCEL, sbx_accel_to_string(w->accel));
        sbx_msg_put_u32(&m, SBX_T_QEMU_PID, (uint32_t) w->qemu_pid);
        sbx_msg_put_u8(&m, SBX_T_WARM, s->warm);
        broker_put_port_mappings(&m, w->net.mappings, w->net.n_hostfwd);
        if (s->want_snapshot) {
                /* A session whose snapshot was built here was a cold boot, even if it now runs restored. */
                sbx_msg_put_str(&m, SBX_T_SNAPSHOT_TIER, s->l1 && !s->saved ? "l1" : "cold");
                if (s->l1)
                        sbx_msg_put_u64(&m, SBX_T_RESTORE_MS, s->restore_ms);
                sbx_msg_put_u8(&m, SBX_T_SNAPSHOT_SAVED, s->saved);
                if (s->note[0])
                        sbx_msg_put_str(&m, SBX_T_SNAPSHOT_NOTE, s->note);
        }
        int r = framed_conn_send(&w->broker, &m);
        sbx_msg_done(&m);
        if (r < 0)
                log_debug_errno(r, "Failed to send SESSION_READY: %m");
}

/* Tells sbx-cache to drop the snapshot, so that the next lookup rebuilds it. */
static void spoil(Snapshot *s, const char *why) {
        if (s->mode != SNAPSHOT_MODE_RESTORE || s->cache_fd < 0)
                return;
        log_warning("L1 snapshot %.12s failed to restore (%s): asking sbx-cache to drop it.", s->key, why);
        int r = sbx_cache_report_bad(s->cache_fd, s->key, s->generation, why);
        if (r < 0)
                log_warning_errno(r, "Could not tell sbx-cache: %m");
        s->cache_fd = safe_close(s->cache_fd);
}

static int on_deferred_boot(sd_event_source *src, void *userdata) {
        Snapshot *s = userdata;
        (void) src;

        s->defer = sd_event_source_disable_unref(s->defer);
        if (s->w->state != WORKER_DONE)
                worker_boot(s->w);
        return 0;
}

/* Starts attempt index (0-based) from the event loop: the callers are inside the guest channel's
 * callbacks, and worker_boot() replaces that channel. */
static void boot_soon(Snapshot *s, unsigned index) {
        Worker *w = s->w;

        worker_stop_qemu(w, 0, NULL);
        w->timer = sd_event_source_disable_unref(w->timer);
        w->state = WORKER_BOOTING;
        w->boot_attempt = index; /* worker_boot() starts attempt index + 1, i.e. index */
        s->defer = sd_event_source_disable_unref(s->defer);
        if (sd_event_add_defer(w->event, &s->defer, on_deferred_boot, s) < 0)
                worker_boot(w);
}

bool snapshot_fallback(Snapshot *s, const char *why) {
        Worker *w = s->w;
        AttemptKind k = current_kind(s);

        if (k == ATTEMPT_COLD || (w->state != WORKER_BOOTING && w->state != WORKER_WARMING))
                return false;
        if (s->fallback == 0 || s->fallback >= w->n_attempts)
                return false;
        if (k == ATTEMPT_RESTORE)
                spoil(s, why);
        set_note(s, "the %s failed (%s); booted cold", k == ATTEMPT_RESTORE ? "restore" : "snapshot build", why);
        s->resuming = false;
        s->l1 = false;
        s->saved = false;
        unsigned index = s->fallback;
        s->fallback = 0;
        boot_soon(s, index);
        return true;
}

static int restore_start(Snapshot *s) {
        Worker *w = s->w;
        unsigned i = w->boot_attempt - 1;
        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + SNAPSHOT_RESTORE_TIMEOUT_USEC;
        uint8_t seed[32];
        QmpReply reply;
        SbxMsg m;
        int r;

        qmp_init(&s->qmp, s->qmp_fd[i]);
        r = qmp_read_reply(&s->qmp, deadline, &reply);
        if (r < 0)
                return log_debug_errno(r, "No QMP greeting: %m");
        if (reply.kind != QMP_KIND_GREETING)
                return -EBADMSG;
        log_debug("Restore: QMP greeting %" PRIu64 " ms after spawn.", ms_since(w->t_spawn));
        /* One write, three replies: no round trip between them. */
        static const char cmds[] =
                "{\"execute\":\"qmp_capabilities\"}\n"
                "{\"execute\":\"migrate-set-capabilities\",\"arguments\":{\"capabilities\":"
                "[{\"capability\":\"x-ignore-shared\",\"state\":true}]}}\n"
                "{\"execute\":\"migrate-incoming\",\"arguments\":{\"uri\":\"" QEMU_STATE_URI "\"}}\n";
        r = loop_write(s->qmp.fd, cmds, sizeof cmds - 1);
        if (r < 0)
                return r;
        for (int k = 0; k < 3; k++) {
                r = qmp_read_reply(&s->qmp, deadline, &reply);
                if (r < 0)
                        return r;
                if (reply.kind == QMP_KIND_ERROR) {
                        log_warning("QMP refused the restore: %s", reply.desc);
                        return -EPROTO;
                }
        }
        log_debug("Restore: migrate-incoming accepted %" PRIu64 " ms after spawn.", ms_since(w->t_spawn));
        /* The migration stream says the source was running: the VM starts by itself once the device
         * state is loaded. The guest answers RESUME only then; until then it waits in the socket. */
        if (getrandom(seed, sizeof seed, 0) != (ssize_t) sizeof seed)
                return -EIO;
        sbx_msg_begin(&m, SBX_H_RESUME);
        sbx_msg_put_u64(&m, SBX_T_CLOCK_NS, now_usec(CLOCK_REALTIME) * 1000u);
        sbx_msg_put(&m, SBX_T_SEED, seed, sizeof seed);
        r = framed_conn_send(&w->guest, &m);
        sbx_msg_done(&m);
        if (r < 0)
                return r;
        s->resuming = true;
        /* A restore gets its own, shorter deadline. */
        if (w->timer)
                (void) sd_event_source_set_time_relative(w->timer, SNAPSHOT_RESTORE_TIMEOUT_USEC);
        return 0;
}

void snapshot_on_released(Snapshot *s) {
        if (s->w->state != WORKER_BOOTING || current_kind(s) != ATTEMPT_RESTORE)
                return;
        int r = restore_start(s);
        if (r < 0) {
                char why[96];
                snprintf(why, sizeof why, "QMP: %s", strerror(-r));
                if (!snapshot_fallback(s, why))
                        worker_fail(s->w, SBX_ERR_TRANSIENT, "Restoring the snapshot failed: %s", why);
        }
}

static void start_warm(Snapshot *s) {
        Worker *w = s->w;
        RunRequest session = {.language = w->req.language};
        RunRequest exec = {
                .run_id = 0,
                .code = (char *) warm_code[w->req.language],
                .code_len = strlen(warm_code[w->req.language]),
                .timeout_ms = 60000,
        };
        SbxMsg m;
        int r;

        /* The session's environment is not part of the snapshot: the warm-up runs without it. */
        r = guest_build_exec(&session, &exec, &m);
        if (r >= 0) {
                r = framed_conn_send(&w->guest, &m);
                sbx_msg_done(&m);
        }
        if (r < 0) {
                worker_fail(w, SBX_ERR_TRANSIENT, "Failed to start the interpreter: %s", strerror(-r));
                return;
        }
        w->state = WORKER_WARMING;
        w->t_exec = now_usec(CLOCK_MONOTONIC);
        /* The boot deadline goes on, renewed for the warm-up (and a save). */
        if (w->timer)
                (void) sd_event_source_set_time_relative(w->timer, SNAPSHOT_WARM_TIMEOUT_USEC);
}

bool snapshot_on_hello(Snapshot *s) {
        if (s->want_warm) {
                start_warm(s);
                return true;
        }
        send_ready(s);
        return true;
}

/* Migrates the device state into the state file; the RAM file already is the RAM. */
static int save(Snapshot *s) {
        Worker *w = s->w;
        unsigned i = w->boot_attempt - 1;
        uint64_t t0 = now_usec(CLOCK_MONOTONIC), deadline = t0 + SNAPSHOT_SAVE_TIMEOUT_USEC;
        QmpReply reply;
        int r;

        qmp_init(&s->qmp, s->qmp_fd[i]);
        r = qmp_handshake(&s->qmp, deadline, &reply);
        if (r < 0)
                return r;
        if (reply.version[0] >= 0)
                snprintf(s->qemu_version, sizeof s->qemu_version, "%d.%d.%d", reply.version[0], reply.version[1],
                         reply.version[2]);
        r = qmp_execute(&s->qmp,
                        "{\"execute\":\"migrate-set-capabilities\",\"arguments\":{\"capabilities\":"
                        "[{\"capability\":\"x-ignore-shared\",\"state\":true}]}}\n",
                        deadline, &reply);
        if (r >= 0)
                /* Migrating a running VM: QEMU stops it at the end and records "running", so a restore
                 * starts by itself. Nothing but the device state is copied. */
                r = qmp_execute(&s->qmp, "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"" QEMU_STATE_URI "\"}}\n",
                                deadline, &reply);
        if (r == -EPROTO)
                log_warning("QMP refused the save: %s", reply.desc);
        if (r < 0)
                return r;
        for (;;) {
                r = qmp_execute(&s->qmp, "{\"execute\":\"query-migrate\"}\n", deadline, &reply);
                if (r < 0)
                        return r;
                if (strcmp(reply.status, "completed") == 0)
                        break;
                if (strcmp(reply.status, "failed") == 0 || strcmp(reply.status, "cancelled") == 0) {
                        log_warning("The migration to the snapshot failed: %s", reply.desc[0] ? reply.desc : "?");
                        return -EIO;
                }
                (void) nanosleep(&(struct timespec){.tv_nsec = 1000 * 1000}, NULL);
        }
        s->save_ms = (now_usec(CLOCK_MONOTONIC) - t0) / 1000u;
        return 0;
}

/* QEMU is gone: hand the RAM and state files to sbx-cache, which copies, checksums and commits
 * them in the background. The restore that follows uses our own files. */
static int commit(Snapshot *s) {
        Worker *w = s->w;
        struct stat st;
        int r;

        if (fstat(s->state_keep_fd, &st) < 0)
                return -errno;
        if (st.st_size == 0)
                return -ENODATA;
        r = sbx_cache_insert(s->cache_fd, s->key, sbx_language_to_string(w->req.language),
                             s->qemu_version[0] ? s->qemu_version : "unknown", s->save_ms, s->ram_rw_fd,
                             s->state_keep_fd);
        if (r < 0)
                return r;
        if (fstat(s->ram_rw_fd, &st) >= 0)
                log_info("L1 snapshot %.12s saved: migration %" PRIu64 " ms, RAM file %" PRIu64
                         " MiB on disk; handed to sbx-cache.",
                         s->key, s->save_ms, ((uint64_t) st.st_blocks * 512u) >> 20);
        s->state_keep_fd = safe_close(s->state_keep_fd);
        return 0;
}

static void on_warm_exit(Snapshot *s, const GuestExit *e) {
        Worker *w = s->w;
        int r;

        log_info("Interpreter started in %" PRIu64 " ms (exit %" PRIi32 ").", ms_since(w->t_exec), e->exit_code);
        s->warm = e->exit_code == 0;
        if (current_kind(s) != ATTEMPT_BUILD) {
                send_ready(s);
                return;
        }

        r = save(s);
        if (r >= 0) {
                worker_stop_qemu(w, 0, NULL); /* the VM on the shared file must not run on */
                r = commit(s);
                if (r < 0)
                        set_note(s, "the snapshot could not be handed to sbx-cache (%s)", strerror(-r));
                s->saved = r >= 0;
                /* Attempt 2 restores what we just saved, from our own files (a failure boots cold). */
                boot_soon(s, 1);
                return;
        }
        /* Nothing committed: the session goes on in this VM (its RAM file is a temporary one). */
        set_note(s, "saving the snapshot failed (%s); the session runs on the cold VM", strerror(-r));
        send_ready(s);
}

int snapshot_on_guest_frame(Snapshot *s, uint8_t type, const uint8_t *p, size_t n) {
        Worker *w = s->w;
        const char *reason = "unexpected message";
        GuestOutput out;
        GuestExit e;
        char buf[64];

        if (w->state == WORKER_BOOTING && s->resuming) {
                if (type == SBX_G_RESUMED) {
                        s->resuming = false;
                        s->l1 = true;
                        s->warm = true;
                        s->restore_ms = ms_since(w->t_spawn);
                        if (s->rewarm)
                                start_warm(s); /* TCG translated nothing yet: the first exec pays for it */
                        else
                                send_ready(s);
                        return w->state == WORKER_DONE;
                }
                snprintf(buf, sizeof buf, "the restored guest sent %s", guest_msg_type_to_string(type));
                if (!snapshot_fallback(s, buf))
                        worker_guest_violation(w, buf);
                return 1;
        }
        if (w->state == WORKER_WARMING) {
                switch (type) {
                case SBX_G_OUTPUT:
                        if (guest_parse_output(p, n, &out, &reason) >= 0) {
                                log_debug("Warm-up output: %.*s", (int) MIN(out.len, (size_t) 200),
                                          (const char *) out.data);
                                return 0;
                        }
                        break;
                case SBX_G_EXIT:
                        if (guest_parse_exit(p, n, &e, &reason) >= 0) {
                                on_warm_exit(s, &e);
                                return w->state == WORKER_DONE;
                        }
                        break;
                case SBX_G_PONG:
                        return 0;
                default:
                        snprintf(buf, sizeof buf, "%s while the interpreter started", guest_msg_type_to_string(type));
                        reason = buf;
                }
                if (!snapshot_fallback(s, reason))
                        worker_guest_violation(w, reason);
                return 1;
        }
        worker_guest_violation(w, "an unexpected message");
        return 1;
}
