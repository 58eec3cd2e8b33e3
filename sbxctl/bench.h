/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <systemd/sd-bus.h>

int sbxctl_bench(sd_bus *bus, int argc, char **argv);
