/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench-run.h"
#include "bus-names.h"
#include "bus-util.h"
#include "fdio.h"
#include "macro.h"

static const struct {
        const char *language;
        const char *code;
} bench_code[] = {
        { "python", "print(1)" },
        { "javascript", "console.log(1)" },
        { "raw", "echo 1" },
};

const char *bench_code_for(const char *language) {
        for (size_t i = 0; i < ELEMENTSOF(bench_code); i++)
                if (strcmp(bench_code[i].language, language) == 0)
                        return bench_code[i].code;
        return NULL;
}

typedef struct Pending {
        bool done;
        sd_bus_message *reply;
        sd_bus_error error;
        uint64_t t0, t_end;
        unsigned index;
} Pending;

static int on_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Pending *p = userdata;
        (void) ret_error;
        p->done = true;
        p->t_end = now_usec(CLOCK_MONOTONIC);
        if (sd_bus_message_is_method_error(reply, NULL))
                sd_bus_error_copy(&p->error, sd_bus_message_get_error(reply));
        else
                p->reply = sd_bus_message_ref(reply);
        return 0;
}

static int new_run_call(sd_bus *bus, const char *language, const BenchRunOptions *o, int stdout_fd,
                        sd_bus_message **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        const char *code = bench_code_for(language);
        int r;

        if (!code)
                return -EINVAL;
        r = sd_bus_message_new_method_call(bus, &m, SBX_BUS_NAME, SBX_BUS_PATH, SBX_BUS_IFACE, "Run");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r >= 0)
                r = sd_bus_message_append(m, "{sv}{sv}{sv}{sv}", "code", "s", code, "language", "s", language,
                                          "warm_pool", "b", (int) o->warm_pool, "snapshot", "b", (int) o->snapshot);
        if (r >= 0 && stdout_fd >= 0)
                r = sd_bus_message_append(m, "{sv}", "stdout_fd", "h", stdout_fd);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(m);
        return 0;
}

static void sample_from_reply(const Pending *p, BenchSample *s) {
        uint64_t boot = 0;
        const char *tier = "?";

        if (sbx_dict_find(p->reply, "timing_boot_ms", "t") > 0)
                (void) sd_bus_message_read(p->reply, "t", &boot);
        if (sbx_dict_find(p->reply, "snapshot_tier", "s") > 0)
                (void) sd_bus_message_read(p->reply, "s", &tier);
        s->boot_ms = (double) boot;
        s->total_ms = (double) (p->t_end - p->t0) / 1000.0;
        snprintf(s->tier, sizeof s->tier, "%s", tier);
        s->ok = true;
}

int bench_one_run(sd_bus *bus, const char *language, const BenchRunOptions *o, BenchSample *ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        _cleanup_(sd_bus_slot_unrefp) sd_bus_slot *slot = NULL;
        _cleanup_close_pair_ int out[2] = { -EBADF, -EBADF };
        Pending p = { .error = SD_BUS_ERROR_NULL };
        uint64_t t_first = 0;
        int r;

        *ret = (BenchSample) {};
        if (pipe2(out, O_CLOEXEC | O_NONBLOCK) < 0)
                return -errno;
        r = new_run_call(bus, language, o, out[1], &m);
        if (r < 0)
                return r;
        p.t0 = now_usec(CLOCK_MONOTONIC);
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
        if (!t_first) {
                char buf[256];
                if (read(out[0], buf, sizeof buf) > 0)
                        t_first = p.t_end;
        }
        if (!p.reply) {
                fprintf(stderr, "sbxctl bench: %s run failed: %s: %s\n", language, p.error.name ?: "?",
                        p.error.message ?: "");
                sd_bus_error_free(&p.error);
                return 0;
        }
        sample_from_reply(&p, ret);
        sd_bus_message_unref(p.reply);
        ret->first_output_ms = t_first ? (double) (t_first - p.t0) / 1000.0 : -1;
        ret->ok = t_first != 0;
        return 0;
}

int bench_batch(sd_bus *bus, const char *const *langs, size_t n_langs, unsigned n, unsigned concurrency,
                const BenchRunOptions *o, BenchSample *samples, double *ret_wall_ms) {
        _cleanup_free_ Pending *pend = calloc(n, sizeof(Pending));
        _cleanup_free_ sd_bus_slot **slots = calloc(n, sizeof(sd_bus_slot *));
        unsigned started = 0, finished = 0, in_flight = 0;
        uint64_t t_start;
        int r = 0;

        if (!pend || !slots)
                return -ENOMEM;
        t_start = now_usec(CLOCK_MONOTONIC);
        while (finished < n) {
                while (started < n && in_flight < concurrency) {
                        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
                        Pending *p = &pend[started];
                        *p = (Pending) { .error = SD_BUS_ERROR_NULL, .index = started };
                        r = new_run_call(bus, langs[started % n_langs], o, -EBADF, &m);
                        if (r < 0)
                                goto out;
                        p->t0 = now_usec(CLOCK_MONOTONIC);
                        r = sd_bus_call_async(bus, &slots[started], m, on_reply, p, 600u * 1000000u);
                        if (r < 0)
                                goto out;
                        started++;
                        in_flight++;
                }
                r = sd_bus_process(bus, NULL);
                if (r < 0)
                        goto out;
                if (r == 0) {
                        r = sd_bus_wait(bus, 1000000u);
                        if (r < 0 && r != -EINTR)
                                goto out;
                }
                for (unsigned i = 0; i < started; i++) {
                        Pending *p = &pend[i];
                        if (!p->done || !slots[i])
                                continue;
                        slots[i] = sd_bus_slot_unref(slots[i]);
                        samples[i] = (BenchSample) {};
                        if (p->reply) {
                                const char *out = NULL;
                                int32_t code = -1;
                                sample_from_reply(p, &samples[i]);
                                if (sbx_dict_find(p->reply, "stdout", "s") > 0)
                                        (void) sd_bus_message_read(p->reply, "s", &out);
                                if (sbx_dict_find(p->reply, "exit_code", "i") > 0)
                                        (void) sd_bus_message_read(p->reply, "i", &code);
                                /* Every benchmark program prints "1". */
                                if (code != 0 || !out || strcmp(out, "1\n") != 0) {
                                        samples[i].ok = false;
                                        snprintf(samples[i].error, sizeof samples[i].error, "wrong output");
                                        fprintf(stderr, "sbxctl bench: run %u: exit %d, stdout '%.40s'\n", i, code,
                                                out ?: "");
                                }
                                p->reply = sd_bus_message_unref(p->reply);
                        } else {
                                snprintf(samples[i].error, sizeof samples[i].error, "%s", p->error.name ?: "?");
                                fprintf(stderr, "sbxctl bench: run failed: %s: %s\n", p->error.name ?: "?",
                                        p->error.message ?: "");
                                sd_bus_error_free(&p->error);
                        }
                        finished++;
                        in_flight--;
                }
        }
        r = 0;
out:
        *ret_wall_ms = (double) (now_usec(CLOCK_MONOTONIC) - t_start) / 1000.0;
        for (unsigned i = 0; i < n; i++)
                sd_bus_slot_unref(slots[i]);
        return r;
}

int bench_cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return (x > y) - (x < y);
}

double bench_percentile(const double *v, size_t n, double pct) {
        if (n == 0)
                return 0;
        size_t rank = (size_t) (pct / 100.0 * (double) n + 0.999999);
        if (rank < 1)
                rank = 1;
        return v[MIN(rank, n) - 1];
}

void bench_stats(const BenchSample *s, size_t n, size_t off, double *p50, double *p95, size_t *ok) {
        _cleanup_free_ double *v = calloc(MAX(n, (size_t) 1), sizeof(double));
        size_t k = 0;

        if (!v) {
                *p50 = *p95 = 0;
                *ok = 0;
                return;
        }
        for (size_t i = 0; i < n; i++)
                if (s[i].ok)
                        v[k++] = *(const double *) ((const char *) &s[i] + off);
        qsort(v, k, sizeof(double), bench_cmp_double);
        *p50 = bench_percentile(v, k, 50);
        *p95 = bench_percentile(v, k, 95);
        *ok = k;
}

int bench_pool_get(sd_bus *bus, const char *language, uint32_t *ret_target, uint32_t *ret_ready,
                   uint32_t *ret_starting) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        const char *lang;
        uint32_t target, ready, starting;
        int r;

        r = sd_bus_call_method(bus, SBX_BUS_NAME, SBX_BUS_PATH, SBX_BUS_IFACE, "GetPool", NULL, &reply, "");
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(reply, 'a', "(suuu)");
        while (r >= 0 && (r = sd_bus_message_read(reply, "(suuu)", &lang, &target, &ready, &starting)) > 0)
                if (strcmp(lang, language) == 0) {
                        *ret_target = target;
                        *ret_ready = ready;
                        *ret_starting = starting;
                        return 0;
                }
        return r < 0 ? r : -ENOENT;
}

int bench_pool_set(sd_bus *bus, const char *language, uint32_t size) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r = sd_bus_call_method(bus, SBX_BUS_NAME, SBX_BUS_PATH, SBX_BUS_IFACE, "SetPoolSize", &error, NULL, "su",
                                   language, size);
        if (r < 0)
                fprintf(stderr, "sbxctl bench: SetPoolSize: %s\n", error.message ?: strerror(-r));
        return r;
}

int bench_pool_wait_full(sd_bus *bus, const char *language, unsigned timeout_s) {
        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + (uint64_t) timeout_s * 1000000u;
        uint32_t target, ready, starting;
        int r;

        for (;;) {
                r = bench_pool_get(bus, language, &target, &ready, &starting);
                if (r < 0)
                        return r;
                /* Full, or as full as the budget allows: nothing of this language still starting. */
                if (target > 0 && ready >= 1 && starting == 0)
                        return 0;
                if (now_usec(CLOCK_MONOTONIC) > deadline)
                        return -ETIMEDOUT;
                (void) usleep(20000);
        }
}

/* The QEMU behind a pid the broker reports: with a PID namespace of its own, QEMU is the only child
 * of a small stand-in process (sbx-vmworker/qemu.c), whose pid is the one reported. */
static uint32_t qemu_behind(uint32_t pid) {
        char path[64];
        unsigned child = 0;
        _cleanup_fclose_ FILE *f = NULL;

        snprintf(path, sizeof path, "/proc/%u/task/%u/children", pid, pid);
        f = fopen(path, "re");
        if (f && fscanf(f, "%u", &child) == 1 && child > 0)
                return child;
        return pid;
}

/* "Rss:" and "Pss:" of /proc/PID/smaps_rollup, in kB (of QEMU itself, see qemu_behind()). */
static int read_rollup(uint32_t pid, uint64_t *ret_rss, uint64_t *ret_pss) {
        char path[64], line[256];
        _cleanup_fclose_ FILE *f = NULL;
        unsigned long long v;
        bool rss = false, pss = false;

        snprintf(path, sizeof path, "/proc/%u/smaps_rollup", qemu_behind(pid));
        f = fopen(path, "re");
        if (!f)
                return -errno;
        while (fgets(line, sizeof line, f)) {
                if (sscanf(line, "Rss: %llu kB", &v) == 1) {
                        *ret_rss = v;
                        rss = true;
                } else if (sscanf(line, "Pss: %llu kB", &v) == 1) {
                        *ret_pss = v;
                        pss = true;
                }
        }
        return rss && pss ? 0 : -EBADMSG;
}

int bench_pool_memory(sd_bus *bus, const char *language, double *ret_rss_mb, double *ret_pss_mb, size_t *ret_n) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        double rss[256], pss[256];
        const char *lang, *state;
        uint32_t wpid, qpid;
        size_t n = 0;
        int r;

        r = sd_bus_call_method(bus, SBX_BUS_NAME, SBX_BUS_PATH, SBX_BUS_IFACE, "GetStatus", NULL, &reply, "");
        if (r < 0)
                return r;
        if (sbx_dict_find(reply, "pool_vms", "a(ssuu)") <= 0)
                return -ENOENT;
        r = sd_bus_message_enter_container(reply, 'a', "(ssuu)");
        while (r >= 0 && n < ELEMENTSOF(rss) &&
               (r = sd_bus_message_read(reply, "(ssuu)", &lang, &state, &wpid, &qpid)) > 0) {
                uint64_t r_kb = 0, p_kb = 0;
                if (strcmp(lang, language) != 0 || strcmp(state, "ready") != 0 || qpid == 0 ||
                    read_rollup(qpid, &r_kb, &p_kb) < 0)
                        continue;
                rss[n] = (double) r_kb / 1024.0;
                pss[n] = (double) p_kb / 1024.0;
                n++;
        }
        if (r < 0)
                return r;
        qsort(rss, n, sizeof(double), bench_cmp_double);
        qsort(pss, n, sizeof(double), bench_cmp_double);
        *ret_rss_mb = bench_percentile(rss, n, 50);
        *ret_pss_mb = bench_percentile(pss, n, 50);
        *ret_n = n;
        return 0;
}
