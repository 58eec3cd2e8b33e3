/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cache-client.h"
#include "cache.h"
#include "config.h"
#include "macro.h"
#include "sbx-error.h"

typedef struct Entry {
        char key[65];
        bool valid;
        char language[16], qemu_version[32];
        uint32_t memory_mb;
        uint64_t disk, apparent, state, last_used, created_usec;
} Entry;

typedef struct Listing {
        Entry *e;
        size_t n;
        uint64_t max_bytes;
        char path[512];
} Listing;

static void cache_help(void) {
        printf("Usage: sbxctl cache ls [--json]\n"
               "       sbxctl cache purge [KEY-PREFIX...]   all snapshots, or those whose key starts so\n"
               "       sbxctl cache verify [KEY-PREFIX...]  re-hash RAM and state files, drop bad ones\n");
}

static int connect_cache(int *ret_fd) {
        SbxConfig c;
        char path[256];
        _cleanup_(sbx_error_done) SbxError error = {};
        int r = sbx_config_load(&c, NULL, &error);
        if (r < 0) {
                fprintf(stderr, "sbxctl: %s\n", sbx_error_message(&error));
                sbx_config_done(&c);
                return r;
        }
        r = sbx_cache_socket_path(c.cache_socket, c.runtime_dir, path, sizeof path);
        sbx_config_done(&c);
        if (r < 0)
                return r;
        r = sbx_cache_connect(path, ret_fd);
        if (r == -ENOENT || r == -ECONNREFUSED)
                fprintf(stderr, "sbxctl: sbx-cache is not running (no socket at %s)\n", path);
        else if (r < 0)
                fprintf(stderr, "sbxctl: cannot connect to sbx-cache at %s: %s\n", path, strerror(-r));
        return r < 0 ? -ENOTCONN : 0; /* reported */
}

/* Reads replies until K_DONE. Entries go to l (if given), DONE's count and note to *ret_count and
 * *ret_note (allocated; if given). K_ERROR: -EREMOTEIO with sbx-cache's note in error. */
static int read_until_done(int fd, Listing *l, uint32_t *ret_count, char **ret_note, SbxError *error) {
        SbxFrameReader rd;
        int r;

        sbx_frame_reader_init(&rd, SBX_CACHE_FRAME_MAX);
        for (;;) {
                uint8_t type;
                const uint8_t *p;
                size_t n;
                r = sbx_cache_read_reply(fd, &rd, 120000, &type, &p, &n);
                if (r < 0)
                        break;
                SbxTlvIter it;
                uint16_t tag;
                const uint8_t *v;
                uint32_t len;
                Entry e = {};
                uint32_t count = 0;
                char msg[SBX_CACHE_NOTE_MAX + 1] = "";
                sbx_tlv_iter_init(&it, p, n);
                while (sbx_tlv_next(&it, &tag, &v, &len) > 0)
                        switch (tag) {
                        case SBX_CT_KEY:
                                sbx_cache_copy_str(v, len, e.key, sizeof e.key);
                                break;
                        case SBX_CT_VALID: {
                                uint8_t b = 0;
                                (void) sbx_tlv_u8(v, len, &b);
                                e.valid = b;
                                break;
                        }
                        case SBX_CT_LANGUAGE:
                                sbx_cache_copy_str(v, len, e.language, sizeof e.language);
                                break;
                        case SBX_CT_QEMU_VERSION:
                                sbx_cache_copy_str(v, len, e.qemu_version, sizeof e.qemu_version);
                                break;
                        case SBX_CT_MEMORY_MB:
                                (void) sbx_tlv_u32(v, len, &e.memory_mb);
                                break;
                        case SBX_CT_DISK_BYTES:
                                (void) sbx_tlv_u64(v, len, &e.disk);
                                break;
                        case SBX_CT_APPARENT_BYTES:
                                (void) sbx_tlv_u64(v, len, &e.apparent);
                                break;
                        case SBX_CT_STATE_SIZE:
                                (void) sbx_tlv_u64(v, len, &e.state);
                                break;
                        case SBX_CT_LAST_USED:
                                (void) sbx_tlv_u64(v, len, &e.last_used);
                                break;
                        case SBX_CT_CREATED_USEC:
                                (void) sbx_tlv_u64(v, len, &e.created_usec);
                                break;
                        case SBX_CT_COUNT:
                                (void) sbx_tlv_u32(v, len, &count);
                                break;
                        case SBX_CT_NOTE:
                                sbx_cache_copy_str(v, len, msg, sizeof msg);
                                break;
                        case SBX_CT_MAX_BYTES:
                                if (l)
                                        (void) sbx_tlv_u64(v, len, &l->max_bytes);
                                break;
                        case SBX_CT_PATH:
                                if (l)
                                        sbx_cache_copy_str(v, len, l->path, sizeof l->path);
                                break;
                        }
                if (type == SBX_K_ENTRY && l) {
                        Entry *ne = reallocarray(l->e, l->n + 1, sizeof *ne);
                        if (!ne) {
                                r = -ENOMEM;
                                break;
                        }
                        l->e = ne;
                        l->e[l->n++] = e;
                } else if (type == SBX_K_DONE) {
                        if (ret_count)
                                *ret_count = count;
                        if (ret_note) {
                                *ret_note = strdup(msg);
                                if (!*ret_note) {
                                        r = -ENOMEM;
                                        break;
                                }
                        }
                        r = 0;
                        break;
                } else if (type == SBX_K_ERROR) {
                        r = sbx_error_set(error, -EREMOTEIO, "sbx-cache: %s", msg);
                        break;
                }
        }
        sbx_frame_reader_done(&rd);
        return r;
}

static int fetch_list(Listing *l) {
        _cleanup_close_ int fd = -EBADF;
        SbxMsg m;
        int r;

        *l = (Listing){};
        r = connect_cache(&fd);
        if (r < 0)
                return r;
        sbx_msg_begin(&m, SBX_C_LIST);
        r = sbx_msg_send(&m, fd);
        sbx_msg_done(&m);
        if (r < 0)
                return r;
        _cleanup_(sbx_error_done) SbxError error = {};
        r = read_until_done(fd, l, NULL, NULL, &error);
        if (r == -EREMOTEIO)
                fprintf(stderr, "sbxctl: %s\n", sbx_error_message(&error)); /* reported: the callers stay quiet */
        return r;
}

static const char *age(int64_t sec, char *buf, size_t size) {
        int64_t d = (int64_t) time(NULL) - sec;
        if (d < 0)
                d = 0;
        if (d < 120)
                snprintf(buf, size, "%" PRIi64 " s ago", d);
        else if (d < 7200)
                snprintf(buf, size, "%" PRIi64 " min ago", d / 60);
        else if (d < 172800)
                snprintf(buf, size, "%" PRIi64 " h ago", d / 3600);
        else
                snprintf(buf, size, "%" PRIi64 " d ago", d / 86400);
        return buf;
}

static int cache_ls(bool json) {
        Listing l;
        uint64_t disk = 0, apparent = 0;
        char buf[32];
        int r;

        r = fetch_list(&l);
        if (r < 0) {
                free(l.e);
                if (r != -ENOTCONN && r != -EREMOTEIO)
                        fprintf(stderr, "sbxctl: cannot list the cache: %s\n", strerror(-r));
                return 1;
        }
        for (size_t i = 0; i < l.n; i++) {
                disk += l.e[i].disk;
                apparent += l.e[i].apparent;
        }
        if (json) {
                printf("{\"dir\":\"%s\",\"max_mb\":%" PRIu64 ",\"disk_bytes\":%" PRIu64 ",\"apparent_bytes\":%" PRIu64
                       ",\"snapshots\":[",
                       l.path, l.max_bytes >> 20, disk, apparent);
                /* Oldest use first, as listed. */
                for (size_t i = 0; i < l.n; i++) {
                        const Entry *e = &l.e[i];
                        printf("%s{\"key\":\"%s\",\"valid_meta\":%s,\"disk_bytes\":%" PRIu64
                               ",\"apparent_bytes\":%" PRIu64 ",\"last_used\":%" PRIu64,
                               i ? "," : "", e->key, e->valid ? "true" : "false", e->disk, e->apparent, e->last_used);
                        if (e->valid)
                                printf(",\"language\":\"%s\",\"memory_mb\":%" PRIu32 ",\"state_bytes\":%" PRIu64
                                       ",\"qemu_version\":\"%s\",\"created_usec\":%" PRIu64,
                                       e->language, e->memory_mb, e->state, e->qemu_version, e->created_usec);
                        printf("}");
                }
                printf("]}\n");
                free(l.e);
                return 0;
        }
        printf("L1 snapshot cache: %s (sbx-cache)\n", l.path);
        printf("%zu snapshot(s), %.1f MiB on disk (%.1f MiB apparent), limit %" PRIu64 " MiB (cache_max_mb)\n", l.n,
               disk / 1048576.0, apparent / 1048576.0, l.max_bytes >> 20);
        if (l.n > 0)
                printf("\n%-14s %-11s %7s %9s %10s %8s  %-14s %s\n", "KEY", "LANGUAGE", "MEMORY", "DISK", "APPARENT",
                       "STATE", "LAST USED", "QEMU");
        for (size_t i = l.n; i-- > 0;) {
                const Entry *e = &l.e[i];
                if (!e->valid)
                        printf("%-14.12s %-11s %7s %8.1fM %9.1fM %8s  %-14s %s\n", e->key, "(invalid)", "-",
                               e->disk / 1048576.0, e->apparent / 1048576.0, "-",
                               age((int64_t) e->last_used, buf, sizeof buf), "-");
                else
                        printf("%-14.12s %-11s %6" PRIu32 "M %8.1fM %9.1fM %7.1fK  %-14s %s\n", e->key, e->language,
                               e->memory_mb, e->disk / 1048576.0, e->apparent / 1048576.0, e->state / 1024.0,
                               age((int64_t) e->last_used, buf, sizeof buf), e->qemu_version);
        }
        free(l.e);
        return 0;
}

/* purge or verify, for the given key prefixes (none: all). */
static int cache_drop(uint8_t type, int argc, char **argv) {
        _cleanup_(sbx_error_done) SbxError error = {};
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *note = NULL;
        uint32_t count = 0;
        SbxMsg m;
        int r;

        if (argc - 1 > (int) SBX_CACHE_PREFIX_MAX) {
                fprintf(stderr, "sbxctl: at most %u key prefixes\n", SBX_CACHE_PREFIX_MAX);
                return 2;
        }
        for (int k = 1; k < argc; k++)
                if (!*argv[k] || strlen(argv[k]) > 64 || strspn(argv[k], "0123456789abcdef") != strlen(argv[k])) {
                        fprintf(stderr, "sbxctl: '%s' is not a key prefix (lower-case hex digits)\n", argv[k]);
                        return 2;
                }
        if (connect_cache(&fd) < 0)
                return 1;
        sbx_msg_begin(&m, type);
        for (int k = 1; k < argc; k++)
                sbx_msg_put_str(&m, SBX_CT_PREFIX, argv[k]);
        r = sbx_msg_send(&m, fd);
        sbx_msg_done(&m);
        if (r >= 0)
                r = read_until_done(fd, NULL, &count, &note, &error);
        if (r < 0) {
                if (r == -EREMOTEIO)
                        fprintf(stderr, "sbxctl: %s\n", sbx_error_message(&error));
                else
                        fprintf(stderr, "sbxctl: the cache did not answer: %s\n", strerror(-r));
                return 1;
        }
        if (type == SBX_C_PURGE)
                printf("Purged %" PRIu32 " snapshot(s); %s.\n", count, note);
        else
                printf("Verified: %" PRIu32 " bad snapshot(s) dropped; %s.\n", count, note);
        return 0;
}

int sbxctl_cache(int argc, char **argv) {
        if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
                cache_help();
                return argc < 2 ? 2 : 0;
        }
        if (strcmp(argv[1], "ls") == 0 || strcmp(argv[1], "list") == 0)
                return cache_ls(argc > 2 && strcmp(argv[2], "--json") == 0);
        if (strcmp(argv[1], "purge") == 0)
                return cache_drop(SBX_C_PURGE, argc - 1, argv + 1);
        if (strcmp(argv[1], "verify") == 0)
                return cache_drop(SBX_C_VERIFY, argc - 1, argv + 1);
        fprintf(stderr, "sbxctl: unknown cache command '%s'\n", argv[1]);
        return 2;
}

int sbxctl_cache_snapshot_size(const char *language, uint64_t *ret_apparent, uint64_t *ret_disk, uint64_t *ret_state) {
        Listing l;
        int r = fetch_list(&l);
        if (r < 0) {
                free(l.e);
                return r;
        }
        r = -ENOENT;
        /* Listed oldest use first: the last match is the one in use. */
        for (size_t i = l.n; i-- > 0;)
                if (l.e[i].valid && strcmp(l.e[i].language, language) == 0) {
                        *ret_apparent = l.e[i].apparent;
                        *ret_disk = l.e[i].disk;
                        *ret_state = l.e[i].state;
                        r = 0;
                        break;
                }
        free(l.e);
        return r;
}
