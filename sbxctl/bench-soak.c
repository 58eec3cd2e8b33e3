/* SPDX-License-Identifier: Apache-2.0 */
/* `sbxctl bench soak`: many runs at a fixed concurrency, mixed languages,
 * counting failures and watching the broker's own footprint. The caller
 * (tests/bench/soak.sh) lists leftover processes, cgroups and files. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench-run.h"
#include "bench-soak.h"
#include "bus-names.h"
#include "bus-util.h"
#include "macro.h"

#define SOAK_CHUNK 100u

typedef struct BrokerUsage {
        uint64_t rss_kb, hwm_kb;
        uint32_t fds, active;
} BrokerUsage;

static int broker_usage(sd_bus *bus, BrokerUsage *ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        *ret = (BrokerUsage) {};
        r = sd_bus_call_method(bus, SBX_BUS_NAME, SBX_BUS_PATH, SBX_BUS_IFACE, "GetStatus", NULL, &reply, "");
        if (r < 0)
                return r;
        if (sbx_dict_find(reply, "broker_rss_kb", "t") > 0)
                (void) sd_bus_message_read(reply, "t", &ret->rss_kb);
        if (sbx_dict_find(reply, "broker_hwm_kb", "t") > 0)
                (void) sd_bus_message_read(reply, "t", &ret->hwm_kb);
        if (sbx_dict_find(reply, "broker_fds", "u") > 0)
                (void) sd_bus_message_read(reply, "u", &ret->fds);
        if (sbx_dict_find(reply, "active_runs", "u") > 0)
                (void) sd_bus_message_read(reply, "u", &ret->active);
        return 0;
}

int bench_soak(sd_bus *bus, const char *const *langs, size_t n_langs, unsigned runs, unsigned concurrency,
               bool json) {
        _cleanup_free_ BenchSample *s = calloc(runs, sizeof(BenchSample));
        BenchRunOptions o = { .warm_pool = true, .snapshot = true };
        BrokerUsage before, after;
        double wall_total = 0;
        unsigned failed = 0, tiers[3] = {};
        int r;

        if (!s)
                return 1;
        r = broker_usage(bus, &before);
        if (r < 0) {
                fprintf(stderr, "sbxctl bench soak: GetStatus: %s\n", strerror(-r));
                return 1;
        }
        if (!json)
                printf("soak: %u runs at concurrency %u, languages in turn, whatever tier serves them\n\n", runs,
                       concurrency);
        for (unsigned done = 0; done < runs;) {
                unsigned n = MIN(SOAK_CHUNK, runs - done);
                double wall;
                r = bench_batch(bus, langs, n_langs, n, concurrency, &o, s + done, &wall);
                if (r < 0) {
                        fprintf(stderr, "sbxctl bench soak: %s\n", strerror(-r));
                        return 1;
                }
                wall_total += wall;
                done += n;
                unsigned f = 0;
                for (unsigned i = 0; i < done; i++)
                        f += !s[i].ok;
                if (!json)
                        printf("  %5u runs, %u failed, %.2f runs/s\n", done, f, (double) done / (wall_total / 1000.0));
                fflush(stdout);
        }
        for (unsigned i = 0; i < runs; i++) {
                failed += !s[i].ok;
                if (s[i].ok)
                        tiers[strcmp(s[i].tier, "warm") == 0 ? 0 : strcmp(s[i].tier, "l1") == 0 ? 1 : 2]++;
        }
        (void) broker_usage(bus, &after);

        double t50, t95;
        size_t ok;
        bench_stats(s, runs, offsetof(BenchSample, total_ms), &t50, &t95, &ok);
        if (!json) {
                printf("\nfailures:        %u of %u\n", failed, runs);
                for (unsigned i = 0, shown = 0; i < runs && shown < 10; i++)
                        if (!s[i].ok) {
                                printf("  run %u: %s\n", i, s[i].error[0] ? s[i].error : "?");
                                shown++;
                        }
                printf("rate:            %.2f runs/s, latency p50 %.0f ms, p95 %.0f ms\n",
                       (double) ok / (wall_total / 1000.0), t50, t95);
                printf("served by:       %u warm pool, %u L1 snapshot, %u cold\n", tiers[0], tiers[1], tiers[2]);
                printf("broker RSS:      %llu kB at start, %llu kB at end (peak %llu kB)\n",
                       (unsigned long long) before.rss_kb, (unsigned long long) after.rss_kb,
                       (unsigned long long) after.hwm_kb);
                printf("broker fds:      %u at start, %u at end\n", before.fds, after.fds);
                printf("VMs running:     %u at start, %u at end (warm pool VMs included)\n", before.active,
                       after.active);
        } else
                printf("{\"benchmark\":\"soak\",\"runs\":%u,\"concurrency\":%u,\"failures\":%u,\"runs_per_second\":%.3f,"
                       "\"latency_ms_p50\":%.1f,\"latency_ms_p95\":%.1f,\"warm\":%u,\"l1\":%u,\"cold\":%u,"
                       "\"broker_rss_kb_start\":%llu,\"broker_rss_kb_end\":%llu,\"broker_hwm_kb\":%llu,"
                       "\"broker_fds_start\":%u,\"broker_fds_end\":%u,\"vms_start\":%u,\"vms_end\":%u}\n",
                       runs, concurrency, failed, (double) ok / (wall_total / 1000.0), t50, t95, tiers[0], tiers[1],
                       tiers[2], (unsigned long long) before.rss_kb, (unsigned long long) after.rss_kb,
                       (unsigned long long) after.hwm_kb, before.fds, after.fds, before.active, after.active);
        return failed > 0 ? 3 : 0;
}
