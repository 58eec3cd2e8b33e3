/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stddef.h>

typedef struct BenchSeries {
        const char *name; /* e.g. "python warm" */
        double *values;   /* latencies in ms, sorted in place by the plot */
        size_t n;
} BenchSeries;

/* Writes an SVG of the latency distribution of each series: an empirical CDF
 * on a logarithmic time axis, one line per series. */
int bench_plot_svg(const char *path, BenchSeries *series, size_t n_series, const char *title);
