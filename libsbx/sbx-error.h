/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The one error type for errors whose text must reach a peer or a user: a negative errno and an
 * optional message. Everything else returns a plain negative errno; parsers may add a static reason
 * (const char **ret_reason). Dependency-free: the guest agent links it.
 *
 *   _cleanup_(sbx_error_done) SbxError error = {};
 *   r = netd_register(..., &error);
 *   if (r < 0)
 *           return log_error_errno(r, "%s", sbx_error_message(&error));
 *
 * A function that takes an SbxError sets it on every failure it returns, with the same errno
 * (sbx_error_set() returns it, so `return sbx_error_set(e, -EINVAL, "bad %s", x);`); the message
 * may be missing after an allocation failure. Callers pass NULL when they want no message. */

#include <stdarg.h>
#include <stdbool.h>

#include "macro.h"

typedef struct SbxError {
        int error;     /* negative errno; 0: no error */
        char *message; /* allocated; NULL: none (sbx_error_message() then says strerror()) */
} SbxError;

/* Replaces what e held with error (a negative errno; a positive one is negated) and the formatted
 * message. Returns the negative errno. e may be NULL. */
int sbx_error_set(SbxError *e, int error, const char *fmt, ...) _printf_(3, 4);
int sbx_error_setv(SbxError *e, int error, const char *fmt, va_list ap) _printf_(3, 0);
/* The same without a message: sbx_error_message() says strerror(). */
int sbx_error_set_errno(SbxError *e, int error);

/* The message, or strerror() of the errno, or "" when no error is set. Never NULL. */
const char *sbx_error_message(const SbxError *e);

static inline bool sbx_error_is_set(const SbxError *e) {
        return e && e->error < 0;
}

/* Frees the message and clears e. */
void sbx_error_done(SbxError *e);
