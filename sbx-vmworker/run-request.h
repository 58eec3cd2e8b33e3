/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The broker's SBX_B_SESSION_OPEN and SBX_B_EXEC, and its file requests, parsed and checked. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "proto.h"

#define RUN_VCPUS_MAX 64u
#define RUN_MEMORY_MAX_MB (64u * 1024u)

/* One SBX_T_EXPOSE entry: "INTERNAL:EXTERNAL/tcp|udp"; external 0 = the worker picks one. */
typedef struct RunExpose {
        uint16_t internal;
        uint16_t external;
        bool udp;
} RunExpose;

typedef struct RunRequest {
        uint64_t run_id;
        SbxLanguage language;
        char *code;
        size_t code_len;
        uint32_t timeout_ms;
        char **env; /* "KEY=VALUE" */
        size_t n_env;
        uint32_t memory_mb;
        uint32_t vcpus;
        SbxAccel accel; /* SBX_ACCEL_AUTO when neither the broker nor the config chose */
        /* Network (SESSION_OPEN; docs/network.md). */
        bool network;   /* SBX_T_NETWORK = 1: outbound access through sbx-netd */
        bool oneshot;   /* SBX_T_ONESHOT = 1: execs run as fresh processes (a cold one-shot run) */
        char **domains; /* SBX_T_ALLOWED_DOMAIN; none with network: full outbound access */
        size_t n_domains;
        RunExpose expose[SBX_EXPOSE_MAX];
        size_t n_expose;
} RunRequest;

/* The VM gets a NIC (and a netd registration): network on, or ports exposed. */
static inline bool run_request_wants_nic(const RunRequest *r) {
        return r->network || r->n_expose > 0;
}

typedef enum RunRequestKind {
        RUN_REQUEST_SESSION_OPEN, /* SBX_B_SESSION_OPEN: RUN_ID, LANGUAGE, ENV*, MEMORY_MB, VCPUS, ACCEL */
        RUN_REQUEST_EXEC,         /* SBX_B_EXEC: RUN_ID (exec id), CODE, TIMEOUT_MS, ENV* */
} RunRequestKind;

void run_request_done(RunRequest *r);

/* Parses "INTERNAL:EXTERNAL/tcp|udp" (INTERNAL 1-65535, EXTERNAL 0-65535). Exposed for tests. */
int run_expose_parse(const char *s, RunExpose *ret);

/* Parses a request of the given kind: fields that do not belong to it are skipped like unknown tags.
 * SESSION_OPEN leaves code NULL and timeout 0; EXEC leaves language SBX_LANG_INVALID and the VM
 * settings from config (missing MEMORY_MB, VCPUS and ACCEL of an open come from config too).
 * Returns 0, -ENOMEM, or -EINVAL/-EBADMSG/-E2BIG with a human-readable reason in *ret_reason
 * (static storage). */
int run_request_parse(RunRequestKind kind, const uint8_t *payload, size_t len, const SbxConfig *config,
                      RunRequest *ret, const char **ret_reason);

/* SBX_B_FILE_WRITE (PATH, MODE), SBX_B_FILE_READ and SBX_B_LIST (PATH). The path is only checked
 * for size (<= SBX_PATH_MAX) and NUL bytes: the guest resolves it and answers INVALID_PATH. */
typedef struct FileRequest {
        char *path;
        uint32_t mode; /* 0644 when absent; at most 07777 */
} FileRequest;

int file_request_parse(const uint8_t *payload, size_t len, FileRequest *ret, const char **ret_reason);
void file_request_done(FileRequest *r);
