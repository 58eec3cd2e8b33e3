/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <systemd/sd-bus.h>

/* `sbxctl sessions [--json]`: the broker's sessions (ListSessions). */
int sbxctl_sessions(sd_bus *bus, int argc, char **argv);
/* `sbxctl close PATH|ID`: CloseSession (the owner or root). */
int sbxctl_close(sd_bus *bus, int argc, char **argv);
