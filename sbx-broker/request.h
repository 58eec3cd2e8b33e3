/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* A run request, as read from the caller's a{sv}. The D-Bus layer
 * (request_read) only dispatches on key and type; every check of a value
 * lives in the request_apply_*() and request_finish() functions, which take
 * plain C values so the fuzz target can drive them without a bus. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

#include "proto.h"

typedef struct SbxRequest {
        SbxLanguage language;
        char *code;
        size_t code_len;
        uint32_t timeout_s;
        uint32_t memory_mb;
        char **env; /* "KEY=VALUE" */
        size_t n_env;
        int stdout_fd, stderr_fd;
        bool have_code;
} SbxRequest;

void request_init(SbxRequest *r, uint32_t default_memory_mb);
void request_done(SbxRequest *r);

int request_apply_string(SbxRequest *r, const char *key, const char *value, sd_bus_error *error);
int request_apply_u32(SbxRequest *r, const char *key, uint32_t value, sd_bus_error *error);
int request_apply_env(SbxRequest *r, const char *name, const char *value, sd_bus_error *error);
/* Takes a borrowed fd and keeps its own F_DUPFD_CLOEXEC copy. */
int request_apply_fd(SbxRequest *r, const char *key, int fd, sd_bus_error *error);
/* Checks what only the whole request can tell (code present and valid). */
int request_finish(SbxRequest *r, uint32_t max_memory_mb, sd_bus_error *error);

/* Reads and checks an a{sv} at the message's read position. */
int request_read(sd_bus_message *m, SbxRequest *r, uint32_t max_memory_mb, sd_bus_error *error);
