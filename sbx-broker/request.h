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
#include "validate.h"

/* Keys, as bits: which a method accepts, and which a request carried. */
typedef enum RequestKey {
        REQ_CODE = 1u << 0,
        REQ_LANGUAGE = 1u << 1,
        REQ_TIMEOUT = 1u << 2,
        REQ_MEMORY = 1u << 3,
        REQ_ENV = 1u << 4,
        REQ_STDOUT_FD = 1u << 5,
        REQ_STDERR_FD = 1u << 6,
        REQ_IDLE_TIMEOUT = 1u << 7,
        REQ_WARM_POOL = 1u << 8,
        REQ_SNAPSHOT = 1u << 9,
        REQ_ALLOW_NETWORK = 1u << 10,
        REQ_ALLOWED_DOMAINS = 1u << 11,
        REQ_EXPOSE_PORTS = 1u << 12,
} RequestKey;

#define REQ_KEYS_NETWORK (REQ_ALLOW_NETWORK | REQ_ALLOWED_DOMAINS | REQ_EXPOSE_PORTS)

#define REQ_KEYS_RUN                                                                                  \
        (REQ_CODE | REQ_LANGUAGE | REQ_TIMEOUT | REQ_MEMORY | REQ_ENV | REQ_STDOUT_FD | REQ_STDERR_FD | \
         REQ_WARM_POOL | REQ_SNAPSHOT | REQ_KEYS_NETWORK)
#define REQ_KEYS_OPEN_SESSION (REQ_LANGUAGE | REQ_MEMORY | REQ_ENV | REQ_IDLE_TIMEOUT | REQ_SNAPSHOT | REQ_KEYS_NETWORK)
#define REQ_KEYS_EXEC (REQ_TIMEOUT | REQ_ENV | REQ_STDOUT_FD | REQ_STDERR_FD)

#define SBX_IDLE_TIMEOUT_MIN_S 10u
#define SBX_IDLE_TIMEOUT_MAX_S 3600u
#define SBX_IDLE_TIMEOUT_DEFAULT_S 300u

typedef struct SbxRequest {
        unsigned seen; /* RequestKey bits */
        uint32_t idle_timeout_s;
        SbxLanguage language;
        char *code;
        size_t code_len;
        uint32_t timeout_s;
        uint32_t memory_mb;
        char **env; /* "KEY=VALUE" */
        size_t n_env;
        int stdout_fd, stderr_fd;
        bool have_code;
        bool use_warm_pool; /* "warm_pool": may take a warm pool VM (default true) */
        bool use_snapshot;  /* "snapshot": may restore an L1 snapshot (default true) */
        bool allow_network; /* "allow_network", or implied by allowed_domains */
        char **domains;     /* "allowed_domains", canonical (lower case); none + allow_network = full access */
        size_t n_domains;
        SbxExpose expose[SBX_EXPOSE_MAX]; /* "expose_ports" */
        size_t n_expose;
} SbxRequest;

/* Whether the VM needs a NIC (network or exposed ports): such VMs never use the pool or snapshots. */
static inline bool request_has_nic(const SbxRequest *r) {
        return r->allow_network || r->n_expose > 0;
}

void request_init(SbxRequest *r, uint32_t default_memory_mb);
void request_done(SbxRequest *r);

int request_apply_string(SbxRequest *r, const char *key, const char *value, sd_bus_error *error);
int request_apply_u32(SbxRequest *r, const char *key, uint32_t value, sd_bus_error *error);
int request_apply_bool(SbxRequest *r, const char *key, bool value, sd_bus_error *error);
/* Adds NETWORK, ALLOWED_DOMAIN and EXPOSE tags to a B_SESSION_OPEN. */
struct SbxMsg;
void request_put_network(const SbxRequest *r, struct SbxMsg *m);

/* One element of an "as" value: allowed_domains or expose_ports. */
int request_apply_string_item(SbxRequest *r, const char *key, const char *value, sd_bus_error *error);
int request_apply_env(SbxRequest *r, const char *name, const char *value, sd_bus_error *error);
/* Takes a borrowed fd and keeps its own F_DUPFD_CLOEXEC copy. */
int request_apply_fd(SbxRequest *r, const char *key, int fd, sd_bus_error *error);
/* Checks what only the whole request can tell: only `allowed` keys, and code present and valid when
 * REQ_CODE is allowed. */
int request_finish(SbxRequest *r, unsigned allowed, uint32_t max_memory_mb, sd_bus_error *error);

/* Reads and checks an a{sv} at the message's read position. */
int request_read(sd_bus_message *m, SbxRequest *r, unsigned allowed, uint32_t max_memory_mb, sd_bus_error *error);
