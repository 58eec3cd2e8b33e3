/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The worker's side of the guest protocol (proto.h): turning the agent's
 * frames into checked values, and building SBX_H_EXEC. Every byte from the
 * guest is hostile: each parser checks every TLV it knows (length, range,
 * no duplicates), requires the mandatory ones, and returns -EBADMSG with a
 * reason otherwise. The caller treats that as a protocol violation. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"
#include "proto.h"
#include "run-request.h"

typedef struct GuestHello {
        uint32_t version;
        uint64_t uptime_ms;
} GuestHello;

typedef struct GuestOutput {
        SbxStream stream;
        const uint8_t *data; /* points into the payload */
        size_t len;
} GuestOutput;

typedef struct GuestExit {
        int32_t exit_code;
        uint64_t exec_ms;
        bool timed_out;
} GuestExit;

int guest_parse_hello(const uint8_t *p, size_t n, GuestHello *ret, const char **ret_reason);
int guest_parse_output(const uint8_t *p, size_t n, GuestOutput *ret, const char **ret_reason);
int guest_parse_exit(const uint8_t *p, size_t n, GuestExit *ret, const char **ret_reason);
/* *ret_message is sanitized (valid UTF-8, no control characters) and may be NULL when absent. */
int guest_parse_error(const uint8_t *p, size_t n, char **ret_message, const char **ret_reason);

/* Builds SBX_H_EXEC for req: language, code, timeout, environment, the host's
 * CLOCK_REALTIME and 32 fresh bytes of entropy. */
int guest_build_exec(const RunRequest *req, SbxMsg *ret);

const char *guest_msg_type_to_string(uint8_t type);
