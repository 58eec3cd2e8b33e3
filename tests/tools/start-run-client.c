/* SPDX-License-Identifier: Apache-2.0 */
/* start-run-client: a StartRun caller for the fault suite
 * (tests/integration/test-faults-broker.sh) that misbehaves as a reader.
 *
 *   start-run-client [--read BYTES] [--echo] [--disconnect] [--cold] [--timeout SECONDS]
 *                    [--language LANG] CODE
 *
 * Calls org.sbx.Broker1.StartRun on $SBX_BUS_ADDRESS with stdout_fd and
 * stderr_fd set to one pipe (--cold: also warm_pool and snapshot false, so
 * the worker gets a cold open and one exec), prints "job PATH", reads BYTES of output
 * (all of it without --read; --echo copies it to stdout), prints "read N"
 * and closes its end of the pipe mid-stream. Then, with --disconnect, it
 * prints "disconnect" and exits (its bus connection goes away with the job
 * still running); otherwise it waits for the job's Finished signal and
 * prints "finished " followed by the result dictionary as JSON. Exit status:
 * 0 when it got that far, 1 when the call failed (the error is printed), 3
 * when Finished did not come within --timeout plus 120 s, 4 when the broker
 * left the bus first ("broker vanished"). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus-util.h"
#include "fdio.h"
#include "macro.h"

typedef struct State {
        bool finished, vanished;
} State;

static int on_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        State *s = userdata;
        const char *name, *old_owner, *new_owner;
        (void) ret_error;

        if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) < 0)
                return 0;
        if (strcmp(name, "org.sbx.Broker1") == 0 && !*new_owner) {
                puts("broker vanished");
                fflush(stdout);
                s->vanished = true;
        }
        return 0;
}

static int on_finished(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        State *s = userdata;
        (void) ret_error;

        fputs("finished ", stdout);
        if (sbx_json_write_value(m, stdout) < 0)
                fputs("null", stdout);
        fputc('\n', stdout);
        fflush(stdout);
        s->finished = true;
        return 0;
}

/* Reads up to max bytes (max 0: to EOF) and returns how many it read. */
static uint64_t read_output(int fd, uint64_t max, bool echo, uint64_t deadline) {
        char buf[65536];
        uint64_t total = 0;

        while (max == 0 || total < max) {
                uint64_t now = now_usec(CLOCK_MONOTONIC);
                struct pollfd p = { .fd = fd, .events = POLLIN };

                if (now >= deadline)
                        break;
                int k = poll(&p, 1, (int) ((deadline - now) / 1000u) + 1);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        break;
                size_t want = max == 0 ? sizeof buf : MIN(sizeof buf, (size_t) (max - total));
                ssize_t n = read(fd, buf, want);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                if (echo)
                        (void) loop_write(STDOUT_FILENO, buf, (size_t) n);
                total += (uint64_t) n;
        }
        return total;
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "read", required_argument, NULL, 'r' },
                { "disconnect", no_argument, NULL, 'd' },
                { "echo", no_argument, NULL, 'e' },
                { "cold", no_argument, NULL, 'c' },
                { "timeout", required_argument, NULL, 't' },
                { "language", required_argument, NULL, 'l' },
                {},
        };
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_slot_unrefp) sd_bus_slot *slot = NULL, *owner_slot = NULL;
        _cleanup_close_pair_ int pipefd[2] = { -EBADF, -EBADF };
        const char *language = "python", *path;
        uint64_t read_max = 0;
        unsigned timeout_s = 30;
        bool disconnect = false, echo = false, cold = false;
        State state = {};
        int c, r;

        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0)
                switch (c) {
                case 'r':
                        read_max = strtoull(optarg, NULL, 10);
                        break;
                case 'd':
                        disconnect = true;
                        break;
                case 'e':
                        echo = true;
                        break;
                case 'c':
                        cold = true;
                        break;
                case 't':
                        timeout_s = (unsigned) strtoul(optarg, NULL, 10);
                        break;
                case 'l':
                        language = optarg;
                        break;
                default:
                        return 2;
                }
        if (optind + 1 != argc) {
                fprintf(stderr, "usage: start-run-client [--read BYTES] [--echo] [--disconnect] [--cold] [--timeout S] "
                                "[--language L] CODE\n");
                return 2;
        }

        r = sbx_bus_connect(SBX_BUS_AUTO, NULL, &bus);
        if (r < 0) {
                fprintf(stderr, "start-run-client: cannot connect to the bus: %s\n", strerror(-r));
                return 1;
        }
        if (pipe2(pipefd, O_CLOEXEC) < 0) {
                fprintf(stderr, "start-run-client: pipe: %m\n");
                return 1;
        }

        /* Before the call, so a broker that dies at any point after it is noticed. */
        r = sd_bus_match_signal(bus, &owner_slot, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                "org.freedesktop.DBus", "NameOwnerChanged", on_owner_changed, &state);
        if (r < 0) {
                fprintf(stderr, "start-run-client: cannot watch the broker's name: %s\n", strerror(-r));
                return 1;
        }
        r = sd_bus_message_new_method_call(bus, &m, "org.sbx.Broker1", "/org/sbx/Broker1", "org.sbx.Broker1",
                                           "StartRun");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r >= 0)
                r = sd_bus_message_append(m, "{sv}{sv}{sv}{sv}{sv}", "code", "s", argv[optind], "language", "s",
                                          language, "timeout_seconds", "u", timeout_s, "stdout_fd", "h", pipefd[1],
                                          "stderr_fd", "h", pipefd[1]);
        if (r >= 0 && cold)
                r = sd_bus_message_append(m, "{sv}{sv}", "warm_pool", "b", 0, "snapshot", "b", 0);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r < 0) {
                fprintf(stderr, "start-run-client: cannot build the request: %s\n", strerror(-r));
                return 1;
        }
        r = sd_bus_call(bus, m, 60u * 1000000u, &error, &reply);
        if (r < 0) {
                fprintf(stderr, "start-run-client: %s: %s\n", error.name ?: "error", error.message ?: strerror(-r));
                return 1;
        }
        /* The message holds a copy of the pipe's write end: without this the reader never sees EOF. */
        m = sd_bus_message_unref(m);
        r = sd_bus_message_read(reply, "o", &path);
        if (r < 0)
                return 1;
        printf("job %s\n", path);
        fflush(stdout);
        r = sd_bus_match_signal(bus, &slot, NULL, path, "org.sbx.Job1", "Finished", on_finished, &state);
        if (r < 0)
                return 1;
        pipefd[1] = safe_close(pipefd[1]);

        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + ((uint64_t) timeout_s + 120u) * 1000000u;
        uint64_t n = read_output(pipefd[0], read_max, echo, deadline);
        printf("read %llu\n", (unsigned long long) n);
        fflush(stdout);
        pipefd[0] = safe_close(pipefd[0]);

        if (disconnect) {
                puts("disconnect");
                return 0;
        }
        while (!state.finished && !state.vanished) {
                uint64_t now = now_usec(CLOCK_MONOTONIC);
                if (now >= deadline) {
                        puts("no Finished signal in time");
                        return 3;
                }
                r = sd_bus_process(bus, NULL);
                if (r < 0) {
                        fprintf(stderr, "start-run-client: bus: %s\n", strerror(-r));
                        return 1;
                }
                if (r > 0)
                        continue;
                r = sd_bus_wait(bus, deadline - now);
                if (r < 0 && r != -EINTR) {
                        fprintf(stderr, "start-run-client: bus: %s\n", strerror(-r));
                        return 1;
                }
        }
        return state.finished ? 0 : 4;
}
