/* SPDX-License-Identifier: Apache-2.0 */
/* `sbxctl bench`: latency per language and tier (cold, l1, warm) from this
 * client's D-Bus call, warm Exec latency in sessions, and throughput. Figures
 * are printed, never asserted: the machines are shared and noisy. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench-plot.h"
#include "bench-run.h"
#include "bench-soak.h"
#include "bench.h"
#include "bus-names.h"
#include "bus-util.h"
#include "cache.h"
#include "fdio.h"
#include "macro.h"

#define POOL_FILL_TIMEOUT_S 300u

typedef enum Tier { TIER_COLD, TIER_L1, TIER_WARM, _TIER_MAX } Tier;
static const char *const tier_names[_TIER_MAX] = { "cold", "l1", "warm" };

typedef struct BenchOptions {
        const char *langs[3];
        size_t n_langs;
        bool tiers[_TIER_MAX];
        unsigned runs, concurrency, pool_size;
        bool json;
        const char *plot;
} BenchOptions;

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
                const char *code = bench_code_for(langs[li]), *path;
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
                qsort(v, ok, sizeof(double), bench_cmp_double);
                double p50 = bench_percentile(v, ok, 50), p95 = bench_percentile(v, ok, 95), mx = ok ? v[ok - 1] : 0;
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


/* The warm tier needs a pool: one VM per language unless one is configured.
 * Each sample waits until the pool is full and idle again, so it measures a
 * hit on a quiet host, not the refill. */
static int bench_tier_warm(sd_bus *bus, const char *lang, unsigned runs, BenchSample *s, bool *ret_resized,
                           uint32_t *ret_old) {
        uint32_t target, ready, starting;
        BenchRunOptions o = { .warm_pool = true, .snapshot = true };
        int r;

        r = bench_pool_get(bus, lang, &target, &ready, &starting);
        if (r < 0)
                return r;
        *ret_old = target;
        *ret_resized = false;
        if (target == 0) {
                r = bench_pool_set(bus, lang, 1);
                if (r < 0)
                        return r;
                *ret_resized = true;
        }
        for (unsigned i = 0; i < runs; i++) {
                r = bench_pool_wait_full(bus, lang, POOL_FILL_TIMEOUT_S);
                if (r < 0) {
                        fprintf(stderr, "sbxctl bench: the %s pool did not fill: %s\n", lang, strerror(-r));
                        return r;
                }
                r = bench_one_run(bus, lang, &o, &s[i]);
                if (r < 0)
                        return r;
        }
        return bench_pool_wait_full(bus, lang, POOL_FILL_TIMEOUT_S);
}

static int bench_tiers(sd_bus *bus, const BenchOptions *opt) {
        _cleanup_free_ char *accel = NULL;
        BenchSeries series[3 * _TIER_MAX] = {};
        size_t n_series = 0;
        bool first_json = true;
        int r = 0;

        (void) sd_bus_get_property_string(bus, SBX_BUS_NAME, SBX_BUS_PATH, SBX_BUS_IFACE, "Accel", NULL, &accel);
        if (!opt->json)
                printf("time to first output of print(1)-sized code, %u runs per language and tier, accelerator %s\n"
                       "(from the client's D-Bus call; warm: each run waits until the pool is full again)\n\n"
                       "%-11s %-5s %5s  %10s %10s  %10s  %s\n",
                       opt->runs, accel ?: "?", "language", "tier", "ok", "first p50", "first p95", "total p50",
                       "note");
        else
                printf("{\"benchmark\":\"tiers\",\"accel\":\"%s\",\"runs\":%u,\"results\":[", accel ?: "?", opt->runs);

        for (size_t li = 0; li < opt->n_langs; li++) {
                const char *lang = opt->langs[li];
                double rss = 0, pss = 0;
                size_t n_mem = 0;

                for (Tier t = 0; t < _TIER_MAX; t++) {
                        _cleanup_free_ BenchSample *s = NULL;
                        bool resized = false;
                        uint32_t old = 0;
                        char note[96] = "";

                        if (!opt->tiers[t])
                                continue;
                        s = calloc(opt->runs, sizeof(BenchSample));
                        if (!s)
                                return -ENOMEM;
                        if (t == TIER_WARM) {
                                r = bench_tier_warm(bus, lang, opt->runs, s, &resized, &old);
                                if (r >= 0)
                                        (void) bench_pool_memory(bus, lang, &rss, &pss, &n_mem);
                                if (resized)
                                        (void) bench_pool_set(bus, lang, old);
                                if (r < 0)
                                        snprintf(note, sizeof note, "skipped: %s", strerror(-r));
                        } else {
                                BenchRunOptions o = { .warm_pool = false, .snapshot = t == TIER_L1 };
                                BenchSample warmup;
                                /* The first L1 run may have to build the snapshot. */
                                if (t == TIER_L1)
                                        (void) bench_one_run(bus, lang, &o, &warmup);
                                for (unsigned i = 0; i < opt->runs; i++) {
                                        r = bench_one_run(bus, lang, &o, &s[i]);
                                        if (r < 0)
                                                return r;
                                }
                        }
                        unsigned mismatched = 0;
                        for (unsigned i = 0; i < opt->runs; i++)
                                if (s[i].ok && strcmp(s[i].tier, tier_names[t]) != 0) {
                                        mismatched++;
                                        s[i].ok = false;
                                }
                        if (mismatched && !*note)
                                snprintf(note, sizeof note, "%u runs served by another tier (%s)", mismatched,
                                         t == TIER_L1 ? "snapshots off?" : "pool empty?");

                        double f50, f95, t50, t95;
                        size_t ok;
                        bench_stats(s, opt->runs, offsetof(BenchSample, first_output_ms), &f50, &f95, &ok);
                        bench_stats(s, opt->runs, offsetof(BenchSample, total_ms), &t50, &t95, &ok);
                        if (!opt->json)
                                printf("%-11s %-5s %2zu/%-2u  %7.1f ms %7.1f ms  %7.1f ms  %s\n", lang, tier_names[t],
                                       ok, opt->runs, f50, f95, t50, note);
                        else {
                                printf("%s{\"language\":\"%s\",\"tier\":\"%s\",\"ok\":%zu,\"first_output_ms_p50\":%.2f,"
                                       "\"first_output_ms_p95\":%.2f,\"total_ms_p50\":%.2f,\"total_ms_p95\":%.2f,"
                                       "\"other_tier\":%u}",
                                       first_json ? "" : ",", lang, tier_names[t], ok, f50, f95, t50, t95,
                                       mismatched);
                                first_json = false;
                        }
                        fflush(stdout);

                        if (opt->plot && ok > 0 && n_series < ELEMENTSOF(series)) {
                                BenchSeries *bs = &series[n_series++];
                                bs->values = calloc(ok, sizeof(double));
                                if (asprintf((char **) &bs->name, "%s %s", lang, tier_names[t]) < 0)
                                        bs->name = NULL;
                                for (unsigned i = 0; bs->values && i < opt->runs; i++)
                                        if (s[i].ok)
                                                bs->values[bs->n++] = s[i].first_output_ms;
                        }
                }
                uint64_t snap_apparent, snap_disk, snap_state;
                if (sbxctl_cache_snapshot_size(lang, &snap_apparent, &snap_disk, &snap_state) >= 0) {
                        if (!opt->json)
                                printf("%-11s L1 snapshot: RAM file %.1f MB apparent, %.1f MB on disk; device state "
                                       "%.1f KB\n",
                                       lang, snap_apparent / 1e6, snap_disk / 1e6, snap_state / 1e3);
                        else
                                printf(",{\"language\":\"%s\",\"snapshot_apparent_bytes\":%llu,"
                                       "\"snapshot_disk_bytes\":%llu,\"snapshot_state_bytes\":%llu}",
                                       lang, (unsigned long long) snap_apparent, (unsigned long long) snap_disk,
                                       (unsigned long long) snap_state);
                }
                if (n_mem > 0) {
                        if (!opt->json)
                                printf("%-11s host memory per idle warm VM (QEMU, median of %zu): RSS %.1f MB, "
                                       "PSS %.1f MB\n",
                                       lang, n_mem, rss, pss);
                        else {
                                printf(",{\"language\":\"%s\",\"idle_warm_vm_rss_mb\":%.1f,"
                                       "\"idle_warm_vm_pss_mb\":%.1f,\"vms\":%zu}",
                                       lang, rss, pss, n_mem);
                        }
                }
        }
        if (opt->json)
                puts("]}");

        if (opt->plot) {
                char title[128];
                snprintf(title, sizeof title, "sbx: time to first output per tier (%s)", accel ?: "?");
                r = bench_plot_svg(opt->plot, series, n_series, title);
                if (r < 0)
                        fprintf(stderr, "sbxctl bench: cannot write %s: %s\n", opt->plot, strerror(-r));
                else if (!opt->json)
                        printf("\nplot: %s\n", opt->plot);
        }
        for (size_t i = 0; i < n_series; i++) {
                free((char *) series[i].name);
                free(series[i].values);
        }
        return r < 0 ? 1 : 0;
}

static void print_batch(const char *name, const BenchSample *s, unsigned n, double wall_ms, unsigned concurrency,
                        bool json, bool first, double *ret_rate) {
        double t50, t95;
        size_t ok;
        unsigned warm = 0, l1 = 0;

        bench_stats(s, n, offsetof(BenchSample, total_ms), &t50, &t95, &ok);
        for (unsigned i = 0; i < n; i++) {
                warm += s[i].ok && strcmp(s[i].tier, "warm") == 0;
                l1 += s[i].ok && strcmp(s[i].tier, "l1") == 0;
        }
        *ret_rate = wall_ms > 0 ? (double) ok / (wall_ms / 1000.0) : 0;
        if (!json)
                printf("%-22s %3zu/%-3u  %6.2f VMs/s  %8.0f ms %8.0f ms  %4u warm, %u l1\n", name, ok, n, *ret_rate,
                       t50, t95, warm, l1);
        else
                printf("%s{\"mode\":\"%s\",\"ok\":%zu,\"runs\":%u,\"concurrency\":%u,\"vms_per_second\":%.3f,"
                       "\"latency_ms_p50\":%.1f,\"latency_ms_p95\":%.1f,\"warm_hits\":%u,\"l1_hits\":%u}",
                       first ? "" : ",", name, ok, n, concurrency, *ret_rate, t50, t95, warm, l1);
        fflush(stdout);
}

/* N runs at concurrency C, languages in turn: first cold (no pool, no
 * snapshot), then with a warm pool of K per language, refilled as it goes. */
static int bench_throughput(sd_bus *bus, const BenchOptions *opt) {
        _cleanup_free_ BenchSample *s = calloc(opt->runs, sizeof(BenchSample));
        uint32_t old[3] = {}, ready, starting;
        double wall, cold_rate = 0, warm_rate = 0;
        int r;

        if (!s)
                return 1;
        for (size_t li = 0; li < opt->n_langs; li++)
                if (bench_pool_get(bus, opt->langs[li], &old[li], &ready, &starting) < 0)
                        return 1;
        if (!opt->json)
                printf("throughput: %u runs at concurrency %u, languages in turn (call to reply over D-Bus)\n\n"
                       "%-22s %7s  %12s  %11s %11s  %s\n",
                       opt->runs, opt->concurrency, "mode", "ok", "rate", "p50", "p95", "served by");
        else
                printf("{\"benchmark\":\"throughput\",\"results\":[");

        /* Cold: an empty pool, so refills do not compete for the CPU. */
        for (size_t li = 0; li < opt->n_langs; li++)
                if (bench_pool_set(bus, opt->langs[li], 0) < 0)
                        return 1;
        BenchRunOptions cold = { .warm_pool = false, .snapshot = false };
        r = bench_batch(bus, opt->langs, opt->n_langs, opt->runs, opt->concurrency, &cold, s, &wall);
        if (r < 0)
                goto restore;
        print_batch("cold", s, opt->runs, wall, opt->concurrency, opt->json, true, &cold_rate);

        for (size_t li = 0; li < opt->n_langs; li++)
                if (bench_pool_set(bus, opt->langs[li], opt->pool_size) < 0)
                        goto restore;
        for (size_t li = 0; li < opt->n_langs; li++)
                if (opt->pool_size > 0)
                        (void) bench_pool_wait_full(bus, opt->langs[li], POOL_FILL_TIMEOUT_S);
        BenchRunOptions warm = { .warm_pool = true, .snapshot = true };
        char name[32];
        snprintf(name, sizeof name, "warm pool %u/language", opt->pool_size);
        r = bench_batch(bus, opt->langs, opt->n_langs, opt->runs, opt->concurrency, &warm, s, &wall);
        if (r < 0)
                goto restore;
        print_batch(name, s, opt->runs, wall, opt->concurrency, opt->json, false, &warm_rate);
        if (!opt->json)
                printf("\nratio warm pool / cold: %.2fx\n", cold_rate > 0 ? warm_rate / cold_rate : 0);
        else
                printf("],\"ratio\":%.3f}\n", cold_rate > 0 ? warm_rate / cold_rate : 0);
restore:
        for (size_t li = 0; li < opt->n_langs; li++)
                (void) bench_pool_set(bus, opt->langs[li], old[li]);
        if (r < 0)
                fprintf(stderr, "sbxctl bench: %s\n", strerror(-r));
        return r < 0 ? 1 : 0;
}

int sbxctl_bench(sd_bus *bus, int argc, char **argv) {
        static const struct option options[] = {
                { "runs", required_argument, NULL, 'n' },
                { "language", required_argument, NULL, 'l' },
                { "tier", required_argument, NULL, 't' },
                { "concurrency", required_argument, NULL, 'c' },
                { "pool", required_argument, NULL, 'p' },
                { "plot", required_argument, NULL, 'P' },
                { "json", no_argument, NULL, 'J' },
                {},
        };
        BenchOptions opt = { .runs = 5, .concurrency = 4, .pool_size = 2 };
        const char *what = "tiers";
        bool any_tier = false;
        int c;

        if (argc >= 2 && argv[1][0] != '-') {
                what = argv[1];
                argc--;
                argv++;
        }
        if (strcmp(what, "tiers") != 0 && strcmp(what, "cold") != 0 && strcmp(what, "session") != 0 &&
            strcmp(what, "throughput") != 0 && strcmp(what, "soak") != 0) {
                fprintf(stderr, "sbxctl bench: unknown benchmark '%s' (tiers, cold, session, throughput, soak)\n",
                        what);
                return 2;
        }
        if (strcmp(what, "throughput") == 0)
                opt.runs = 24;
        if (strcmp(what, "soak") == 0)
                opt.runs = 1000;
        while ((c = getopt_long(argc, argv, "n:l:t:c:", options, NULL)) >= 0)
                switch (c) {
                case 'n':
                        opt.runs = (unsigned) atoi(optarg);
                        if (opt.runs < 1 || opt.runs > 10000) {
                                fprintf(stderr, "sbxctl bench: -n takes 1-10000\n");
                                return 2;
                        }
                        break;
                case 'c':
                        opt.concurrency = (unsigned) atoi(optarg);
                        if (opt.concurrency < 1 || opt.concurrency > 256) {
                                fprintf(stderr, "sbxctl bench: -c takes 1-256\n");
                                return 2;
                        }
                        break;
                case 'p':
                        opt.pool_size = (unsigned) atoi(optarg);
                        if (opt.pool_size > 64) {
                                fprintf(stderr, "sbxctl bench: --pool takes 0-64\n");
                                return 2;
                        }
                        break;
                case 'l':
                        if (!bench_code_for(optarg)) {
                                fprintf(stderr, "sbxctl bench: unknown language %s\n", optarg);
                                return 2;
                        }
                        if (opt.n_langs < ELEMENTSOF(opt.langs))
                                opt.langs[opt.n_langs++] = optarg;
                        break;
                case 't': {
                        bool found = false;
                        for (Tier t = 0; t < _TIER_MAX; t++)
                                if (strcmp(optarg, tier_names[t]) == 0) {
                                        opt.tiers[t] = found = any_tier = true;
                                }
                        if (!found) {
                                fprintf(stderr, "sbxctl bench: unknown tier %s (cold, l1, warm)\n", optarg);
                                return 2;
                        }
                        break;
                }
                case 'P':
                        opt.plot = optarg;
                        break;
                case 'J':
                        opt.json = true;
                        break;
                default:
                        return 2;
                }
        if (opt.n_langs == 0) {
                opt.langs[0] = "python";
                opt.langs[1] = "javascript";
                opt.langs[2] = "raw";
                opt.n_langs = 3;
        }
        if (strcmp(what, "cold") == 0) {
                memset(opt.tiers, 0, sizeof opt.tiers);
                opt.tiers[TIER_COLD] = true;
        } else if (!any_tier)
                for (Tier t = 0; t < _TIER_MAX; t++)
                        opt.tiers[t] = true;

        if (strcmp(what, "session") == 0)
                return bench_session(bus, opt.langs, opt.n_langs, opt.runs, opt.json);
        if (strcmp(what, "throughput") == 0)
                return bench_throughput(bus, &opt);
        if (strcmp(what, "soak") == 0)
                return bench_soak(bus, opt.langs, opt.n_langs, opt.runs, opt.concurrency, opt.json);
        return bench_tiers(bus, &opt);
}
