/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus-names.h"
#include "bus-util.h"
#include "macro.h"
#include "pool.h"

static int pool_show(sd_bus *bus, bool json) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *lang;
        uint32_t target, ready, starting;
        bool first = true;
        int r;

        r = sd_bus_call_method(bus, SBX_BUS_NAME, SBX_BUS_PATH, SBX_BUS_IFACE, "GetPool", &error, &reply, "");
        if (r < 0) {
                fprintf(stderr, "sbxctl: %s: %s\n", error.name ?: "error", error.message ?: strerror(-r));
                return sbx_error_exit_status(&error);
        }
        r = sd_bus_message_enter_container(reply, 'a', "(suuu)");
        if (r < 0)
                return 1;
        if (json)
                putchar('[');
        else
                printf("%-11s %6s %6s %9s\n", "LANGUAGE", "TARGET", "READY", "STARTING");
        while ((r = sd_bus_message_read(reply, "(suuu)", &lang, &target, &ready, &starting)) > 0) {
                if (json)
                        printf("%s{\"language\":\"%s\",\"target\":%u,\"ready\":%u,\"starting\":%u}", first ? "" : ",",
                               lang, target, ready, starting);
                else
                        printf("%-11s %6u %6u %9u\n", lang, target, ready, starting);
                first = false;
        }
        if (json)
                puts("]");
        return r < 0 ? 1 : 0;
}

static int pool_set(sd_bus *bus, int argc, char **argv) {
        if (argc < 1) {
                fprintf(stderr, "sbxctl: pool set needs LANG=N (e.g. python=2 javascript=1)\n");
                return 2;
        }
        for (int i = 0; i < argc; i++) {
                _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
                _cleanup_free_ char *lang = NULL;
                const char *eq = strchr(argv[i], '=');
                char *end;
                unsigned long n;
                int r;

                if (!eq || eq == argv[i]) {
                        fprintf(stderr, "sbxctl: '%s' is not LANG=N\n", argv[i]);
                        return 2;
                }
                errno = 0;
                n = strtoul(eq + 1, &end, 10);
                if (errno || end == eq + 1 || *end || n > UINT32_MAX) {
                        fprintf(stderr, "sbxctl: '%s' is not a pool size\n", eq + 1);
                        return 2;
                }
                lang = strndup(argv[i], (size_t) (eq - argv[i]));
                if (!lang)
                        return 1;
                r = sd_bus_call_method(bus, SBX_BUS_NAME, SBX_BUS_PATH, SBX_BUS_IFACE, "SetPoolSize", &error, NULL,
                                       "su", lang, (uint32_t) n);
                if (r < 0) {
                        fprintf(stderr, "sbxctl: %s: %s\n", error.name ?: "error", error.message ?: strerror(-r));
                        return sbx_error_exit_status(&error);
                }
        }
        return 0;
}

int sbxctl_pool(sd_bus *bus, int argc, char **argv) {
        if (argc > 1 && strcmp(argv[1], "set") == 0)
                return pool_set(bus, argc - 2, argv + 2);
        if (argc > 1 && strcmp(argv[1], "--json") != 0) {
                fprintf(stderr, "sbxctl: unknown pool command '%s'\n", argv[1]);
                return 2;
        }
        return pool_show(bus, argc > 1);
}
