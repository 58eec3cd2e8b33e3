/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fdio.h"
#include "frame.h"
#include "log.h"
#include "macro.h"
#include "sbx-error.h"
#include "validate.h"
#include "snapshot.h"

/* What starts each interpreter before the snapshot. JavaScript: Bun's Math.random() state is
 * seeded once per process, so every VM restored from one snapshot would get the same sequence;
 * replace it by one that draws from crypto.getRandomValues() (fresh after the guest's reseed) on
 * first use, i.e. after the restore. Python's random module is not imported by the driver (it seeds
 * itself from the kernel when user code imports it); bash's $RANDOM is a known gap
 * (docs/snapshots.md). */
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

const char *snapshot_warm_code(SbxLanguage language) {
        return (unsigned) language < _SBX_LANG_MAX && warm_code[language] ? warm_code[language] : ":";
}

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

void snapshot_files_close_child_fds(SnapshotFiles *f) {
        f->ram_ro_fd = safe_close(f->ram_ro_fd);
        f->state_w_fd = safe_close(f->state_w_fd);
        f->state_r_fd = safe_close(f->state_r_fd);
}

void snapshot_files_close(SnapshotFiles *f) {
        snapshot_files_close_child_fds(f);
        f->ram_rw_fd = safe_close(f->ram_rw_fd);
        f->state_keep_fd = safe_close(f->state_keep_fd);
        f->cache_fd = safe_close(f->cache_fd);
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

int snapshot_lookup(SnapshotFiles *f, const SbxConfig *config, const QemuOptions *cold, const char *settings,
                    uint32_t memory_mb, uint8_t *ret_kind, char **ret_note, SbxError *error) {
        int images[4] = { -EBADF, -EBADF, -EBADF, -EBADF };
        SbxCacheLookup res;
        char sock[256];
        int r;

        r = sbx_cache_socket_path(config->cache_socket, config->runtime_dir, sock, sizeof sock);
        if (r >= 0)
                r = sbx_cache_connect(sock, &f->cache_fd);
        if (r < 0)
                return sbx_error_set(error, r, "sbx-cache is not available at %s (%s)", sock, strerror(-r));
        r = open_images(cold, images);
        if (r < 0) {
                f->cache_fd = safe_close(f->cache_fd);
                return sbx_error_set(error, r, "cannot open the images for the cache key (%s)", strerror(-r));
        }
        r = sbx_cache_lookup(f->cache_fd, settings, memory_mb, images, &res);
        for (size_t i = 0; i < 4; i++)
                safe_close(images[i]);
        if (r < 0) {
                f->cache_fd = safe_close(f->cache_fd);
                return sbx_error_set(error, r, "sbx-cache did not answer the lookup (%s)",
                                     r == -EPROTO ? res.note : strerror(-r));
        }
        memcpy(f->key, res.key, sizeof f->key);
        *ret_kind = res.kind;
        if (res.kind == SBX_K_HIT) {
                f->ram_ro_fd = res.ram_fd;
                f->state_r_fd = res.state_fd;
                f->generation = res.generation;
                *ret_note = NULL;
                log_info("L1 snapshot %.12s found (%s, %" PRIu32 " MiB, saved by QEMU %s).", f->key, res.language,
                         memory_mb, res.qemu_version);
        } else {
                *ret_note = strdup(res.note);
                if (!*ret_note)
                        return sbx_error_set_errno(error, -ENOMEM);
        }
        return 0;
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
int snapshot_create_build(SnapshotFiles *f, uint32_t memory_mb, const QemuCreds *creds) {
        _cleanup_close_ int state_rw = -EBADF;
        int r;

        r = tmpfile_open(&f->ram_rw_fd);
        if (r < 0)
                return r;
        if (ftruncate(f->ram_rw_fd, (off_t) memory_mb << 20) < 0)
                return -errno;
        if (creds->drop && fchown(f->ram_rw_fd, creds->uid, creds->gid) < 0)
                return -errno;
        r = tmpfile_open(&state_rw);
        if (r < 0)
                return r;
        f->state_w_fd = reopen_fd(state_rw, O_WRONLY);
        f->state_r_fd = reopen_fd(state_rw, O_RDONLY);
        f->state_keep_fd = reopen_fd(state_rw, O_RDONLY);
        f->ram_ro_fd = reopen_fd(f->ram_rw_fd, O_RDONLY);
        if (f->state_w_fd < 0 || f->state_r_fd < 0 || f->state_keep_fd < 0 || f->ram_ro_fd < 0)
                return -EIO;
        return 0;
}

/* ---- after the seccomp filter ---- */

int snapshot_restore_start(Qmp *qmp, int qmp_fd, FramedConn *guest) {
        uint64_t t0 = now_usec(CLOCK_MONOTONIC), deadline = t0 + SNAPSHOT_RESTORE_TIMEOUT_USEC;
        uint8_t seed[32];
        QmpReply reply;
        SbxMsg m;
        int r;

        qmp_init(qmp, qmp_fd);
        r = qmp_read_reply(qmp, deadline, &reply);
        if (r < 0)
                return log_debug_errno(r, "No QMP greeting: %m");
        if (reply.kind != QMP_KIND_GREETING)
                return -EBADMSG;
        log_debug("Restore: QMP greeting after %" PRIu64 " ms.", (now_usec(CLOCK_MONOTONIC) - t0) / 1000u);
        /* One write, three replies: no round trip between them. */
        static const char cmds[] =
                "{\"execute\":\"qmp_capabilities\"}\n"
                "{\"execute\":\"migrate-set-capabilities\",\"arguments\":{\"capabilities\":"
                "[{\"capability\":\"x-ignore-shared\",\"state\":true}]}}\n"
                "{\"execute\":\"migrate-incoming\",\"arguments\":{\"uri\":\"" QEMU_STATE_URI "\"}}\n";
        r = loop_write(qmp->fd, cmds, sizeof cmds - 1);
        if (r < 0)
                return r;
        for (int k = 0; k < 3; k++) {
                r = qmp_read_reply(qmp, deadline, &reply);
                if (r < 0)
                        return r;
                if (reply.kind == QMP_KIND_ERROR) {
                        log_warning("QMP refused the restore: %s", reply.desc);
                        return -EPROTO;
                }
        }
        log_debug("Restore: migrate-incoming accepted after %" PRIu64 " ms.", (now_usec(CLOCK_MONOTONIC) - t0) / 1000u);
        /* The migration stream says the source was running: the VM starts by itself once the device
         * state is loaded. The guest answers RESUME only then; until then it waits in the socket. */
        if (getrandom(seed, sizeof seed, 0) != (ssize_t) sizeof seed)
                return -EIO;
        sbx_msg_begin(&m, SBX_H_RESUME);
        sbx_msg_put_u64(&m, SBX_T_CLOCK_NS, now_usec(CLOCK_REALTIME) * 1000u);
        sbx_msg_put(&m, SBX_T_SEED, seed, sizeof seed);
        explicit_bzero(seed, sizeof seed);
        r = framed_conn_send(guest, &m);
        sbx_msg_done(&m);
        return r;
}

/* Migrates the device state into the state file; the RAM file already is the RAM. */
int snapshot_save(Qmp *qmp, int qmp_fd, char qemu_version[static 32], uint64_t *ret_save_ms) {
        uint64_t t0 = now_usec(CLOCK_MONOTONIC), deadline = t0 + SNAPSHOT_SAVE_TIMEOUT_USEC;
        QmpReply reply;
        int r;

        qemu_version[0] = 0;
        qmp_init(qmp, qmp_fd);
        r = qmp_handshake(qmp, deadline, &reply);
        if (r < 0)
                return r;
        if (reply.version[0] >= 0)
                snprintf(qemu_version, 32, "%d.%d.%d", reply.version[0], reply.version[1],
                         reply.version[2]);
        r = qmp_execute(qmp,
                        "{\"execute\":\"migrate-set-capabilities\",\"arguments\":{\"capabilities\":"
                        "[{\"capability\":\"x-ignore-shared\",\"state\":true}]}}\n",
                        deadline, &reply);
        if (r >= 0)
                /* Migrating a running VM: QEMU stops it at the end and records "running", so a restore
                 * starts by itself. Nothing but the device state is copied. */
                r = qmp_execute(qmp, "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"" QEMU_STATE_URI "\"}}\n",
                                deadline, &reply);
        if (r == -EPROTO)
                log_warning("QMP refused the save: %s", reply.desc);
        if (r < 0)
                return r;
        for (;;) {
                r = qmp_execute(qmp, "{\"execute\":\"query-migrate\"}\n", deadline, &reply);
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
        *ret_save_ms = (now_usec(CLOCK_MONOTONIC) - t0) / 1000u;
        return 0;
}

int snapshot_commit(SnapshotFiles *f, SbxLanguage language, const char *qemu_version, uint64_t save_ms) {
        struct stat st;
        int r;

        if (fstat(f->state_keep_fd, &st) < 0)
                return -errno;
        if (st.st_size == 0)
                return -ENODATA;
        r = sbx_cache_insert(f->cache_fd, f->key, sbx_language_to_string(language),
                             qemu_version[0] ? qemu_version : "unknown", save_ms, f->ram_rw_fd, f->state_keep_fd);
        if (r < 0)
                return r;
        if (fstat(f->ram_rw_fd, &st) >= 0)
                log_info("L1 snapshot %.12s saved: migration %" PRIu64 " ms, RAM file %" PRIu64
                         " MiB on disk; handed to sbx-cache.",
                         f->key, save_ms, ((uint64_t) st.st_blocks * 512u) >> 20);
        f->state_keep_fd = safe_close(f->state_keep_fd);
        return 0;
}

void snapshot_report_bad(SnapshotFiles *f, const char *why) {
        if (f->cache_fd < 0)
                return;
        log_warning("L1 snapshot %.12s failed to restore (%s): asking sbx-cache to drop it.", f->key, why);
        int r = sbx_cache_report_bad(f->cache_fd, f->key, f->generation, why);
        if (r < 0)
                log_warning_errno(r, "Could not tell sbx-cache: %m");
        f->cache_fd = safe_close(f->cache_fd);
}
