/* SPDX-License-Identifier: Apache-2.0 */
/* The worker channel: sbx-broker reading a worker (SBX_WORKER_FRAME_MAX),
 * and sbx-vmworker reading the broker (SBX_HOST_FRAME_MAX). A compromised
 * worker is the main threat to the broker, so the same bytes go through
 * both readers. */

#include "fuzz-frame.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        fuzz_frames(data, size, SBX_WORKER_FRAME_MAX);
        fuzz_frames(data, size, SBX_HOST_FRAME_MAX);
        return 0;
}
