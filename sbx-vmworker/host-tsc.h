/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The host's TSC frequency, for TCG guests.
 *
 * Under TCG the guest's TSC is the host's TSC. The guest kernel calibrates
 * it against the emulated PIT, and on a busy host that calibration fails
 * ("tsc: Unable to calibrate against PIT"); with no HPET or ACPI PM timer on
 * microvm the guest then hangs early in boot. Passing the frequency as
 * tsc_early_khz= skips the calibration (measured here: 6 of 8 boots hung on
 * a loaded host without it, 0 of 8 with it). */

#include <stdint.h>

/* Measures the TSC against CLOCK_MONOTONIC_RAW over ~10 ms. -EOPNOTSUPP when
 * the host has no constant, non-stop TSC (or is not x86). */
int host_tsc_khz(uint32_t *ret);

/* The same, kept in state_dir/host-tsc ("BOOT_ID KHZ") for this host boot: measured once per boot
 * of the host, not per VM. */
int host_tsc_khz_cached(const char *state_dir, uint32_t *ret);
