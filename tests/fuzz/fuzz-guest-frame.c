/* SPDX-License-Identifier: Apache-2.0 */
/* The host (sbx-vmworker) reading the guest agent's virtio-serial port:
 * every byte is controlled by code running in the VM. */

#include "fuzz-frame.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        fuzz_frames(data, size, SBX_GUEST_FRAME_MAX);
        return 0;
}
