/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench-plot.h"
#include "bench-run.h"
#include "macro.h"

#define W 800.0
#define H 480.0
#define LEFT 70.0
#define RIGHT 190.0
#define TOP 40.0
#define BOTTOM 50.0

static const char *const colours[] = { "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                       "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf" };

static double x_of(double ms, double lo, double hi) {
        double v = log10(MAX(ms, 0.01));
        return LEFT + (v - lo) / (hi - lo) * (W - LEFT - RIGHT);
}

static double y_of(double frac) {
        return H - BOTTOM - frac * (H - TOP - BOTTOM);
}

static void xml_text(FILE *f, const char *s) {
        for (; *s; s++)
                switch (*s) {
                case '<':
                        fputs("&lt;", f);
                        break;
                case '>':
                        fputs("&gt;", f);
                        break;
                case '&':
                        fputs("&amp;", f);
                        break;
                default:
                        fputc(*s, f);
                }
}

int bench_plot_svg(const char *path, BenchSeries *series, size_t n_series, const char *title) {
        _cleanup_fclose_ FILE *f = NULL;
        double lo = INFINITY, hi = -INFINITY;

        for (size_t i = 0; i < n_series; i++) {
                qsort(series[i].values, series[i].n, sizeof(double), bench_cmp_double);
                if (series[i].n > 0) {
                        lo = MIN(lo, floor(log10(MAX(series[i].values[0], 0.01))));
                        hi = MAX(hi, ceil(log10(MAX(series[i].values[series[i].n - 1], 0.01))));
                }
        }
        if (!isfinite(lo) || !isfinite(hi))
                return -ENODATA;
        if (hi <= lo)
                hi = lo + 1;

        f = fopen(path, "we");
        if (!f)
                return -errno;
        fprintf(f,
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
                "font-family=\"sans-serif\" font-size=\"12\">\n"
                "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n<text x=\"%.0f\" y=\"22\" "
                "font-size=\"15\">",
                W, H, LEFT);
        xml_text(f, title);
        fputs("</text>\n", f);

        /* Grid: decades on x, quarters on y. */
        for (double d = lo; d <= hi + 1e-9; d += 1) {
                double x = x_of(pow(10, d), lo, hi);
                fprintf(f,
                        "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n"
                        "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g ms</text>\n",
                        x, TOP, x, H - BOTTOM, x, H - BOTTOM + 18, pow(10, d));
        }
        for (int q = 0; q <= 4; q++) {
                double y = y_of(q / 4.0);
                fprintf(f,
                        "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n"
                        "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%d%%</text>\n",
                        LEFT, y, W - RIGHT, y, LEFT - 6, y + 4, q * 25);
        }
        fprintf(f,
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">time to first output (from the D-Bus call), "
                "log scale</text>\n"
                "<text x=\"16\" y=\"%.1f\" transform=\"rotate(-90 16 %.1f)\" text-anchor=\"middle\">runs at or "
                "below</text>\n",
                (LEFT + W - RIGHT) / 2, H - 12, (TOP + H - BOTTOM) / 2, (TOP + H - BOTTOM) / 2);

        for (size_t i = 0; i < n_series; i++) {
                const char *c = colours[i % ELEMENTSOF(colours)];
                BenchSeries *s = &series[i];
                if (s->n == 0)
                        continue;
                /* A step line through every sample. */
                fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", c);
                fprintf(f, "%.1f,%.1f ", x_of(s->values[0], lo, hi), y_of(0));
                for (size_t k = 0; k < s->n; k++) {
                        double x = x_of(s->values[k], lo, hi);
                        fprintf(f, "%.1f,%.1f %.1f,%.1f ", x, y_of((double) k / (double) s->n), x,
                                y_of((double) (k + 1) / (double) s->n));
                }
                fputs("\"/>\n", f);
                double ly = TOP + 10 + 20.0 * (double) i;
                fprintf(f,
                        "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"3\"/>\n"
                        "<text x=\"%.1f\" y=\"%.1f\">",
                        W - RIGHT + 15, ly, W - RIGHT + 40, ly, c, W - RIGHT + 46, ly + 4);
                xml_text(f, s->name);
                fprintf(f, " (n=%zu, p50 %.1f ms)</text>\n", s->n, bench_percentile(s->values, s->n, 50));
        }
        fputs("</svg>\n", f);
        return fflush(f) == 0 ? 0 : -errno;
}
