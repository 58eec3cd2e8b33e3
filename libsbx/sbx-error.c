/* SPDX-License-Identifier: Apache-2.0 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sbx-error.h"

static int normalize(int error) {
        /* 0 is no error: a caller that lost its errno still fails. */
        if (error == 0)
                return -EIO;
        return error < 0 ? error : -error;
}

int sbx_error_setv(SbxError *e, int error, const char *fmt, va_list ap) {
        char *message = NULL;

        error = normalize(error);
        if (!e)
                return error;
        if (vasprintf(&message, fmt, ap) < 0)
                message = NULL; /* out of memory: the errno still says what failed */
        free(e->message);
        e->error = error;
        e->message = message;
        return error;
}

int sbx_error_set(SbxError *e, int error, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        error = sbx_error_setv(e, error, fmt, ap);
        va_end(ap);
        return error;
}

int sbx_error_set_errno(SbxError *e, int error) {
        error = normalize(error);
        if (!e)
                return error;
        free(e->message);
        *e = (SbxError) { .error = error };
        return error;
}

const char *sbx_error_message(const SbxError *e) {
        if (!e || e->error >= 0)
                return "";
        return e->message ?: strerror(-e->error);
}

void sbx_error_done(SbxError *e) {
        if (!e)
                return;
        free(e->message);
        *e = (SbxError) {};
}
