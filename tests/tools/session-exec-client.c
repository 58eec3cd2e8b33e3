/* SPDX-License-Identifier: Apache-2.0 */
/* session-exec-client: one org.sbx.Session1.Exec that a shell cannot make, for the stall test
 * (tests/integration/test-stall.sh):
 *
 *   session-exec-client SESSION_PATH --big BYTES
 *       Python code of about BYTES bytes (a comment, then print("big")): arguments cannot carry
 *       a megabyte.
 *   session-exec-client SESSION_PATH --unread-stdout CODE
 *       CODE with stdout_fd set to a pipe that is never read.
 *
 * Calls on $SBX_BUS_ADDRESS and prints "ok EXIT_CODE" (and "stdout_truncated true|false") or
 * "error NAME: MESSAGE", then the call's duration as "ms N". Exit status: 0 when the call
 * returned, 1 when it failed, 2 for bad arguments. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus-util.h"
#include "fdio.h"
#include "macro.h"

static char *big_code(size_t n) {
        const char *tail = "\nprint(\"big\")\n";
        if (n < strlen(tail) + 2 || n > 64u * 1024u * 1024u)
                return NULL;
        char *code = malloc(n + 1);
        if (!code)
                return NULL;
        code[0] = '#';
        memset(code + 1, 'x', n - 1 - strlen(tail));
        strcpy(code + n - strlen(tail), tail);
        return code;
}

int main(int argc, char **argv) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *code = NULL;
        int pipefd[2] = {-EBADF, -EBADF};
        int r;

        if (argc != 4)
                goto usage;
        if (strcmp(argv[2], "--big") == 0) {
                code = big_code(strtoul(argv[3], NULL, 10));
                if (!code)
                        goto usage;
        } else if (strcmp(argv[2], "--unread-stdout") == 0) {
                code = strdup(argv[3]);
                if (!code || pipe2(pipefd, O_CLOEXEC) < 0)
                        return 1;
        } else
                goto usage;

        r = sbx_bus_connect(SBX_BUS_AUTO, NULL, &bus);
        if (r < 0) {
                fprintf(stderr, "session-exec-client: cannot connect to the bus: %s\n", strerror(-r));
                return 1;
        }
        r = sd_bus_message_new_method_call(bus, &m, "org.sbx.Broker1", argv[1], "org.sbx.Session1", "Exec");
        if (r >= 0 && pipefd[1] >= 0)
                r = sd_bus_message_append(m, "sa{sv}", code, 1, "stdout_fd", "h", pipefd[1]);
        else if (r >= 0)
                r = sd_bus_message_append(m, "sa{sv}", code, 0);
        if (r < 0) {
                fprintf(stderr, "session-exec-client: cannot build the call: %s\n", strerror(-r));
                return 1;
        }
        pipefd[1] = safe_close(pipefd[1]);
        uint64_t t0 = now_usec(CLOCK_MONOTONIC);
        r = sd_bus_call(bus, m, 300u * 1000000u, &error, &reply);
        uint64_t ms = (now_usec(CLOCK_MONOTONIC) - t0) / 1000u;
        if (r < 0) {
                printf("error %s: %s\nms %llu\n", error.name ?: "?", error.message ?: strerror(-r),
                       (unsigned long long) ms);
                return 1;
        }
        int32_t exit_code = -1;
        int truncated = 0;
        if (sbx_dict_find(reply, "exit_code", "i") >= 0)
                (void) sd_bus_message_read(reply, "i", &exit_code);
        if (sbx_dict_find(reply, "stdout_truncated", "b") >= 0)
                (void) sd_bus_message_read(reply, "b", &truncated);
        printf("ok %d\nstdout_truncated %s\nms %llu\n", (int) exit_code, truncated ? "true" : "false",
               (unsigned long long) ms);
        safe_close(pipefd[0]);
        return 0;
usage:
        fprintf(stderr, "usage: session-exec-client SESSION_PATH --big BYTES | --unread-stdout CODE\n");
        return 2;
}
