/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "bus-util.h"

int sbx_run(SbxBusKind kind, const char *address, int argc, char **argv);
