/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "exec.h"
#include "log.h"
#include "macro.h"

void exec_init(Exec *e, sd_event *event, const char *name, const ExecOps *ops, void *userdata) {
        *e = (Exec) { .event = event, .ops = ops, .userdata = userdata };
        snprintf(e->name, sizeof e->name, "%s", name);
        output_capture_init(&e->out, SBX_STDOUT_MAX);
        output_capture_init(&e->err, SBX_STDERR_MAX);
}

void exec_done(Exec *e) {
        e->drain_timer = sd_event_source_disable_unref(e->drain_timer);
        output_capture_done(&e->out);
        output_capture_done(&e->err);
        run_result_done(&e->result);
        e->have_result = e->aborted = e->completed = false;
}

void exec_drop_output(Exec *e) {
        e->drain_timer = sd_event_source_disable_unref(e->drain_timer);
        output_capture_done(&e->out);
        output_capture_done(&e->err);
}

static void exec_check_complete(Exec *e);

static void on_sink_drained(void *userdata) {
        exec_check_complete(userdata);
}

int exec_open_sinks(Exec *e, int stdout_fd, int stderr_fd) {
        int r = 0, k;

        if (stdout_fd >= 0 && (k = fdsink_new(e->event, stdout_fd, on_sink_drained, e, &e->out.sink)) < 0)
                r = k;
        if (stderr_fd >= 0 && (k = fdsink_new(e->event, stderr_fd, on_sink_drained, e, &e->err.sink)) < 0 && r >= 0)
                r = k;
        return r;
}

void exec_close_sinks(Exec *e) {
        e->out.sink = fdsink_free(e->out.sink);
        e->err.sink = fdsink_free(e->err.sink);
        exec_check_complete(e);
}

static int on_drain_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Exec *e = userdata;
        (void) s;
        (void) usec;

        log_warning("%s: the caller stopped reading its output fd; dropping the rest.", e->name);
        output_capture_drop_pending(&e->out);
        output_capture_drop_pending(&e->err);
        exec_check_complete(e);
        return 0;
}

/* Complete once the end is known and the caller's fds took everything (or the deadline passed):
 * the reply must not overtake output still on its way to the caller's fds. */
static void exec_check_complete(Exec *e) {
        if (e->completed || !(e->have_result || e->aborted))
                return;
        if (output_capture_pending(&e->out) || output_capture_pending(&e->err)) {
                /* The drained callback comes back here, or the deadline does. */
                if (e->drain_timer)
                        return;
                if (sd_event_add_time_relative(e->event, &e->drain_timer, CLOCK_MONOTONIC, OUTPUT_DRAIN_TIMEOUT_USEC, 0,
                                               on_drain_timeout, e) >= 0)
                        return;
                output_capture_drop_pending(&e->out);
                output_capture_drop_pending(&e->err);
        }
        e->drain_timer = sd_event_source_disable_unref(e->drain_timer);
        e->completed = true;
        /* Last: the owner may reset or drop the Exec from here. */
        e->ops->on_complete(e, e->userdata);
}

int exec_output(Exec *e, SbxStream stream, const void *data, size_t n) {
        size_t taken;
        int r = output_capture_append(stream == SBX_STREAM_STDOUT ? &e->out : &e->err, data, n, &taken);
        if (r >= 0 && taken > 0 && e->ops->on_output)
                e->ops->on_output(e, stream, data, taken, e->userdata);
        return r;
}

void exec_result_in(Exec *e) {
        if (e->have_result || e->aborted)
                return;
        e->have_result = true;
        if (e->result.timed_out) {
                char line[SBX_MESSAGE_MAX + 64];
                run_result_note_timeout(&e->result, &e->err, line, sizeof line);
                if (e->ops->on_output)
                        e->ops->on_output(e, SBX_STREAM_STDERR, line, strlen(line), e->userdata);
        }
        exec_check_complete(e);
}

void exec_abort(Exec *e) {
        if (e->have_result || e->aborted)
                return;
        e->aborted = true;
        exec_check_complete(e);
}

int exec_append_result(const Exec *e, sd_bus_message *m, const char *accel_default) {
        return run_result_append(m, &e->result, &e->out, &e->err, accel_default);
}
