/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* An invariant a fuzz target checks: a failure must stop the fuzzer loudly. */
#define FUZZ_CHECK(x)                       \
        do {                                \
                if (!(x))                   \
                        __builtin_trap();   \
        } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
