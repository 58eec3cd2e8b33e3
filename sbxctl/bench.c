/* SPDX-License-Identifier: Apache-2.0 */
/* `sbxctl bench cold`: times cold runs end to end from this client's D-Bus call.
 * Figures are printed, never asserted: the machines are shared and noisy. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "bus-names.h"
#include "bus-util.h"
#include "fdio.h"
#include "macro.h"

typedef struct Sample {
        double first_output_ms; /* call → first stdout byte */
        double boot_ms;         /* worker-reported guest boot */
        double total_ms;        /* call → reply */
        bool ok;
} Sample;

typedef struct Pending {
        bool done;
        sd_bus_message *reply;
        sd_bus_error error;
} Pending;

static const struct {
        const char *language;
        const char *code;
} bench_code[] = {
        { "python", "print(1)" },
        { "javascript", "console.log(1)" },
        { "raw", "echo 1" },
};

static int on_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Pending *p = userdata;
        (void) ret_error;
        p->done = true;
        if (sd_bus_message_is_method_error(reply, NULL))
                sd_bus_error_copy(&p->error, sd_bus_message_get_error(reply));
        else
                p->reply = sd_bus_message_ref(reply);
        return 0;
}

static int one_run(sd_bus *bus, const char *language, const char *code, Sample *ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        _cleanup_(sd_bus_slot_unrefp) sd_bus_slot *slot = NULL;
        _cleanup_close_pair_ int out[2] = { -EBADF, -EBADF };
        Pending p = { .error = SD_BUS_ERROR_NULL };
        uint64_t t0, t_first = 0;
        int r;

        *ret = (Sample) {};
        if (pipe2(out, O_CLOEXEC | O_NONBLOCK) < 0)
                return -errno;
        r = sd_bus_message_new_method_call(bus, &m, SBX_BUS_NAME, SBX_BUS_PATH, SBX_BUS_IFACE, "Run");
        if (r >= 0)
                r = sd_bus_message_append(m, "a{sv}", 3, "code", "s", code, "language", "s", language, "stdout_fd",
                                          "h", out[1]);
        if (r < 0)
                return r;
        t0 = now_usec(CLOCK_MONOTONIC);
        r = sd_bus_call_async(bus, &slot, m, on_reply, &p, 600u * 1000000u);
        if (r < 0)
                return r;
        m = sd_bus_message_unref(m);
        out[1] = safe_close(out[1]);

        while (!p.done) {
                r = sd_bus_process(bus, NULL);
                if (r < 0)
                        return r;
                if (r > 0)
                        continue;
                struct pollfd pf[2] = {
                        { .fd = sd_bus_get_fd(bus), .events = (short) sd_bus_get_events(bus) },
                        { .fd = out[0], .events = POLLIN },
                };
                if (poll(pf, t_first ? 1 : 2, 1000) < 0 && errno != EINTR)
                        return -errno;
                if (!t_first && (pf[1].revents & (POLLIN | POLLHUP))) {
                        char buf[256];
                        if (read(out[0], buf, sizeof buf) > 0)
                                t_first = now_usec(CLOCK_MONOTONIC);
                }
        }
        uint64_t t_end = now_usec(CLOCK_MONOTONIC);
        if (!t_first) {
                char buf[256];
                if (read(out[0], buf, sizeof buf) > 0)
                        t_first = t_end;
        }
        if (!p.reply) {
                fprintf(stderr, "sbxctl bench: %s run failed: %s: %s\n", language, p.error.name ?: "?",
                        p.error.message ?: "");
                sd_bus_error_free(&p.error);
                return 0;
        }
        uint64_t boot = 0;
        if (sbx_dict_find(p.reply, "timing_boot_ms", "t") > 0)
                (void) sd_bus_message_read(p.reply, "t", &boot);
        sd_bus_message_unref(p.reply);
        *ret = (Sample) {
                .first_output_ms = t_first ? (double) (t_first - t0) / 1000.0 : -1,
                .boot_ms = (double) boot,
                .total_ms = (double) (t_end - t0) / 1000.0,
                .ok = t_first != 0,
        };
        return 0;
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array. */
static double percentile(const double *v, size_t n, double pct) {
        if (n == 0)
                return 0;
        size_t rank = (size_t) (pct / 100.0 * (double) n + 0.999999);
        if (rank < 1)
                rank = 1;
        return v[MIN(rank, n) - 1];
}

static void stats(Sample *s, size_t n, size_t off, double *p50, double *p95, size_t *ok) {
        double v[1024];
        size_t k = 0;
        for (size_t i = 0; i < n && k < ELEMENTSOF(v); i++)
                if (s[i].ok)
                        v[k++] = *(double *) ((char *) &s[i] + off);
        qsort(v, k, sizeof(double), cmp_double);
        *p50 = percentile(v, k, 50);
        *p95 = percentile(v, k, 95);
        *ok = k;
}

/* Warm execs on one session per language: call → reply over D-Bus, output included. */
static int bench_session(sd_bus *bus, const char *const *langs, size_t n_langs, unsigned runs, bool json) {
        if (!json)
                printf("session execs, %u per language after one warm-up (call to reply over D-Bus)\n\n"
                       "%-11s %4s  %10s %10s %10s\n",
                       runs, "language", "ok", "p50", "p95", "max");
        else
                printf("{\"benchmark\":\"session\",\"runs\":%u,\"languages\":[", runs);

        for (size_t li = 0; li < n_langs; li++) {
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *open = NULL;
                _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
                const char *code = NULL, *path;
                for (size_t i = 0; i < ELEMENTSOF(bench_code); i++)
                        if (strcmp(bench_code[i].language, langs[li]) == 0)
                                code = bench_code[i].code;
                if (!code) {
                        fprintf(stderr, "sbxctl bench: unknown language %s\n", langs[li]);
                        return 2;
                }
                int r = sd_bus_call_method(bus, SBX_BUS_NAME, SBX_BUS_PATH, SBX_BUS_IFACE, "OpenSession", &error,
                                           &open, "a{sv}", 1, "language", "s", langs[li]);
                if (r < 0 || sd_bus_message_read(open, "o", &path) < 0) {
                        fprintf(stderr, "sbxctl bench: OpenSession: %s\n", error.message ?: strerror(-r));
                        return 1;
                }
                _cleanup_free_ char *session = strdup(path);
                double *v = calloc(runs, sizeof(double));
                size_t ok = 0;
                if (!v || !session)
                        return 1;
                for (unsigned i = 0; i <= runs; i++) {
                        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
                        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
                        uint64_t t0 = now_usec(CLOCK_MONOTONIC);
                        r = sd_bus_call_method(bus, SBX_BUS_NAME, session, "org.sbx.Session1", "Exec", &e, &reply,
                                               "sa{sv}", code, 0);
                        uint64_t t1 = now_usec(CLOCK_MONOTONIC);
                        if (r < 0) {
                                fprintf(stderr, "sbxctl bench: Exec: %s\n", e.message ?: strerror(-r));
                                continue;
                        }
                        if (i > 0) /* the first one starts the interpreter */
                                v[ok++] = (double) (t1 - t0) / 1000.0;
                }
                (void) sd_bus_call_method(bus, SBX_BUS_NAME, session, "org.sbx.Session1", "Close", NULL, NULL, "");
                qsort(v, ok, sizeof(double), cmp_double);
                double p50 = percentile(v, ok, 50), p95 = percentile(v, ok, 95), mx = ok ? v[ok - 1] : 0;
                if (!json)
                        printf("%-11s %2zu/%-2u %7.1f ms %7.1f ms %7.1f ms\n", langs[li], ok, runs, p50, p95, mx);
                else
                        printf("%s{\"language\":\"%s\",\"ok\":%zu,\"exec_ms_p50\":%.2f,\"exec_ms_p95\":%.2f}",
                               li ? "," : "", langs[li], ok, p50, p95);
                fflush(stdout);
                free(v);
        }
        if (json)
                puts("]}");
        return 0;
}

int sbxctl_bench(sd_bus *bus, int argc, char **argv) {
        static const struct option options[] = {
                { "runs", required_argument, NULL, 'n' },
                { "language", required_argument, NULL, 'l' },
                { "json", no_argument, NULL, 'J' },
                {},
        };
        const char *langs[3];
        size_t n_langs = 0;
        unsigned runs = 5;
        bool json = false;
        int c;
        _cleanup_free_ char *accel = NULL;

        if (argc < 2 || (strcmp(argv[1], "cold") != 0 && strcmp(argv[1], "session") != 0)) {
                fprintf(stderr, "sbxctl bench: cold or session (sbxctl bench cold|session [-n N] [-l LANG] [--json])\n");
                return 2;
        }
        bool session = strcmp(argv[1], "session") == 0;
        argc--;
        argv++;
        while ((c = getopt_long(argc, argv, "n:l:", options, NULL)) >= 0)
                switch (c) {
                case 'n':
                        runs = (unsigned) atoi(optarg);
                        if (runs < 1 || runs > 1000) {
                                fprintf(stderr, "sbxctl bench: -n takes 1-1000\n");
                                return 2;
                        }
                        break;
                case 'l':
                        if (n_langs < 3)
                                langs[n_langs++] = optarg;
                        break;
                case 'J':
                        json = true;
                        break;
                default:
                        return 2;
                }
        if (n_langs == 0)
                for (size_t i = 0; i < ELEMENTSOF(bench_code); i++)
                        langs[n_langs++] = bench_code[i].language;

        if (session)
                return bench_session(bus, langs, n_langs, runs, json);
        (void) sd_bus_get_property_string(bus, SBX_BUS_NAME, SBX_BUS_PATH, SBX_BUS_IFACE, "Accel", NULL, &accel);

        if (!json)
                printf("cold runs, %u per language, accelerator %s (times from the client's D-Bus call)\n\n"
                       "%-11s %4s  %10s %10s  %10s %10s  %10s\n",
                       runs, accel ?: "?", "language", "ok", "boot p50", "boot p95", "first p50", "first p95",
                       "total p50");
        else
                printf("{\"benchmark\":\"cold\",\"accel\":\"%s\",\"runs\":%u,\"languages\":[", accel ?: "?", runs);

        for (size_t li = 0; li < n_langs; li++) {
                const char *code = NULL;
                for (size_t i = 0; i < ELEMENTSOF(bench_code); i++)
                        if (strcmp(bench_code[i].language, langs[li]) == 0)
                                code = bench_code[i].code;
                if (!code) {
                        fprintf(stderr, "sbxctl bench: unknown language %s\n", langs[li]);
                        return 2;
                }
                Sample *s = calloc(runs, sizeof(Sample));
                if (!s)
                        return 1;
                for (unsigned i = 0; i < runs; i++) {
                        int r = one_run(bus, langs[li], code, &s[i]);
                        if (r < 0)
                                fprintf(stderr, "sbxctl bench: %s\n", strerror(-r));
                }
                double b50, b95, f50, f95, t50, t95;
                size_t ok;
                stats(s, runs, offsetof(Sample, boot_ms), &b50, &b95, &ok);
                stats(s, runs, offsetof(Sample, first_output_ms), &f50, &f95, &ok);
                stats(s, runs, offsetof(Sample, total_ms), &t50, &t95, &ok);
                if (!json)
                        printf("%-11s %2zu/%-2u %8.0f ms %7.0f ms  %7.0f ms %7.0f ms  %7.0f ms\n", langs[li], ok,
                               runs, b50, b95, f50, f95, t50);
                else
                        printf("%s{\"language\":\"%s\",\"ok\":%zu,\"boot_ms_p50\":%.1f,\"boot_ms_p95\":%.1f,"
                               "\"first_output_ms_p50\":%.1f,\"first_output_ms_p95\":%.1f,\"total_ms_p50\":%.1f,"
                               "\"total_ms_p95\":%.1f}",
                               li ? "," : "", langs[li], ok, b50, b95, f50, f95, t50, t95);
                fflush(stdout);
                free(s);
        }
        if (json)
                puts("]}");
        return 0;
}
