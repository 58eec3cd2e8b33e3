/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* What a worker's W_RESULT says about one execution, and its rendering into
 * the result dictionary shared by Run, Finished and Session1.Exec. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

#include "output.h"
#include "proto.h"

typedef struct RunResult {
        int32_t exit_code;
        bool timed_out, state_reset;
        bool stdout_truncated, stderr_truncated;
        uint64_t exec_ms, boot_ms, setup_ms, cpu_ms, mem_peak_mb, cpu_throttled;
        char *accel;
        char *message;
} RunResult;

void run_result_done(RunResult *r);
int run_result_parse(RunResult *r, const uint8_t *payload, size_t n);
/* The timeout reason goes into stderr; the VM is gone by then (one-shot) or its interpreter restarted (session). */
void run_result_note_timeout(const RunResult *r, OutputCapture *err, char *buf, size_t size);
/* Appends the result keys (not the dictionary's open/close). */
int run_result_append(sd_bus_message *m, const RunResult *r, const OutputCapture *out, const OutputCapture *err,
                      const char *accel_default);

/* A worker's W_ERROR: its kind (SbxErrorKind) and message (NULL when absent, owned). */
int worker_error_parse(const uint8_t *payload, size_t n, uint32_t *ret_kind, char **ret_message);
/* The D-Bus error name for an SbxErrorKind. */
const char *worker_error_name(uint32_t kind);

/* A worker's W_OUTPUT: its stream and data (pointing into the payload; NULL when absent). */
int worker_output_parse(const uint8_t *payload, size_t n, SbxStream *ret_stream, const uint8_t **ret_data,
                        size_t *ret_len);
