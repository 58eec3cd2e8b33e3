/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Streams job output into a caller's fd (stdout_fd / stderr_fd) without ever
 * blocking the broker's event loop on a slow or stuck reader. Pipes and ttys
 * are reopened through /proc/self/fd with O_NONBLOCK, which gives us our own
 * file description, so the caller's flags are not touched. */

#include <stdbool.h>
#include <stddef.h>
#include <systemd/sd-event.h>

typedef struct FdSink FdSink;
typedef void (*fdsink_drained_t)(void *userdata);

/* Does not take ownership of fd. */
int fdsink_new(sd_event *event, int fd, fdsink_drained_t drained, void *userdata, FdSink **ret);
FdSink *fdsink_free(FdSink *s);
/* Queues data; drops it (returns 0) once the reader is gone. */
int fdsink_write(FdSink *s, const void *data, size_t n);
bool fdsink_pending(const FdSink *s);
