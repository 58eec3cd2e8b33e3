/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The embedded mode's sbx-cache (no cache_socket configured): the broker binds runtime_dir/cache.sock
 * itself and hands the listening socket to an sbx-cache child, the way systemd's socket activation
 * would. A dead child is restarted after a second; clients that connect meanwhile wait in the
 * socket's backlog instead of failing. */

#include <stdbool.h>
#include <sys/types.h>

typedef struct Broker Broker;

int broker_cache_start(Broker *b);
/* Called for every reaped child: true if it was sbx-cache (a restart is then scheduled). */
bool broker_cache_child_exited(Broker *b, pid_t pid, int status);
void broker_cache_stop(Broker *b);
