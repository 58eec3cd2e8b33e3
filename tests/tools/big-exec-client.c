/* SPDX-License-Identifier: Apache-2.0 */
/* big-exec-client: one org.sbx.Session1.Exec with a large code string, for the stall test
 * (tests/integration/test-stall.sh). Arguments cannot carry a megabyte, so the code is made here:
 *
 *   big-exec-client SESSION_PATH BYTES
 *
 * sends Python code of about BYTES bytes (a comment, then print("big")) on $SBX_BUS_ADDRESS and
 * prints "ok EXIT_CODE" or "error NAME: MESSAGE", then the call's duration as "ms N".
 * Exit status: 0 when the call returned, 1 when it failed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus-util.h"
#include "fdio.h"
#include "macro.h"

int main(int argc, char **argv) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *code = NULL;
        int r;

        if (argc != 3) {
                fprintf(stderr, "usage: big-exec-client SESSION_PATH BYTES\n");
                return 2;
        }
        size_t n = strtoul(argv[2], NULL, 10);
        const char *tail = "\nprint(\"big\")\n";
        if (n < strlen(tail) + 2 || n > 64u * 1024u * 1024u) {
                fprintf(stderr, "big-exec-client: BYTES out of range\n");
                return 2;
        }
        code = malloc(n + 1);
        if (!code)
                return 1;
        code[0] = '#';
        memset(code + 1, 'x', n - 1 - strlen(tail));
        strcpy(code + n - strlen(tail), tail);

        r = sbx_bus_connect(SBX_BUS_AUTO, NULL, &bus);
        if (r < 0) {
                fprintf(stderr, "big-exec-client: cannot connect to the bus: %s\n", strerror(-r));
                return 1;
        }
        r = sd_bus_message_new_method_call(bus, &m, "org.sbx.Broker1", argv[1], "org.sbx.Session1", "Exec");
        if (r >= 0)
                r = sd_bus_message_append(m, "sa{sv}", code, 0);
        if (r < 0) {
                fprintf(stderr, "big-exec-client: cannot build the call: %s\n", strerror(-r));
                return 1;
        }
        uint64_t t0 = now_usec(CLOCK_MONOTONIC);
        r = sd_bus_call(bus, m, 300u * 1000000u, &error, &reply);
        uint64_t ms = (now_usec(CLOCK_MONOTONIC) - t0) / 1000u;
        if (r < 0) {
                printf("error %s: %s\nms %llu\n", error.name ?: "?", error.message ?: strerror(-r),
                       (unsigned long long) ms);
                return 1;
        }
        int32_t exit_code = -1;
        if (sbx_dict_find(reply, "exit_code", "i") >= 0)
                (void) sd_bus_message_read(reply, "i", &exit_code);
        printf("ok %d\nms %llu\n", (int) exit_code, (unsigned long long) ms);
        return 0;
}
