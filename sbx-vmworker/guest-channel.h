/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The worker's side of the guest protocol (proto.h): turning the agent's
 * frames into checked values, and building SBX_H_EXEC. Every byte from the
 * guest is hostile: each parser checks every TLV it knows (length, range,
 * no duplicates), requires the mandatory ones, and returns -EBADMSG with a
 * reason otherwise. The caller treats that as a protocol violation. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"
#include "proto.h"
#include "run-request.h"

typedef struct GuestHello {
        uint32_t version;
        uint64_t uptime_ms;
} GuestHello;

typedef struct GuestOutput {
        SbxStream stream;
        const uint8_t *data; /* points into the payload */
        size_t len;
} GuestOutput;

typedef struct GuestExit {
        int32_t exit_code;
        uint64_t exec_ms;
        bool timed_out;
        bool state_reset; /* sessions: the persistent interpreter was (re)started for this exec */
} GuestExit;

/* G_FILE_RESULT: ends a file write, read or listing. */
typedef struct GuestFileResult {
        SbxFileStatus status;
        uint64_t size;
        char *message; /* sanitized, NULL when absent; owned */
} GuestFileResult;

/* G_FILE_DATA: a chunk (<= 32 KiB) of a file being read. */
typedef struct GuestFileData {
        const uint8_t *data; /* points into the payload */
        size_t len;
} GuestFileData;

/* G_LIST_ENTRY: one directory entry. */
typedef struct GuestListEntry {
        char name[SBX_PATH_COMPONENT_MAX + 1]; /* 1..255 bytes, no NUL, no '/', not "." or ".." */
        bool printable; /* valid UTF-8 without control characters: fit for D-Bus and logs */
        bool is_dir;
        uint64_t size;
} GuestListEntry;

int guest_parse_hello(const uint8_t *p, size_t n, GuestHello *ret, const char **ret_reason);
int guest_parse_output(const uint8_t *p, size_t n, GuestOutput *ret, const char **ret_reason);
int guest_parse_exit(const uint8_t *p, size_t n, GuestExit *ret, const char **ret_reason);
/* *ret_message is sanitized (valid UTF-8, no control characters) and may be NULL when absent. */
int guest_parse_error(const uint8_t *p, size_t n, char **ret_message, const char **ret_reason);

int guest_parse_file_result(const uint8_t *p, size_t n, GuestFileResult *ret, const char **ret_reason);
void guest_file_result_done(GuestFileResult *r);
int guest_parse_file_data(const uint8_t *p, size_t n, GuestFileData *ret, const char **ret_reason);
int guest_parse_list_entry(const uint8_t *p, size_t n, GuestListEntry *ret, const char **ret_reason);

/* Builds SBX_H_EXEC for one exec in the VM opened by session: the session's language, code,
 * timeout, the session's environment merged under the exec's (an exec variable replaces a session
 * one of the same name), SBX_T_SESSION = 1 (the persistent interpreter), the host's CLOCK_REALTIME
 * and 32 fresh bytes of entropy. -E2BIG when the merged environment has more than
 * SBX_ENV_COUNT_MAX entries. */
int guest_build_exec(const RunRequest *session, const RunRequest *exec, SbxMsg *ret);
/* SBX_H_FILE_WRITE (PATH, MODE), SBX_H_FILE_READ and SBX_H_LIST (PATH). */
int guest_build_path_request(uint8_t type, const char *path, uint32_t mode, SbxMsg *ret);

const char *guest_msg_type_to_string(uint8_t type);
