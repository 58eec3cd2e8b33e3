/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The host-facing half of sbx-guest: the protocol loop on the virtio-serial
 * port. See docs/guest.md. */

#include <stdint.h>

/* Sends SBX_G_HELLO. */
int agent_send_hello(int port_fd);
/* Serves the host until the channel fails; only returns on a fatal error. */
int agent_run(int port_fd);
