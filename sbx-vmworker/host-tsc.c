/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fdio.h"
#include "host-tsc.h"
#include "log.h"
#include "macro.h"

#define TSC_MEASURE_NSEC (10u * 1000u * 1000u)
#define TSC_KHZ_MIN 100000u    /* 100 MHz */
#define TSC_KHZ_MAX 10000000u  /* 10 GHz */

#if defined(__x86_64__) || defined(__i386__)
static inline uint64_t rdtsc(void) {
        uint32_t lo, hi;
        __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
        return (uint64_t) hi << 32 | lo;
}

static uint64_t raw_nsec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
        return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

/* Whether /proc/cpuinfo lists both constant_tsc and nonstop_tsc. */
static bool tsc_is_stable(void) {
        _cleanup_fclose_ FILE *f = fopen("/proc/cpuinfo", "re");
        char line[4096];

        if (!f)
                return false;
        while (fgets(line, sizeof line, f))
                if (strncmp(line, "flags", 5) == 0)
                        return strstr(line, " constant_tsc") && strstr(line, " nonstop_tsc");
        return false;
}

int host_tsc_khz(uint32_t *ret) {
        if (!tsc_is_stable())
                return -EOPNOTSUPP;

        /* Sandwich each TSC read between clock reads and keep the tighter pair, so a preemption between the
         * two reads cannot skew the result much. */
        uint64_t t0 = raw_nsec(), c0 = rdtsc(), t0b = raw_nsec();
        (void) nanosleep(&(struct timespec) { .tv_nsec = TSC_MEASURE_NSEC }, NULL);
        uint64_t t1 = raw_nsec(), c1 = rdtsc(), t1b = raw_nsec();

        uint64_t ns = (t1 + t1b) / 2 - (t0 + t0b) / 2;
        if (ns == 0 || c1 <= c0)
                return -EIO;
        uint64_t khz = (c1 - c0) * 1000000u / ns;
        if (khz < TSC_KHZ_MIN || khz > TSC_KHZ_MAX)
                return -ERANGE;
        *ret = (uint32_t) khz;
        return 0;
}
#else
int host_tsc_khz(uint32_t *ret) {
        (void) ret;
        return -EOPNOTSUPP;
}
#endif

int host_tsc_khz_cached(const char *state_dir, uint32_t *ret) {
        char boot_id[64], path[600], buf[128];
        unsigned long khz;
        int r;

        if (read_small_file("/proc/sys/kernel/random/boot_id", boot_id, sizeof boot_id) < 0)
                return host_tsc_khz(ret);
        boot_id[strcspn(boot_id, "\n")] = 0;
        snprintf(path, sizeof path, "%s/host-tsc", state_dir ?: "");
        if (read_small_file(path, buf, sizeof buf) >= 0) {
                char id[64];
                if (sscanf(buf, "%63s %lu", id, &khz) == 2 && strcmp(id, boot_id) == 0 && khz > 0 && khz < UINT32_MAX) {
                        *ret = (uint32_t) khz;
                        return 0;
                }
        }
        r = host_tsc_khz(ret);
        if (r < 0)
                return r;
        snprintf(buf, sizeof buf, "%s %" PRIu32 "\n", boot_id, *ret);
        char tmp[640];
        snprintf(tmp, sizeof tmp, "%s.tmp-%d", path, (int) getpid());
        _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd >= 0 && loop_write(fd, buf, strlen(buf)) >= 0)
                (void) rename(tmp, path);
        else if (fd >= 0)
                (void) unlink(tmp);
        return 0;
}
