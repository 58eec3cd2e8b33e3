/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Which accelerator works on this host. KVM is only "kvm" when a guest
 * actually boots under it: nested or paravirtualized KVM (PVM) may open
 * fine and still hang a standard guest. */

#include <stdint.h>

#include "config.h"

#define ACCEL_PROBE_TIMEOUT_USEC (6u * 1000000u)

/* Boots the guest with -accel kvm and sbx.probe=1 (the agent says HELLO and
 * powers off). Returns SBX_ACCEL_KVM if HELLO came within 6 s, else
 * SBX_ACCEL_TCG. Never fails. */
SbxAccel accel_probe(const SbxConfig *config);

/* kvm and tcg stay; auto runs the probe. */
SbxAccel accel_resolve(SbxAccel requested, const SbxConfig *config);
