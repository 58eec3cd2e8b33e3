/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "config.h"
#include "macro.h"
#include "snapshot-store.h"

static void cache_help(void) {
        printf("Usage: sbxctl cache ls [--json]\n"
               "       sbxctl cache purge [KEY-PREFIX...]   all snapshots, or those whose key starts so\n");
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

static int cache_ls(SnapshotStore *s, const SbxConfig *c, bool json) {
        _cleanup_free_ SnapshotEntry *l = NULL;
        uint64_t disk = 0, apparent = 0;
        size_t n = 0;
        char buf[32];
        int r;

        if (s->dir_fd >= 0) {
                r = snapshot_list(s, &l, &n);
                if (r < 0) {
                        fprintf(stderr, "sbxctl: cannot list %s: %s\n", s->path, strerror(-r));
                        return 1;
                }
        }
        for (size_t i = 0; i < n; i++) {
                disk += l[i].disk_bytes;
                apparent += l[i].apparent_bytes;
        }
        if (json) {
                printf("{\"dir\":\"%s\",\"max_mb\":%" PRIu32 ",\"disk_bytes\":%" PRIu64 ",\"apparent_bytes\":%" PRIu64
                       ",\"snapshots\":[",
                       s->path, c->cache_max_mb, disk, apparent);
                /* Oldest use first, as listed. */
                for (size_t i = 0; i < n; i++) {
                        const SnapshotEntry *e = &l[i];
                        printf("%s{\"key\":\"%s\",\"valid_meta\":%s,\"disk_bytes\":%" PRIu64
                               ",\"apparent_bytes\":%" PRIu64 ",\"last_used\":%" PRIi64,
                               i ? "," : "", e->name, e->valid_meta ? "true" : "false", e->disk_bytes,
                               e->apparent_bytes, e->last_used_sec);
                        if (e->valid_meta)
                                printf(",\"language\":\"%s\",\"memory_mb\":%" PRIu32 ",\"state_bytes\":%" PRIu64
                                       ",\"qemu_version\":\"%s\",\"created_usec\":%" PRIu64 ",\"save_ms\":%" PRIu64,
                                       e->meta.language, e->meta.memory_mb, e->meta.state_size, e->meta.qemu_version,
                                       e->meta.created_usec, e->meta.save_ms);
                        printf("}");
                }
                printf("]}\n");
                return 0;
        }
        printf("L1 snapshot cache: %s\n", s->path);
        printf("%zu snapshot(s), %.1f MiB on disk (%.1f MiB apparent), limit %" PRIu32 " MiB (cache_max_mb)\n", n,
               disk / 1048576.0, apparent / 1048576.0, c->cache_max_mb);
        if (n == 0)
                return 0;
        printf("\n%-14s %-11s %7s %9s %10s %8s  %-14s %s\n", "KEY", "LANGUAGE", "MEMORY", "DISK", "APPARENT", "STATE",
               "LAST USED", "QEMU");
        for (size_t i = n; i-- > 0;) {
                const SnapshotEntry *e = &l[i];
                if (!e->valid_meta) {
                        printf("%-14.12s %-11s %7s %8.1fM %9.1fM %8s  %-14s %s\n", e->name, "(invalid)", "-",
                               e->disk_bytes / 1048576.0, e->apparent_bytes / 1048576.0, "-",
                               age(e->last_used_sec, buf, sizeof buf), "-");
                        continue;
                }
                printf("%-14.12s %-11s %6" PRIu32 "M %8.1fM %9.1fM %7.1fK  %-14s %s\n", e->name, e->meta.language,
                       e->meta.memory_mb, e->disk_bytes / 1048576.0, e->apparent_bytes / 1048576.0,
                       e->meta.state_size / 1024.0, age(e->last_used_sec, buf, sizeof buf), e->meta.qemu_version);
        }
        return 0;
}

static int cache_purge(SnapshotStore *s, int argc, char **argv) {
        _cleanup_free_ SnapshotEntry *l = NULL;
        size_t n = 0, dropped = 0, busy = 0;
        int r;

        if (s->dir_fd < 0) {
                printf("Purged 0 snapshot(s).\n");
                return 0;
        }
        r = snapshot_list(s, &l, &n);
        if (r < 0) {
                fprintf(stderr, "sbxctl: cannot list %s: %s\n", s->path, strerror(-r));
                return 1;
        }
        for (size_t i = 0; i < n; i++) {
                bool match = argc <= 1;
                for (int k = 1; k < argc && !match; k++)
                        match = *argv[k] && strncmp(l[i].name, argv[k], strlen(argv[k])) == 0;
                if (!match)
                        continue;
                /* Not while a worker builds or drops it. Restored VMs keep their mapping of the
                 * removed files, so running sessions are not affected. */
                int lock = snapshot_lock(s, l[i].name);
                if (lock < 0) {
                        busy++;
                        continue;
                }
                r = snapshot_drop(s, l[i].name);
                safe_close(lock);
                if (r < 0)
                        fprintf(stderr, "sbxctl: cannot remove %.12s: %s\n", l[i].name, strerror(-r));
                else
                        dropped++;
        }
        snapshot_remove_stale_builds(s);
        printf("Purged %zu snapshot(s)%s.\n", dropped, busy ? " (some were busy: being built)" : "");
        return busy ? 1 : 0;
}

int sbxctl_cache(int argc, char **argv) {
        SnapshotStore s = SNAPSHOT_STORE_NULL;
        SbxConfig c;
        int r, ret;

        if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
                cache_help();
                return argc < 2 ? 2 : 0;
        }
        r = sbx_config_load(&c, NULL);
        if (r < 0) {
                fprintf(stderr, "sbxctl: cannot load the configuration: %s\n", strerror(-r));
                return 1;
        }
        r = snapshot_store_open(c.state_dir, false, &s);
        if (r < 0 && r != -ENOENT) {
                fprintf(stderr, "sbxctl: cannot open the cache in %s: %s\n", c.state_dir, strerror(-r));
                sbx_config_done(&c);
                return 1;
        }
        if (r == -ENOENT)
                snprintf(s.path, sizeof s.path, "%s/cache/l1", c.state_dir);
        if (strcmp(argv[1], "ls") == 0 || strcmp(argv[1], "list") == 0)
                ret = cache_ls(&s, &c, argc > 2 && strcmp(argv[2], "--json") == 0);
        else if (strcmp(argv[1], "purge") == 0)
                ret = cache_purge(&s, argc - 1, argv + 1);
        else {
                fprintf(stderr, "sbxctl: unknown cache command '%s'\n", argv[1]);
                ret = 2;
        }
        snapshot_store_close(&s);
        sbx_config_done(&c);
        return ret;
}

int sbxctl_cache_snapshot_size(const char *language, uint64_t *ret_apparent, uint64_t *ret_disk,
                               uint64_t *ret_state) {
        SnapshotStore s = SNAPSHOT_STORE_NULL;
        _cleanup_free_ SnapshotEntry *l = NULL;
        SbxConfig c;
        size_t n = 0;
        int r;

        r = sbx_config_load(&c, NULL);
        if (r < 0)
                return r;
        r = snapshot_store_open(c.state_dir, false, &s);
        sbx_config_done(&c);
        if (r < 0)
                return r;
        r = snapshot_list(&s, &l, &n);
        snapshot_store_close(&s);
        if (r < 0)
                return r;
        /* Listed oldest use first: the last match is the one in use. */
        for (size_t i = n; i-- > 0;)
                if (l[i].valid_meta && strcmp(l[i].meta.language, language) == 0) {
                        *ret_apparent = l[i].apparent_bytes;
                        *ret_disk = l[i].disk_bytes;
                        *ret_state = l[i].meta.state_size;
                        return 0;
                }
        return -ENOENT;
}
