/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* One output stream of a run: kept in memory for the result, or streamed
 * into the caller's fd, with a cap after which it is cut and flagged. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

#include "fdsink.h"

/* How long a run's or an exec's reply waits for its caller to read the output still queued for its
 * fds; then the rest is dropped (and the stream flagged truncated). */
#define OUTPUT_DRAIN_TIMEOUT_USEC (10u * 1000000u)

typedef struct OutputCapture {
        char *data;
        size_t len;
        uint64_t total; /* bytes seen, including what was cut */
        size_t cap;
        bool truncated;
        FdSink *sink; /* set when the caller passed an fd for this stream */
} OutputCapture;

void output_capture_init(OutputCapture *c, size_t cap);
/* Frees the kept data and the sink. */
void output_capture_done(OutputCapture *c);
/* Takes what fits under the cap; *ret_taken says how much (for signals). */
int output_capture_append(OutputCapture *c, const void *data, size_t n, size_t *ret_taken);
/* A note from sbx itself (the timeout reason): not counted against the cap. */
void output_capture_note(OutputCapture *c, const char *text);
bool output_capture_pending(const OutputCapture *c);
/* The drain deadline passed: drops what the caller's fd did not take, and says so. */
void output_capture_drop_pending(OutputCapture *c);
/* Appends "key": s with the kept output, made valid UTF-8. */
int output_capture_append_to(sd_bus_message *m, const char *key, const OutputCapture *c);
