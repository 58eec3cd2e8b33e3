/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <sys/types.h>

#include "broker.h"

/* Gets a connection to a fresh sbx-vmworker: in the embedded mode a forked
 * worker with a socketpair end as its fd 3 (the socket-activation contract);
 * with worker_socket set, a connection to sbx-vmworker.socket (Accept=yes),
 * and *ret_pid is 0. */
int broker_spawn_worker(Broker *b, int *ret_fd, pid_t *ret_pid);
