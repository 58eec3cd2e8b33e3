/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "output.h"
#include "utf8.h"

void output_capture_init(OutputCapture *c, size_t cap) {
        *c = (OutputCapture) { .cap = cap };
}

void output_capture_done(OutputCapture *c) {
        free(c->data);
        fdsink_free(c->sink);
        *c = (OutputCapture) { .cap = c->cap };
}

static int keep(OutputCapture *c, const void *data, size_t n) {
        if (c->sink)
                return fdsink_write(c->sink, data, n);
        char *d = realloc(c->data, c->len + n);
        if (!d)
                return -ENOMEM;
        c->data = d;
        memcpy(c->data + c->len, data, n);
        c->len += n;
        return 0;
}

int output_capture_append(OutputCapture *c, const void *data, size_t n, size_t *ret_taken) {
        size_t room = c->total >= c->cap ? 0 : c->cap - (size_t) c->total;
        size_t take = MIN(room, n);

        c->total += n;
        if (take < n)
                c->truncated = true;
        *ret_taken = take;
        return take > 0 ? keep(c, data, take) : 0;
}

void output_capture_note(OutputCapture *c, const char *text) {
        (void) keep(c, text, strlen(text));
}

bool output_capture_pending(const OutputCapture *c) {
        return fdsink_pending(c->sink);
}

int output_capture_append_to(sd_bus_message *m, const char *key, const OutputCapture *c) {
        _cleanup_free_ char *s = utf8_sanitize(c->data ?: "", c->len);
        if (!s)
                return -ENOMEM;
        return sd_bus_message_append(m, "{sv}", key, "s", s);
}

void output_capture_drop_pending(OutputCapture *c) {
        if (!output_capture_pending(c))
                return;
        c->truncated = true;
        c->sink = fdsink_free(c->sink);
}
