/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fdio.h"
#include "ingest.h"
#include "log.h"
#include "macro.h"

#define CHUNK (64u * 1024u)

static bool all_zero(const uint8_t *p, size_t n) {
        static const uint8_t zero[256];
        for (size_t i = 0; i < n; i += sizeof zero)
                if (memcmp(p + i, zero, MIN(sizeof zero, n - i)) != 0)
                        return false;
        return true;
}

static int pread_full(int fd, void *buf, size_t n, uint64_t off) {
        size_t done = 0;
        while (done < n) {
                ssize_t k = pread(fd, (uint8_t *) buf + done, n - done, (off_t) (off + done));
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break; /* short file: the rest reads as zeros */
                done += (size_t) k;
        }
        memset((uint8_t *) buf + done, 0, n - done);
        return 0;
}

static int pwrite_full(int fd, const void *buf, size_t n, uint64_t off) {
        size_t done = 0;
        while (done < n) {
                ssize_t k = pwrite(fd, (const uint8_t *) buf + done, n - done, (off_t) (off + done));
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                done += (size_t) k;
        }
        return 0;
}

int ram_content_hash(int src_fd, uint64_t size, int dst_fd, char hex[SHA256_HEX_SIZE]) {
        _cleanup_free_ uint8_t *buf = malloc(CHUNK);
        uint8_t d[SHA256_DIGEST_SIZE];
        uint64_t next = 0; /* first chunk not yet looked at */
        Sha256 h;
        int r;

        if (!buf)
                return -ENOMEM;
        sha256_init(&h);
        while (next * CHUNK < size) {
                uint64_t pos = next * CHUNK, data, hole;
                off_t o = lseek(src_fd, (off_t) pos, SEEK_DATA);
                if (o < 0) {
                        if (errno == ENXIO)
                                break; /* only holes from here */
                        if (errno != EINVAL)
                                return -errno;
                        data = pos, hole = size; /* no SEEK_DATA here: read everything */
                } else {
                        data = (uint64_t) o;
                        off_t e = lseek(src_fd, o, SEEK_HOLE);
                        hole = e < 0 ? size : (uint64_t) e;
                }
                for (uint64_t c = MAX(next, data / CHUNK); c * CHUNK < MIN(hole, size); c++) {
                        size_t n = (size_t) MIN((uint64_t) CHUNK, size - c * CHUNK);
                        r = pread_full(src_fd, buf, n, c * CHUNK);
                        if (r < 0)
                                return r;
                        if (all_zero(buf, n))
                                continue;
                        uint8_t idx[8];
                        for (int i = 0; i < 8; i++)
                                idx[i] = (uint8_t) (c >> (8 * i));
                        sha256_update(&h, idx, sizeof idx);
                        sha256_update(&h, buf, n);
                        if (dst_fd >= 0) {
                                r = pwrite_full(dst_fd, buf, n, c * CHUNK);
                                if (r < 0)
                                        return r;
                        }
                        next = c + 1;
                }
                next = MAX(next, (MIN(hole, size) + CHUNK - 1) / CHUNK);
        }
        sha256_final(&h, d);
        sha256_hex(d, hex);
        return 0;
}

/* Copies at most max bytes of src (from offset 0) to dst, hashing them. Returns the size. */
static int64_t copy_state(int src_fd, int dst_fd, uint64_t max, char hex[SHA256_HEX_SIZE]) {
        _cleanup_free_ uint8_t *buf = malloc(CHUNK);
        uint8_t d[SHA256_DIGEST_SIZE];
        uint64_t off = 0;
        Sha256 h;

        if (!buf)
                return -ENOMEM;
        sha256_init(&h);
        for (;;) {
                ssize_t k = pread(src_fd, buf, CHUNK, (off_t) off);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                if (off + (uint64_t) k > max)
                        return -EFBIG;
                sha256_update(&h, buf, (size_t) k);
                int r = pwrite_full(dst_fd, buf, (size_t) k, off);
                if (r < 0)
                        return r;
                off += (uint64_t) k;
        }
        sha256_final(&h, d);
        sha256_hex(d, hex);
        return (int64_t) off;
}

int snapshot_ingest(SnapshotStore *s, const char *key, SnapshotMeta *m, int ram_fd, int state_fd) {
        _cleanup_close_ int kfd = -EBADF, ram = -EBADF, state = -EBADF, meta = -EBADF;
        char tmp[96], text[SNAPSHOT_META_MAX];
        struct stat st;
        int n, r;

        /* Only regular files, and the RAM file exactly the guest's size. */
        if (fstat(ram_fd, &st) < 0 || !S_ISREG(st.st_mode))
                return -EBADF;
        m->version = SNAPSHOT_FORMAT_VERSION;
        m->ram_size = (uint64_t) m->memory_mb << 20;
        if ((uint64_t) st.st_size != m->ram_size)
                return -EBADMSG;
        if (fstat(state_fd, &st) < 0 || !S_ISREG(st.st_mode))
                return -EBADF;
        memcpy(m->key, key, SNAPSHOT_KEY_SIZE);
        m->created_usec = now_usec(CLOCK_REALTIME);

        snprintf(tmp, sizeof tmp, "%.64s.tmp-%d", key, (int) getpid());
        if (mkdirat(s->dir_fd, tmp, 0700) < 0)
                return -errno;
        kfd = openat(s->dir_fd, tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (kfd < 0)
                return -errno;
        /* 0644: QEMU (any uid) re-opens the RAM file read-only through /proc/self/fd; only we write it. */
        ram = openat(kfd, "ram", O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
        state = openat(kfd, "state", O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
        meta = openat(kfd, "meta", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (ram < 0 || state < 0 || meta < 0)
                return -errno;
        if (fchmod(ram, 0644) < 0 || fchmod(state, 0644) < 0 || fchmod(meta, 0644) < 0) /* whatever the umask */
                return -errno;
        if (ftruncate(ram, (off_t) m->ram_size) < 0)
                return -errno;
        uint64_t t0 = now_usec(CLOCK_MONOTONIC);
        r = ram_content_hash(ram_fd, m->ram_size, ram, m->ram_sha256);
        if (r < 0)
                return r;
        int64_t len = copy_state(state_fd, state, SNAPSHOT_STATE_MAX, m->state_sha256);
        if (len < 0)
                return (int) len;
        if (len == 0)
                return -ENODATA;
        m->state_size = (uint64_t) len;
        n = snapshot_meta_format(m, text, sizeof text);
        if (n < 0)
                return n;
        r = loop_write(meta, text, (size_t) n);
        if (r < 0)
                return r;
        /* Durable before it is visible: a crash leaves a .tmp directory, never a torn entry. */
        if (fsync(ram) < 0 || fsync(state) < 0 || fsync(meta) < 0 || fsync(kfd) < 0)
                return -errno;
        if (renameat(s->dir_fd, tmp, s->dir_fd, key) < 0)
                return -errno;
        (void) fsync(s->dir_fd);
        if (fstat(ram, &st) == 0)
                log_info("L1 snapshot %.12s committed in %" PRIu64 " ms: RAM file %" PRIu64
                         " MiB on disk, state %" PRIu64 " bytes.",
                         key, (now_usec(CLOCK_MONOTONIC) - t0) / 1000u, ((uint64_t) st.st_blocks * 512u) >> 20,
                         m->state_size);
        return 0;
}

int snapshot_verify(SnapshotStore *s, const char *key, const char **ret_reason) {
        _cleanup_close_ int kfd = -EBADF, ram = -EBADF;
        SnapshotMeta m;
        char hex[SHA256_HEX_SIZE];
        int r;

        r = snapshot_validate(s, key, 0, &m, ret_reason); /* memory 0: any */
        if (r <= 0)
                return r;
        kfd = openat(s->dir_fd, key, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (kfd < 0)
                return -errno;
        ram = openat(kfd, "ram", O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (ram < 0)
                return -errno;
        r = ram_content_hash(ram, m.ram_size, -EBADF, hex);
        if (r < 0)
                return r;
        if (strcmp(hex, m.ram_sha256) != 0) {
                *ret_reason = "the RAM file's checksum does not match";
                return -EBADMSG;
        }
        return 1;
}
