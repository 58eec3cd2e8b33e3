/* SPDX-License-Identifier: Apache-2.0 */
/* sbxctl: administration of the sbx suite (status, benchmarks, sessions). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "cache.h"
#include "bus-names.h"
#include "bus-util.h"
#include "macro.h"
#include "pool.h"
#include "sessions.h"

static void help(void) {
        printf("Usage: sbxctl [--system|--user|--address ADDR] COMMAND ...\n\n"
               "Commands:\n"
               "  status [--json]                    broker, accelerator, VM slots and running jobs\n"
               "  bench cold [-n N] [-l LANG]... [--json]\n"
               "                                     cold-boot benchmark: median and p95 of boot time and\n"
               "                                     of time to first output, per language\n"
               "  bench session [-n N] [-l LANG]... [--json]\n"
               "                                     warm Exec latency on one session per language\n"
               "  sessions [--json]                  sessions (open, and closed ones for a while): object path,\n"
               "                                     language, uid, execs, age, state, owner\n"
               "  close PATH|ID                      close a session (its owner or root)\n"
               "  pool [--json]                      the warm pool: target, ready and starting VMs per language\n"
               "  pool set LANG=N...                 resize the warm pool (root or admin_group)\n"
               "  cache ls [--json]                  L1 memory snapshots: key, language, size, last use\n"
               "  cache purge [KEY-PREFIX...]        remove L1 snapshots (all, or the given ones)\n"
               "  cache verify [KEY-PREFIX...]       re-hash snapshots, drop corrupt ones\n");
}

static int cmd_status(sd_bus *bus, int argc, char **argv) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        bool json = argc > 1 && strcmp(argv[1], "--json") == 0;
        const char *s;
        uint32_t u;
        uint64_t t;
        int r;

        r = sd_bus_call_method(bus, SBX_BUS_NAME, SBX_BUS_PATH, SBX_BUS_IFACE, "GetStatus", &error, &reply, "");
        if (r < 0) {
                fprintf(stderr, "sbxctl: %s: %s\n", error.name ?: "error", error.message ?: strerror(-r));
                return sbx_error_exit_status(&error);
        }
        if (json) {
                r = sbx_json_write_value(reply, stdout);
                fputc('\n', stdout);
                return r < 0 ? 1 : 0;
        }
        printf("broker:      org.sbx.Broker1 ");
        if (sbx_dict_find(reply, "version", "s") > 0 && sd_bus_message_read(reply, "s", &s) >= 0)
                printf("version %s", s);
        if (sbx_dict_find(reply, "uptime_ms", "t") > 0 && sd_bus_message_read(reply, "t", &t) >= 0)
                printf(", up %llu s", (unsigned long long) (t / 1000));
        putchar('\n');
        if (sbx_dict_find(reply, "accel", "s") > 0 && sd_bus_message_read(reply, "s", &s) >= 0)
                printf("accelerator: %s\n", s);
        if (sbx_dict_find(reply, "worker_mode", "s") > 0 && sd_bus_message_read(reply, "s", &s) >= 0)
                printf("workers:     %s\n", strcmp(s, "socket") == 0 ? "socket-activated (systemd)"
                                                                       : "spawned by the broker (embedded)");
        if (sbx_dict_find(reply, "cgroup_mode", "s") > 0 && sd_bus_message_read(reply, "s", &s) >= 0) {
                if (strcmp(s, "v2") == 0 || strcmp(s, "v1") == 0)
                        printf("cgroups:     %s, memory and pids limits per VM (as the last VM reported)\n", s);
                else if (strcmp(s, "none") == 0)
                        printf("cgroups:     none: VMs run without memory and pids limits (as the last VM reported)\n");
                else
                        printf("cgroups:     %s (no VM has finished yet)\n", s);
        }
        if (sbx_dict_find(reply, "cache_mode", "s") > 0 && sd_bus_message_read(reply, "s", &s) >= 0) {
                if (strcmp(s, "socket") == 0)
                        printf("snapshots:   sbx-cache.socket (cache_socket)\n");
                else if (sbx_dict_find(reply, "cache_pid", "u") > 0 && sd_bus_message_read(reply, "u", &u) >= 0) {
                        if (u > 0)
                                printf("snapshots:   sbx-cache running (pid %u", u);
                        else
                                printf("snapshots:   sbx-cache not running (restarting; runs boot cold meanwhile");
                        if (sbx_dict_find(reply, "cache_restarts", "t") > 0 && sd_bus_message_read(reply, "t", &t) >= 0)
                                printf(", restarted %llu time(s)", (unsigned long long) t);
                        printf(")\n");
                }
        }
        printf("slots:       ");
        if (sbx_dict_find(reply, "active_runs", "u") > 0 && sd_bus_message_read(reply, "u", &u) >= 0)
                printf("%u running", u);
        if (sbx_dict_find(reply, "max_vms", "u") > 0 && sd_bus_message_read(reply, "u", &u) >= 0)
                printf(" of %u", u);
        if (sbx_dict_find(reply, "queued", "u") > 0 && sd_bus_message_read(reply, "u", &u) >= 0)
                printf(", %u queued", u);
        putchar('\n');
        if (sbx_dict_find(reply, "total_runs", "t") > 0 && sd_bus_message_read(reply, "t", &t) >= 0)
                printf("runs:        %llu total", (unsigned long long) t);
        if (sbx_dict_find(reply, "failed_runs", "t") > 0 && sd_bus_message_read(reply, "t", &t) >= 0)
                printf(", %llu failed", (unsigned long long) t);
        putchar('\n');

        if (sbx_dict_find(reply, "jobs", "a(tossuu)") > 0) {
                uint64_t id;
                const char *path, *state, *lang;
                uint32_t wpid, qpid;
                bool header = false;
                r = sd_bus_message_enter_container(reply, 'a', "(tossuu)");
                while (r >= 0 &&
                       (r = sd_bus_message_read(reply, "(tossuu)", &id, &path, &state, &lang, &wpid, &qpid)) > 0) {
                        if (!header) {
                                printf("\n%-6s %-10s %-11s %-8s %-8s %s\n", "JOB", "STATE", "LANGUAGE", "WORKER",
                                       "QEMU", "OBJECT");
                                header = true;
                        }
                        printf("%-6llu %-10s %-11s %-8u %-8u %s\n", (unsigned long long) id, state, lang, wpid, qpid,
                               path);
                }
                if (!header)
                        printf("\nno jobs\n");
        }
        return 0;
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },       { "system", no_argument, NULL, 'S' },
                { "user", no_argument, NULL, 'U' },       { "address", required_argument, NULL, 'A' },
                {},
        };
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        SbxBusKind kind = SBX_BUS_AUTO;
        const char *address = NULL;
        int c, r;

        while ((c = getopt_long(argc, argv, "+h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case 'S':
                        kind = SBX_BUS_SYSTEM;
                        break;
                case 'U':
                        kind = SBX_BUS_USER;
                        break;
                case 'A':
                        kind = SBX_BUS_ADDRESS;
                        address = optarg;
                        break;
                default:
                        return 2;
                }
        if (optind >= argc) {
                help();
                return 2;
        }
        /* The snapshot cache is sbx-cache's socket, not a bus service. */
        if (strcmp(argv[optind], "cache") == 0)
                return sbxctl_cache(argc - optind, argv + optind);
        r = sbx_bus_connect(kind, address, &bus);
        if (r < 0) {
                fprintf(stderr, "sbxctl: cannot connect to the bus: %s\n", strerror(-r));
                return 1;
        }
        const char *cmd = argv[optind];
        int sub_argc = argc - optind;
        char **sub_argv = argv + optind;
        optind = 0;
        if (strcmp(cmd, "status") == 0)
                return cmd_status(bus, sub_argc, sub_argv);
        if (strcmp(cmd, "bench") == 0)
                return sbxctl_bench(bus, sub_argc, sub_argv);
        if (strcmp(cmd, "sessions") == 0)
                return sbxctl_sessions(bus, sub_argc, sub_argv);
        if (strcmp(cmd, "pool") == 0)
                return sbxctl_pool(bus, sub_argc, sub_argv);
        if (strcmp(cmd, "close") == 0)
                return sbxctl_close(bus, sub_argc, sub_argv);
        fprintf(stderr, "sbxctl: unknown command '%s' (try --help)\n", cmd);
        return 2;
}
