/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <systemd/sd-bus.h>

/* Exit status 3 when any run failed. */
int bench_soak(sd_bus *bus, const char *const *langs, size_t n_langs, unsigned runs, unsigned concurrency,
               bool json);
