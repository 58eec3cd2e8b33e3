/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Client-side helpers shared by sbx and sbxctl (links libsystemd, so it is
 * a separate target from the dependency-free core used by the guest). */

#include <stdbool.h>
#include <stdio.h>
#include <systemd/sd-bus.h>

typedef enum SbxBusKind {
        SBX_BUS_AUTO,   /* $SBX_BUS_ADDRESS, else the session bus if $DBUS_SESSION_BUS_ADDRESS, else system */
        SBX_BUS_USER,
        SBX_BUS_SYSTEM,
        SBX_BUS_ADDRESS,
} SbxBusKind;

int sbx_bus_connect(SbxBusKind kind, const char *address, sd_bus **ret);
/* Writes the value at the read position (any type) as JSON. */
int sbx_json_write_value(sd_bus_message *m, FILE *f);
/* Looks up a key of an a{sv} reply: rewinds, finds key, leaves the reader inside the variant. */
int sbx_dict_find(sd_bus_message *m, const char *key, const char *contents);
/* Exit status for a failed call: 2 caller error, 75 retryable, 1 otherwise. */
int sbx_error_exit_status(const sd_bus_error *e);
