/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The broker's SBX_B_RUN, parsed and checked. */

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "proto.h"

#define RUN_VCPUS_MAX 64u
#define RUN_MEMORY_MAX_MB (64u * 1024u)

typedef struct RunRequest {
        uint64_t run_id;
        SbxLanguage language;
        char *code;
        size_t code_len;
        uint32_t timeout_ms;
        char **env; /* "KEY=VALUE" */
        size_t n_env;
        uint32_t memory_mb;
        uint32_t vcpus;
        SbxAccel accel; /* SBX_ACCEL_AUTO when neither the broker nor the config chose */
} RunRequest;

void run_request_done(RunRequest *r);

/* Parses an SBX_B_RUN payload. Missing MEMORY_MB, VCPUS and ACCEL come from
 * config. Returns 0, -ENOMEM, or -EINVAL/-EBADMSG/-E2BIG with a
 * human-readable reason in *ret_reason (static storage). */
int run_request_parse(const uint8_t *payload, size_t len, const SbxConfig *config, RunRequest *ret,
                      const char **ret_reason);
