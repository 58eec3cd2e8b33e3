/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stddef.h>

/* Makes untrusted bytes (guest messages, console output) safe to put in a
 * log line or an SBX_T_MESSAGE: valid UTF-8, control characters other than
 * newline and tab replaced by '?', at most max bytes (cut at a character
 * boundary). Returns a new string, or NULL on OOM. */
char *text_sanitize(const char *data, size_t n, size_t max);

/* Formats into a new string of at most max bytes (cut at a character boundary). NULL on OOM. */
char *text_printf_bounded(size_t max, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
