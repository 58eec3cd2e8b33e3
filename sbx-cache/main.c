/* SPDX-License-Identifier: Apache-2.0 */
/* sbx-cache: owns the L1 snapshot cache directory and serves it over a unix socket
 * (docs/snapshots.md, docs/protocols.md). Socket-activated (sbx-cache.socket) or listening itself
 * (the broker's embedded mode). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "cache-client.h"
#include "cache.h"
#include "config.h"
#include "fdio.h"
#include "log.h"
#include "macro.h"
#include "sbx-error.h"
#include "user.h"

static void help(void) {
        printf("Usage: sbx-cache [OPTIONS]\n"
               "Owns the L1 snapshot cache and serves it to sbx-vmworker and sbxctl.\n\n"
               "  --dir=PATH          the cache directory (default: state_dir/cache/l1)\n"
               "  --socket=PATH       listen here unless socket-activated (default: cache_socket,\n"
               "                      else runtime_dir/" SBX_CACHE_SOCKET_NAME ")\n"
               "  --allow-uid=USER    a uid (besides root) that may look up and insert snapshots\n"
               "  --admin-group=GROUP members may purge and verify (default: admin_group)\n"
               "  --max-mb=N          disk use limit of the snapshots (default: cache_max_mb)\n"
               "The configuration comes from $SBX_CONFIG or " SBX_SYSCONFDIR "/sbx.conf.\n");
}

int main(int argc, char **argv) {
        enum { ARG_DIR = 0x100, ARG_SOCKET, ARG_ALLOW_UID, ARG_ADMIN_GROUP, ARG_MAX_MB };
        static const struct option options[] = {
                {"help", no_argument, NULL, 'h'},
                {"dir", required_argument, NULL, ARG_DIR},
                {"socket", required_argument, NULL, ARG_SOCKET},
                {"allow-uid", required_argument, NULL, ARG_ALLOW_UID},
                {"admin-group", required_argument, NULL, ARG_ADMIN_GROUP},
                {"max-mb", required_argument, NULL, ARG_MAX_MB},
                {},
        };
        Cache c = {.lock_fd = -EBADF, .listen_fd = -EBADF, .store = SNAPSHOT_STORE_NULL};
        SbxConfig cfg = {};
        const char *dir = NULL, *socket_path = NULL, *admin_group = NULL;
        char dir_buf[512], socket_buf[256];
        long max_mb = -1;
        int o, r, ret = 1;

        log_set_ident("sbx-cache");
        log_parse_environment();
        _cleanup_(sbx_error_done) SbxError error = {};
        r = sbx_config_load(&cfg, NULL, &error);
        if (r < 0) {
                log_error_errno(r, "cannot load the configuration: %s", sbx_error_message(&error));
                sbx_config_done(&cfg);
                return 1;
        }
        while ((o = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (o) {
                case 'h':
                        help();
                        sbx_config_done(&cfg);
                        return 0;
                case ARG_DIR:
                        dir = optarg;
                        break;
                case ARG_SOCKET:
                        socket_path = optarg;
                        break;
                case ARG_ALLOW_UID:
                        if (c.n_allow_uids >= CACHE_MAX_ALLOW_UIDS ||
                            sbx_parse_uid(optarg, &c.allow_uids[c.n_allow_uids]) < 0) {
                                log_error("invalid --allow-uid %s", optarg);
                                goto finish;
                        }
                        c.n_allow_uids++;
                        break;
                case ARG_ADMIN_GROUP:
                        admin_group = optarg;
                        break;
                case ARG_MAX_MB: {
                        char *end;
                        max_mb = strtol(optarg, &end, 10);
                        if (*end || end == optarg || max_mb < 0 || max_mb > (1L << 30)) {
                                log_error("invalid --max-mb %s", optarg);
                                goto finish;
                        }
                        break;
                }
                default:
                        goto finish;
                }
        if (optind < argc) {
                log_error("unexpected argument %s", argv[optind]);
                goto finish;
        }

        if (!dir) {
                snprintf(dir_buf, sizeof dir_buf, "%s/cache/l1", cfg.state_dir);
                dir = dir_buf;
        }
        if (!socket_path) {
                if (sbx_cache_socket_path(cfg.cache_socket, cfg.runtime_dir, socket_buf, sizeof socket_buf) < 0) {
                        log_error("the socket path is too long");
                        goto finish;
                }
                socket_path = socket_buf;
        }
        c.max_bytes = (uint64_t) (max_mb >= 0 ? (unsigned long) max_mb : cfg.cache_max_mb) << 20;
        admin_group = admin_group ?: cfg.admin_group;
        if (admin_group) {
                struct group *g = getgrnam(admin_group);
                if (!g)
                        log_warning("admin group %s does not exist: only root may purge", admin_group);
                else
                        c.admin_gid = g->gr_gid, c.have_admin_gid = true;
        }

        umask(0077);
        r = snapshot_store_open(dir, true, &c.store);
        if (r < 0) {
                log_error_errno(r, "cannot open the cache directory %s: %m", dir);
                goto finish;
        }
        (void) fchmod(c.store.dir_fd, 0700);
        c.lock_fd = openat(c.store.dir_fd, ".lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (c.lock_fd < 0 || flock(c.lock_fd, LOCK_EX | LOCK_NB) < 0) {
                log_error_errno(errno, "another sbx-cache serves %s (or its lock cannot be taken): %m", dir);
                goto finish;
        }
        snapshot_remove_leftovers(&c.store);

        int n = sd_listen_fds(1);
        if (n > 1) {
                log_error("expected one socket from systemd, got %d", n);
                goto finish;
        }
        if (n == 1)
                c.listen_fd = SD_LISTEN_FDS_START;
        else {
                /* We hold the cache's lock: a socket there is a dead daemon's. */
                r = unix_listen(socket_path, 64, &c.listen_fd);
                if (r < 0) {
                        log_error_errno(r, "cannot listen on %s: %m", socket_path);
                        goto finish;
                }
        }

        r = sd_event_default(&c.event);
        if (r < 0) {
                log_error_errno(r, "cannot create the event loop: %m");
                goto finish;
        }
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGCHLD); /* sd_event_add_child() */
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);
        (void) sd_event_add_signal(c.event, NULL, SIGTERM, NULL, NULL);
        (void) sd_event_add_signal(c.event, NULL, SIGINT, NULL, NULL);
        r = cache_listen_start(&c);
        if (r < 0) {
                log_error_errno(r, "cannot watch the socket: %m");
                goto finish;
        }
        log_info("ready: cache %s, socket %s, limit %lu MiB", c.store.path, n == 1 ? "(from systemd)" : socket_path,
                 (unsigned long) (c.max_bytes >> 20));
        (void) sd_notify(0, "READY=1");
        r = sd_event_loop(c.event);
        (void) sd_notify(0, "STOPPING=1");
        log_info("stopping: %lu hits, %lu snapshots stored, %lu requests refused", (unsigned long) c.n_hits,
                 (unsigned long) c.n_builds, (unsigned long) c.n_refused);
        ret = r < 0 ? 1 : 0;
        if (n != 1)
                (void) unlink(socket_path);
finish:
        cache_done(&c);
        sbx_config_done(&cfg);
        return ret;
}
