/* SPDX-License-Identifier: Apache-2.0 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fdio.h"
#include "log.h"
#include "macro.h"
#include "snapshot-store.h"

#define SNAPSHOT_MAGIC "sbx-l1-snapshot"
#define INPUTS_MAX (64u * 1024u)

/* ---- meta ---- */

static bool is_hex64(const char *s) {
        size_t n = 0;
        for (; s[n]; n++)
                if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
                        return false;
        return n == 64;
}

static bool parse_u64(const char *s, uint64_t *ret) {
        uint64_t v = 0;
        if (!*s || strlen(s) > 19)
                return false;
        for (; *s; s++) {
                if (*s < '0' || *s > '9')
                        return false;
                v = v * 10u + (uint64_t) (*s - '0');
        }
        *ret = v;
        return true;
}

static bool is_word(const char *s, size_t max) {
        size_t n = 0;
        for (; s[n]; n++)
                if (s[n] <= ' ' || s[n] > '~')
                        return false;
        return n > 0 && n < max;
}

int snapshot_meta_parse(const char *text, size_t n, SnapshotMeta *ret, const char **ret_reason) {
        enum { F_KEY, F_LANG, F_MEM, F_RAM, F_STATE, F_SHA, F_QEMU, F_CREATED, F_SAVE, F_RAM_SHA, _F_MAX };
        static const char *const names[_F_MAX] = {"key",        "language",     "memory_mb",    "ram_size",
                                                  "state_size", "state_sha256", "qemu_version", "created_usec",
                                                  "save_ms",    "ram_sha256"};
        SnapshotMeta m = {};
        bool seen[_F_MAX] = {};
        char line[160];
        size_t pos = 0;
        bool first = true;

        *ret_reason = "malformed meta file";
        if (n == 0 || n > SNAPSHOT_META_MAX || memchr(text, 0, n))
                return -EBADMSG;
        while (pos < n) {
                const char *nl = memchr(text + pos, '\n', n - pos);
                if (!nl) {
                        *ret_reason = "meta file does not end with a newline";
                        return -EBADMSG;
                }
                size_t len = (size_t) (nl - (text + pos));
                if (len >= sizeof line)
                        return -EBADMSG;
                memcpy(line, text + pos, len);
                line[len] = 0;
                pos += len + 1;

                char *sp = strchr(line, ' ');
                if (!sp || sp == line || strchr(sp + 1, ' '))
                        return -EBADMSG;
                *sp = 0;
                const char *name = line, *value = sp + 1;
                uint64_t v;

                if (first) {
                        if (strcmp(name, SNAPSHOT_MAGIC) != 0 || !parse_u64(value, &v)) {
                                *ret_reason = "meta file has no sbx-l1-snapshot header";
                                return -EBADMSG;
                        }
                        if (v != SNAPSHOT_FORMAT_VERSION) {
                                *ret_reason = "snapshot format version differs";
                                return -EBADMSG;
                        }
                        m.version = (unsigned) v;
                        first = false;
                        continue;
                }
                int f = -1;
                for (int i = 0; i < _F_MAX; i++)
                        if (strcmp(name, names[i]) == 0)
                                f = i;
                if (f < 0 || seen[f])
                        return -EBADMSG;
                seen[f] = true;
                bool ok;
                switch (f) {
                case F_KEY:
                        ok = is_hex64(value);
                        if (ok)
                                memcpy(m.key, value, 65);
                        break;
                case F_SHA:
                        ok = is_hex64(value);
                        if (ok)
                                memcpy(m.state_sha256, value, 65);
                        break;
                case F_RAM_SHA:
                        ok = is_hex64(value);
                        if (ok)
                                memcpy(m.ram_sha256, value, 65);
                        break;
                case F_LANG:
                        ok = is_word(value, sizeof m.language);
                        if (ok)
                                snprintf(m.language, sizeof m.language, "%s", value);
                        break;
                case F_QEMU:
                        ok = is_word(value, sizeof m.qemu_version);
                        if (ok)
                                snprintf(m.qemu_version, sizeof m.qemu_version, "%s", value);
                        break;
                case F_MEM:
                        ok = parse_u64(value, &v) && v > 0 && v <= UINT32_MAX;
                        m.memory_mb = (uint32_t) v;
                        break;
                case F_RAM:
                        ok = parse_u64(value, &m.ram_size);
                        break;
                case F_STATE:
                        ok = parse_u64(value, &m.state_size);
                        break;
                case F_CREATED:
                        ok = parse_u64(value, &m.created_usec);
                        break;
                case F_SAVE:
                        ok = parse_u64(value, &m.save_ms);
                        break;
                default:
                        ok = false;
                }
                if (!ok)
                        return -EBADMSG;
        }
        if (first)
                return -EBADMSG;
        for (int i = 0; i < _F_MAX; i++)
                if (!seen[i]) {
                        *ret_reason = "meta file lacks a field";
                        return -EBADMSG;
                }
        if (m.ram_size != (uint64_t) m.memory_mb << 20) {
                *ret_reason = "meta file: ram_size does not match memory_mb";
                return -EBADMSG;
        }
        *ret = m;
        return 0;
}

int snapshot_meta_format(const SnapshotMeta *m, char *buf, size_t size) {
        int n = snprintf(buf, size,
                         SNAPSHOT_MAGIC " %u\nkey %s\nlanguage %s\nmemory_mb %" PRIu32 "\nram_size %" PRIu64
                                        "\nstate_size %" PRIu64
                                        "\nstate_sha256 %s\nqemu_version %s\ncreated_usec %" PRIu64 "\nsave_ms %" PRIu64
                                        "\nram_sha256 %s\n",
                         m->version, m->key, m->language, m->memory_mb, m->ram_size, m->state_size, m->state_sha256,
                         m->qemu_version[0] ? m->qemu_version : "unknown", m->created_usec, m->save_ms, m->ram_sha256);
        if (n < 0 || (size_t) n >= size)
                return -ENOBUFS;
        return n;
}

/* ---- the directory ---- */

int snapshot_store_open(const char *path, bool create, SnapshotStore *ret) {
        SnapshotStore s = SNAPSHOT_STORE_NULL;
        char p[512];

        if (!path || !*path)
                return -EINVAL;
        if (strlen(path) >= sizeof p)
                return -ENAMETOOLONG;
        /* Create the missing components (0700: nobody else may even look up a snapshot by path). */
        for (size_t i = 1; create && path[i - 1]; i++) {
                if (path[i] != '/' && path[i] != 0)
                        continue;
                memcpy(p, path, i);
                p[i] = 0;
                if (mkdir(p, 0700) < 0 && errno != EEXIST)
                        return -errno;
        }
        s.dir_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (s.dir_fd < 0)
                return -errno;
        snprintf(s.path, sizeof s.path, "%s", path);
        *ret = s;
        return 0;
}

void snapshot_store_close(SnapshotStore *s) {
        s->dir_fd = safe_close(s->dir_fd);
}

/* Reads a whole small file relative to dir_fd into buf (NUL-terminated). Returns its length. */
static int read_at(int dir_fd, const char *name, char *buf, size_t size) {
        _cleanup_close_ int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        size_t len = 0;

        if (fd < 0)
                return -errno;
        for (;;) {
                if (len + 1 >= size)
                        return -EFBIG;
                ssize_t k = read(fd, buf + len, size - 1 - len);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                len += (size_t) k;
        }
        buf[len] = 0;
        return (int) len;
}

/* The content hash of one input (an fd the client opened), from the "inputs" cache, keyed by
 * device, inode, size and mtime, or computed (then cached). */
static void memo_put(SnapshotStore *s, const char *ident, const char hex[SHA256_HEX_SIZE]) {
        size_t i = s->next_memo;
        snprintf(s->memo[i].ident, sizeof s->memo[i].ident, "%s", ident);
        memcpy(s->memo[i].hex, hex, SHA256_HEX_SIZE);
        s->next_memo = (i + 1) % SNAPSHOT_INPUTS_MEMO;
        s->n_memo = MIN(s->n_memo + 1, (size_t) SNAPSHOT_INPUTS_MEMO);
}

static int hash_input(SnapshotStore *s, int fd, char hex[SHA256_HEX_SIZE]) {
        _cleanup_free_ char *cache = NULL;
        char ident[sizeof s->memo[0].ident];
        struct stat st;
        int n, r;

        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADF;
        snprintf(ident, sizeof ident, "%" PRIu64 ":%" PRIu64 " %" PRIu64 " %" PRIu64 ".%09ld", (uint64_t) st.st_dev,
                 (uint64_t) st.st_ino, (uint64_t) st.st_size, (uint64_t) st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
        for (size_t i = 0; i < s->n_memo; i++)
                if (strcmp(s->memo[i].ident, ident) == 0) {
                        memcpy(hex, s->memo[i].hex, SHA256_HEX_SIZE);
                        return 0;
                }

        cache = malloc(INPUTS_MAX);
        if (!cache)
                return -ENOMEM;
        n = read_at(s->dir_fd, "inputs", cache, INPUTS_MAX);
        if (n < 0)
                n = 0, cache[0] = 0;
        /* lines: HEX IDENT */
        size_t il = strlen(ident);
        for (char *line = cache, *next; line && *line; line = next) {
                next = strchr(line, '\n');
                if (next)
                        *next++ = 0;
                if (strlen(line) == 65 + il && line[64] == ' ' && strcmp(line + 65, ident) == 0) {
                        memcpy(hex, line, 64);
                        hex[64] = 0;
                        if (is_hex64(hex)) {
                                memo_put(s, ident, hex);
                                return 0;
                        }
                }
        }

        uint64_t t0 = now_usec(CLOCK_MONOTONIC);
        if (lseek(fd, 0, SEEK_SET) < 0)
                return -errno;
        r = sha256_fd_hex(fd, hex);
        if (r < 0)
                return r;
        log_debug("Hashed input %s in %" PRIu64 " ms.", ident, (now_usec(CLOCK_MONOTONIC) - t0) / 1000u);
        memo_put(s, ident, hex);

        /* Rewrite the cache: the last lines that fit, then this one. Best effort. */
        n = read_at(s->dir_fd, "inputs", cache, INPUTS_MAX);
        if (n < 0)
                n = 0, cache[0] = 0;
        const char *keep = cache;
        while (strlen(keep) > INPUTS_MAX / 2 && strchr(keep, '\n'))
                keep = strchr(keep, '\n') + 1;
        _cleanup_fclose_ FILE *f = NULL;
        int tfd = openat(s->dir_fd, "inputs.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (tfd < 0 || !(f = fdopen(tfd, "w"))) {
                safe_close(tfd);
                return 0;
        }
        fprintf(f, "%s%s %s\n", keep, hex, ident);
        if (fflush(f) == 0 && ferror(f) == 0)
                (void) renameat(s->dir_fd, "inputs.tmp", s->dir_fd, "inputs");
        else
                (void) unlinkat(s->dir_fd, "inputs.tmp", 0);
        return 0;
}

int snapshot_key(SnapshotStore *s, const int image_fds[4], const char *settings, char key[SNAPSHOT_KEY_SIZE]) {
        static const char *const names[4] = {"kernel", "initrd", "rootfs", "qemu"};
        char hex[SHA256_HEX_SIZE], line[128];
        uint8_t d[SHA256_DIGEST_SIZE];
        Sha256 h;
        int r;

        sha256_init(&h);
        snprintf(line, sizeof line, "sbx-l1 format=%u\n", SNAPSHOT_FORMAT_VERSION);
        sha256_update(&h, line, strlen(line));
        for (size_t i = 0; i < 4; i++) {
                r = hash_input(s, image_fds[i], hex);
                if (r < 0)
                        return log_debug_errno(r, "Cannot hash the %s for the snapshot key: %m", names[i]);
                snprintf(line, sizeof line, "%s=%s\n", names[i], hex);
                sha256_update(&h, line, strlen(line));
        }
        sha256_update(&h, settings, strlen(settings));
        sha256_final(&h, d);
        sha256_hex(d, key);
        log_debug("Snapshot key %s for:\n%s", key, settings);
        return 0;
}

int snapshot_validate(SnapshotStore *s, const char *key, uint32_t memory_mb, SnapshotMeta *ret_meta,
                      const char **ret_reason) {
        _cleanup_close_ int kfd = -EBADF, state_fd = -EBADF;
        char text[SNAPSHOT_META_MAX + 1], hex[SHA256_HEX_SIZE];
        SnapshotMeta m;
        struct stat st;
        int n, r;

        kfd = openat(s->dir_fd, key, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (kfd < 0) {
                if (errno == ENOENT)
                        return 0;
                *ret_reason = "the snapshot directory cannot be opened";
                return -EBADMSG;
        }
        n = read_at(kfd, "meta", text, sizeof text);
        if (n < 0) {
                *ret_reason = n == -ENOENT ? "the meta file is missing" : "the meta file cannot be read";
                return -EBADMSG;
        }
        r = snapshot_meta_parse(text, (size_t) n, &m, ret_reason);
        if (r < 0)
                return -EBADMSG;
        if (strcmp(m.key, key) != 0) {
                *ret_reason = "the meta file is for another key";
                return -EBADMSG;
        }
        if (memory_mb != 0 && m.memory_mb != memory_mb) {
                *ret_reason = "the snapshot has another memory size";
                return -EBADMSG;
        }
        if (fstatat(kfd, "ram", &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode) ||
            (uint64_t) st.st_size != m.ram_size) {
                *ret_reason = "the RAM file is missing or has the wrong size";
                return -EBADMSG;
        }
        state_fd = openat(kfd, "state", O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (state_fd < 0 || fstat(state_fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t) st.st_size != m.state_size) {
                *ret_reason = "the state file is missing or has the wrong size";
                return -EBADMSG;
        }
        r = sha256_fd_hex(state_fd, hex);
        if (r < 0 || strcmp(hex, m.state_sha256) != 0) {
                *ret_reason = "the state file's checksum does not match";
                return -EBADMSG;
        }
        if (ret_meta)
                *ret_meta = m;
        return 1;
}

int snapshot_drop(SnapshotStore *s, const char *name) {
        static unsigned counter;
        char away[128], path[768];

        snprintf(away, sizeof away, "%.64s.drop-%d-%u", name, (int) getpid(), counter++);
        if (renameat(s->dir_fd, name, s->dir_fd, away) < 0)
                return errno == ENOENT ? 0 : -errno;
        snprintf(path, sizeof path, "%s/%s", s->path, away);
        return rm_rf(path);
}

static bool is_key_name(const char *n) {
        return is_hex64(n);
}

static int cmp_entry(const void *a, const void *b) {
        const SnapshotEntry *x = a, *y = b;
        return x->last_used_sec < y->last_used_sec ? -1 : x->last_used_sec > y->last_used_sec;
}

int snapshot_list(SnapshotStore *s, SnapshotEntry **ret, size_t *ret_n) {
        SnapshotEntry *l = NULL;
        size_t n = 0;
        int dfd = fcntl(s->dir_fd, F_DUPFD_CLOEXEC, 3);
        if (dfd < 0)
                return -errno;
        DIR *d = fdopendir(dfd);
        if (!d) {
                safe_close(dfd);
                return -errno;
        }
        rewinddir(d);
        for (struct dirent *de; (de = readdir(d));) {
                if (!is_key_name(de->d_name))
                        continue;
                _cleanup_close_ int kfd =
                        openat(s->dir_fd, de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
                if (kfd < 0)
                        continue;
                SnapshotEntry *nl = reallocarray(l, n + 1, sizeof *l);
                if (!nl) {
                        free(l);
                        closedir(d);
                        return -ENOMEM;
                }
                l = nl;
                SnapshotEntry *e = &l[n++];
                *e = (SnapshotEntry){};
                snprintf(e->name, sizeof e->name, "%.64s", de->d_name);
                const char *files[] = {"ram", "state", "meta"};
                for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                        struct stat st;
                        if (fstatat(kfd, files[i], &st, AT_SYMLINK_NOFOLLOW) < 0)
                                continue;
                        e->disk_bytes += (uint64_t) st.st_blocks * 512u;
                        e->apparent_bytes += (uint64_t) st.st_size;
                        if (i == 2)
                                e->last_used_sec = st.st_mtim.tv_sec;
                }
                char text[SNAPSHOT_META_MAX + 1];
                const char *reason;
                int k = read_at(kfd, "meta", text, sizeof text);
                e->valid_meta = k > 0 && snapshot_meta_parse(text, (size_t) k, &e->meta, &reason) >= 0;
        }
        closedir(d);
        if (n > 1)
                qsort(l, n, sizeof *l, cmp_entry);
        *ret = l;
        *ret_n = n;
        return 0;
}

int snapshot_evict(SnapshotStore *s, uint64_t max_bytes, uint64_t need_bytes,
                   bool (*busy)(const char *key, void *userdata), void *userdata) {
        _cleanup_free_ SnapshotEntry *l = NULL;
        uint64_t used = 0;
        size_t n = 0;
        int dropped = 0, r;

        r = snapshot_list(s, &l, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++)
                used += l[i].disk_bytes;
        for (size_t i = 0; i < n && used + need_bytes > max_bytes; i++) {
                if (busy && busy(l[i].name, userdata))
                        continue; /* being built right now */
                r = snapshot_drop(s, l[i].name);
                if (r < 0)
                        continue;
                log_info("Evicted L1 snapshot %.12s (%" PRIu64 " MiB on disk, least recently used).", l[i].name,
                         l[i].disk_bytes >> 20);
                used -= MIN(used, l[i].disk_bytes);
                dropped++;
        }
        return dropped;
}

void snapshot_remove_leftovers(SnapshotStore *s) {
        int dfd = fcntl(s->dir_fd, F_DUPFD_CLOEXEC, 3);
        if (dfd < 0)
                return;
        DIR *d = fdopendir(dfd);
        if (!d) {
                safe_close(dfd);
                return;
        }
        for (struct dirent *de; (de = readdir(d));) {
                char path[768];
                const char *n = de->d_name;
                bool stale = strstr(n, ".tmp") || strstr(n, ".drop-") ||
                             (strlen(n) == 64 + 5 && strcmp(n + 64, ".lock") == 0); /* format 3's lock files */
                if (!stale || n[0] == '.')
                        continue;
                snprintf(path, sizeof path, "%s/%.160s", s->path, n);
                log_debug("Removing %s, left over by an earlier run.", path);
                (void) rm_rf(path);
        }
        closedir(d);
}
