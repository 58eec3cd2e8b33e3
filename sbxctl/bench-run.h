/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The parts of `sbxctl bench` that talk to the broker: timed runs, the warm
 * pool's size and state, and the statistics over samples. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

typedef struct BenchSample {
        double first_output_ms; /* call → first stdout byte */
        double total_ms;        /* call → reply */
        double boot_ms;         /* worker-reported guest boot */
        char tier[8];           /* the result's snapshot_tier */
        char error[64];         /* why it failed: an org.sbx.Error name, or "wrong output" */
        bool ok;
} BenchSample;

typedef struct BenchRunOptions {
        bool warm_pool; /* the request's warm_pool key */
        bool snapshot;  /* the request's snapshot key */
} BenchRunOptions;

/* The print(1)-sized code for a language; NULL for an unknown one. */
const char *bench_code_for(const char *language);

/* One Run call, timed from the call; a failed run is a sample with ok = false. */
int bench_one_run(sd_bus *bus, const char *language, const BenchRunOptions *o, BenchSample *ret);

/* n runs, at most `concurrency` in flight, languages in turn. Fills samples[n]
 * (total_ms only; a run counts as ok only with exit 0 and the expected
 * output) and the wall time of the whole batch. */
int bench_batch(sd_bus *bus, const char *const *langs, size_t n_langs, unsigned n, unsigned concurrency,
                const BenchRunOptions *o, BenchSample *samples, double *ret_wall_ms);

/* Nearest-rank percentiles of the ok samples' field at offset off. */
void bench_stats(const BenchSample *s, size_t n, size_t off, double *p50, double *p95, size_t *ok);
double bench_percentile(const double *sorted, size_t n, double pct);
int bench_cmp_double(const void *a, const void *b);

/* Warm pool control (SetPoolSize needs root or admin_group). */
int bench_pool_get(sd_bus *bus, const char *language, uint32_t *ret_target, uint32_t *ret_ready,
                   uint32_t *ret_starting);
int bench_pool_set(sd_bus *bus, const char *language, uint32_t size);
/* Waits until the language's pool has a ready VM and nothing of it is starting (full, or as full
 * as the admission budget lets it be). */
int bench_pool_wait_full(sd_bus *bus, const char *language, unsigned timeout_s);

/* Host memory of the ready pool VMs' QEMU processes (smaps_rollup), medians in MB. */
int bench_pool_memory(sd_bus *bus, const char *language, double *ret_rss_mb, double *ret_pss_mb, size_t *ret_n);
