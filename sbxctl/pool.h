/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <systemd/sd-bus.h>

/* `sbxctl pool [--json]`: the warm pool per language (GetPool).
 * `sbxctl pool set LANG=N...`: resize it (SetPoolSize; root or admin_group). */
int sbxctl_pool(sd_bus *bus, int argc, char **argv);
