/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of sbx-cache's pieces: the meta file format, the cache directory (validate, drop,
 * list, evict) on a temporary directory, the RAM content hash and copy (holes), an ingest followed
 * by verify, and the request parser. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fdio.h"
#include "tests.h"
#include "frame.h"
#include "macro.h"
#include "ingest.h"
#include "cache-request.h"
#include "sha256.h"
#include "snapshot-store.h"

static SnapshotMeta sample_meta(void) {
        SnapshotMeta m = {
                .version = SNAPSHOT_FORMAT_VERSION,
                .memory_mb = 256,
                .ram_size = 256u << 20,
                .state_size = 5,
                .created_usec = 123,
                .save_ms = 3,
        };
        memset(m.key, 'a', 64);
        sha256_buf_hex("state", 5, m.state_sha256);
        strcpy(m.language, "python");
        strcpy(m.qemu_version, "10.0.2");
        memset(m.ram_sha256, 'b', 64);
        return m;
}

static void test_meta(void) {
        SnapshotMeta m = sample_meta(), m2;
        const char *reason;
        char text[SNAPSHOT_META_MAX];

        int n = snapshot_meta_format(&m, text, sizeof text);
        CHECK(n > 0);
        CHECK(snapshot_meta_parse(text, (size_t) n, &m2, &reason) == 0);
        CHECK(memcmp(&m, &m2, sizeof m) == 0);
        /* Truncated, without the final newline, duplicated or unknown fields, another version. */
        CHECK(snapshot_meta_parse(text, (size_t) n - 1, &m2, &reason) == -EBADMSG);
        CHECK(snapshot_meta_parse(text, (size_t) n / 2, &m2, &reason) == -EBADMSG);
        char dup[SNAPSHOT_META_MAX + 64];
        snprintf(dup, sizeof dup, "%.*slanguage python\n", n, text);
        CHECK(snapshot_meta_parse(dup, strlen(dup), &m2, &reason) == -EBADMSG);
        snprintf(dup, sizeof dup, "%.*sextra 1\n", n, text);
        CHECK(snapshot_meta_parse(dup, strlen(dup), &m2, &reason) == -EBADMSG);
        memcpy(dup, text, (size_t) n + 1);
        dup[strlen("sbx-l1-snapshot ")] = '0' + SNAPSHOT_FORMAT_VERSION + 1;
        CHECK(snapshot_meta_parse(dup, (size_t) n, &m2, &reason) == -EBADMSG);
        CHECK(strstr(reason, "version") != NULL);
        m.ram_size++;
        n = snapshot_meta_format(&m, text, sizeof text);
        CHECK(snapshot_meta_parse(text, (size_t) n, &m2, &reason) == -EBADMSG);
        CHECK(snapshot_meta_parse("X", 1, &m2, &reason) == -EBADMSG);
}

static void write_file(int dir, const char *name, const void *p, size_t n) {
        int fd = openat(dir, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || (n && loop_write(fd, p, n) < 0))
                abort();
        close(fd);
}

static bool always_busy(const char *key, void *userdata) {
        (void) key;
        (void) userdata;
        return true;
}

static void test_store(void) {
        char tmpl[] = "/tmp/test-snapshot.XXXXXX", text[SNAPSHOT_META_MAX];
        SnapshotStore s = SNAPSHOT_STORE_NULL;
        SnapshotMeta m = sample_meta(), got;
        const char *reason = NULL;

        if (!mkdtemp(tmpl))
                abort();
        char sub[64];
        snprintf(sub, sizeof sub, "%s/cache/l1", tmpl);
        CHECK(snapshot_store_open(sub, false, &s) == -ENOENT);
        CHECK(snapshot_store_open(sub, true, &s) == 0);               /* with its parents */
        CHECK(snapshot_validate(&s, m.key, 256, &got, &reason) == 0); /* absent */

        CHECK(mkdirat(s.dir_fd, m.key, 0700) == 0);
        int kfd = openat(s.dir_fd, m.key, O_RDONLY | O_DIRECTORY);
        write_file(kfd, "state", "state", 5);
        int fd = openat(kfd, "ram", O_WRONLY | O_CREAT, 0644);
        CHECK(fd >= 0 && ftruncate(fd, 256 << 20) == 0);
        close(fd);
        int n = snapshot_meta_format(&m, text, sizeof text);
        write_file(kfd, "meta", text, (size_t) n);
        CHECK(snapshot_validate(&s, m.key, 256, &got, &reason) == 1);
        CHECK(snapshot_validate(&s, m.key, 512, &got, &reason) == -EBADMSG);

        write_file(kfd, "state", "stAte", 5);
        CHECK(snapshot_validate(&s, m.key, 256, &got, &reason) == -EBADMSG && strstr(reason, "checksum"));
        write_file(kfd, "state", "stat", 4);
        CHECK(snapshot_validate(&s, m.key, 256, &got, &reason) == -EBADMSG && strstr(reason, "size"));
        write_file(kfd, "state", "state", 5);
        fd = openat(kfd, "ram", O_WRONLY);
        CHECK(fd >= 0 && ftruncate(fd, 1) == 0);
        close(fd);
        CHECK(snapshot_validate(&s, m.key, 256, &got, &reason) == -EBADMSG && strstr(reason, "RAM"));
        close(kfd);

        SnapshotEntry *l = NULL;
        size_t count = 0;
        CHECK(snapshot_list(&s, &l, &count) == 0 && count == 1 && l[0].valid_meta);
        free(l);
        CHECK(snapshot_evict(&s, 0, 1, always_busy, NULL) == 0); /* being built: kept */
        CHECK(snapshot_evict(&s, 0, 1, NULL, NULL) == 1);
        CHECK(snapshot_list(&s, &l, &count) == 0 && count == 0);
        free(l);
        snapshot_store_close(&s);
        CHECK(rm_rf(tmpl) == 0);
}

/* Same content, different holes: same hash; the copy has the content and keeps zero chunks as holes. */
static void test_ram_hash(void) {
        char tmpl[] = "/tmp/test-cache-ram.XXXXXX";
        char h1[SHA256_HEX_SIZE], h2[SHA256_HEX_SIZE], h3[SHA256_HEX_SIZE], h4[SHA256_HEX_SIZE];
        const uint64_t size = 4u << 20;
        uint8_t zeros[65536] = {0}, page[4096];

        if (!mkdtemp(tmpl))
                abort();
        int dir = open(tmpl, O_RDONLY | O_DIRECTORY);
        int a = openat(dir, "a", O_RDWR | O_CREAT, 0600), b = openat(dir, "b", O_RDWR | O_CREAT, 0600),
            c = openat(dir, "c", O_RDWR | O_CREAT, 0600);
        CHECK(a >= 0 && b >= 0 && c >= 0);
        memset(page, 0x5a, sizeof page);
        /* a: sparse with two data pages; b: the same bytes, with explicit zero chunks written too */
        CHECK(ftruncate(a, (off_t) size) == 0 && ftruncate(b, (off_t) size) == 0 && ftruncate(c, (off_t) size) == 0);
        CHECK(pwrite(a, page, sizeof page, 8192) == (ssize_t) sizeof page);
        CHECK(pwrite(a, page, sizeof page, (off_t) (3u << 20)) == (ssize_t) sizeof page);
        CHECK(pwrite(b, zeros, sizeof zeros, 0) == (ssize_t) sizeof zeros);
        CHECK(pwrite(b, page, sizeof page, 8192) == (ssize_t) sizeof page);
        CHECK(pwrite(b, zeros, sizeof zeros, 1u << 20) == (ssize_t) sizeof zeros);
        CHECK(pwrite(b, page, sizeof page, (off_t) (3u << 20)) == (ssize_t) sizeof page);
        CHECK(ram_content_hash(a, size, -EBADF, h1) == 0);
        CHECK(ram_content_hash(b, size, -EBADF, h2) == 0);
        CHECK(strcmp(h1, h2) == 0);
        CHECK(ram_content_hash(a, size, c, h3) == 0 && strcmp(h1, h3) == 0);
        CHECK(ram_content_hash(c, size, -EBADF, h4) == 0 && strcmp(h1, h4) == 0);
        uint8_t back[4096];
        CHECK(pread(c, back, sizeof back, (off_t) (3u << 20)) == (ssize_t) sizeof back &&
              memcmp(back, page, sizeof page) == 0);
        struct stat st;
        CHECK(fstat(c, &st) == 0 && (uint64_t) st.st_blocks * 512u < size / 2); /* still sparse */
        /* One byte changed: another hash. */
        CHECK(pwrite(b, "x", 1, 100000) == 1);
        CHECK(ram_content_hash(b, size, -EBADF, h2) == 0 && strcmp(h1, h2) != 0);
        close(a), close(b), close(c), close(dir);
        CHECK(rm_rf(tmpl) == 0);
}

/* An ingest from a worker's files, then verify; a RAM byte flipped in place fails verify. */
static void test_ingest(void) {
        char tmpl[] = "/tmp/test-cache-ingest.XXXXXX", key[65];
        SnapshotStore s = SNAPSHOT_STORE_NULL;
        const char *reason = NULL;
        SnapshotMeta got;

        if (!mkdtemp(tmpl))
                abort();
        CHECK(snapshot_store_open(tmpl, true, &s) == 0);
        int dir = open(tmpl, O_RDONLY | O_DIRECTORY);
        int ram = openat(dir, "src-ram", O_RDWR | O_CREAT, 0600),
            state = openat(dir, "src-state", O_RDWR | O_CREAT, 0600);
        CHECK(ram >= 0 && state >= 0 && ftruncate(ram, 2 << 20) == 0);
        CHECK(pwrite(ram, "guest", 5, 70000) == 5 && write(state, "device state", 12) == 12);
        memset(key, 'c', 64);
        key[64] = 0;
        SnapshotMeta m = {.memory_mb = 2, .save_ms = 4};
        strcpy(m.language, "python");
        strcpy(m.qemu_version, "10.0.2");
        CHECK(snapshot_ingest(&s, key, &m, ram, state) == 0);
        CHECK(snapshot_validate(&s, key, 2, &got, &reason) == 1 && got.state_size == 12 && got.save_ms == 4);
        CHECK(snapshot_verify(&s, key, &reason) == 1);
        char path[256];
        snprintf(path, sizeof path, "%s/%s/ram", tmpl, key);
        struct stat st;
        CHECK(stat(path, &st) == 0 && (st.st_mode & 07777) == 0644);
        int fd = open(path, O_WRONLY);
        CHECK(fd >= 0 && pwrite(fd, "G", 1, 70000) == 1);
        close(fd);
        CHECK(snapshot_verify(&s, key, &reason) == -EBADMSG && strstr(reason, "RAM"));
        /* A RAM file of the wrong size is refused. */
        char key2[65];
        memset(key2, 'd', 64);
        key2[64] = 0;
        m.memory_mb = 4;
        CHECK(snapshot_ingest(&s, key2, &m, ram, state) == -EBADMSG);
        close(ram), close(state), close(dir);
        snapshot_store_close(&s);
        CHECK(rm_rf(tmpl) == 0);
}

static void test_request(void) {
        CacheRequest q;
        const char *reason;
        SbxMsg m;

        sbx_msg_begin(&m, SBX_C_LOOKUP);
        sbx_msg_put_str(&m, SBX_CT_SETTINGS, "accel=tcg\nmemory_mb=256\n");
        sbx_msg_put_u32(&m, SBX_CT_MEMORY_MB, 256);
        CHECK(sbx_msg_finish(&m) == 0);
        CHECK(cache_request_parse(SBX_C_LOOKUP, m.data + SBX_FRAME_HEADER_SIZE, m.len - SBX_FRAME_HEADER_SIZE, &q,
                                  &reason) == 0 &&
              q.n_fds == 4 && q.memory_mb == 256);
        sbx_msg_done(&m);

        sbx_msg_begin(&m, SBX_C_LOOKUP);
        sbx_msg_put_str(&m, SBX_CT_SETTINGS, "accel=tcg\x01");
        sbx_msg_put_u32(&m, SBX_CT_MEMORY_MB, 256);
        CHECK(sbx_msg_finish(&m) == 0);
        CHECK(cache_request_parse(SBX_C_LOOKUP, m.data + SBX_FRAME_HEADER_SIZE, m.len - SBX_FRAME_HEADER_SIZE, &q,
                                  &reason) == -EBADMSG);
        sbx_msg_done(&m);

        sbx_msg_begin(&m, SBX_C_INSERT);
        sbx_msg_put_str(&m, SBX_CT_KEY, "../../etc/passwd");
        sbx_msg_put_str(&m, SBX_CT_LANGUAGE, "python");
        CHECK(sbx_msg_finish(&m) == 0);
        CHECK(cache_request_parse(SBX_C_INSERT, m.data + SBX_FRAME_HEADER_SIZE, m.len - SBX_FRAME_HEADER_SIZE, &q,
                                  &reason) == -EBADMSG);
        sbx_msg_done(&m);

        sbx_msg_begin(&m, SBX_C_PURGE);
        for (int i = 0; i < (int) SBX_CACHE_PREFIX_MAX + 1; i++)
                sbx_msg_put_str(&m, SBX_CT_PREFIX, "ab");
        CHECK(sbx_msg_finish(&m) == 0);
        CHECK(cache_request_parse(SBX_C_PURGE, m.data + SBX_FRAME_HEADER_SIZE, m.len - SBX_FRAME_HEADER_SIZE, &q,
                                  &reason) == -EBADMSG);
        sbx_msg_done(&m);

        CHECK(cache_request_parse(99, NULL, 0, &q, &reason) == -EBADMSG);
        CHECK(cache_request_parse(SBX_C_BAD, NULL, 0, &q, &reason) == -EBADMSG); /* no key */
        CHECK(cache_request_parse(SBX_C_LIST, NULL, 0, &q, &reason) == 0 && q.n_fds == 0);
}

/* The key: the same images and settings give the same key, other settings another; the second
 * lookup takes the image hashes from memory, not from the "inputs" file; a changed image changes
 * the key. */
static void test_key(void) {
        char tmpl[] = "/tmp/test-cache-key.XXXXXX", k1[65], k2[65], k3[65], k4[65];
        SnapshotStore s = SNAPSHOT_STORE_NULL;
        int fds[4];

        if (!mkdtemp(tmpl))
                abort();
        CHECK(snapshot_store_open(tmpl, true, &s) == 0);
        for (int i = 0; i < 4; i++) {
                char name[8] = {'i', 'm', 'g', (char) ('0' + i), 0};
                fds[i] = openat(s.dir_fd, name, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
                CHECK(fds[i] >= 0 && write(fds[i], name, 4) == 4);
        }
        CHECK(snapshot_key(&s, fds, "accel=tcg\nmemory_mb=256\n", k1) == 0);
        CHECK(faccessat(s.dir_fd, "inputs", F_OK, 0) == 0);
        CHECK(unlinkat(s.dir_fd, "inputs", 0) == 0);
        CHECK(snapshot_key(&s, fds, "accel=tcg\nmemory_mb=256\n", k2) == 0 && strcmp(k1, k2) == 0);
        CHECK(faccessat(s.dir_fd, "inputs", F_OK, 0) < 0); /* answered from memory */
        CHECK(snapshot_key(&s, fds, "accel=tcg\nmemory_mb=512\n", k3) == 0 && strcmp(k1, k3) != 0);
        CHECK(pwrite(fds[2], "X", 1, 0) == 1); /* another size-equal content: a new mtime at least */
        struct timespec later[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_sec = 12345}};
        CHECK(futimens(fds[2], later) == 0);
        CHECK(snapshot_key(&s, fds, "accel=tcg\nmemory_mb=256\n", k4) == 0 && strcmp(k1, k4) != 0);
        for (int i = 0; i < 4; i++)
                close(fds[i]);
        snapshot_store_close(&s);
        CHECK(rm_rf(tmpl) == 0);
}

int main(void) {
        test_meta();
        test_store();
        test_ram_hash();
        test_ingest();
        test_request();
        test_key();
        return CHECK_SUMMARY();
}
