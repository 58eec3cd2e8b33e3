/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Client side of org.sbx.Session1, shared by `sbx session` and `sbx run --upload/--download`:
 * message builders, file transfers through fds, and the parsing of transfer arguments. */

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

#define SBX_OPEN_SESSION_TIMEOUT_USEC (600ull * 1000000ull) /* queue wait plus a cold boot */
#define SBX_TRANSFER_TIMEOUT_USEC (30ull * 60ull * 1000000ull)
#define SBX_CLOSE_TIMEOUT_USEC (30ull * 1000000ull)
#define SBX_IDLE_TIMEOUT_MIN_S 10u
#define SBX_IDLE_TIMEOUT_MAX_S 3600u

typedef struct SessionOptions {
        const char *language;    /* NULL: python */
        uint32_t memory_mb;      /* 0: the broker's default */
        uint32_t idle_timeout_s; /* 0: the broker's default */
        char **env;              /* "KEY=VALUE" */
        size_t n_env;
        const struct SbxNetworkOptions *net; /* NULL: no network, no exposed ports */
} SessionOptions;

/* Performs one method call (sd_bus_call, or a loop that also watches signals). */
typedef int (*SbxCallFn)(void *userdata, sd_bus_message *m, uint64_t usec, sd_bus_message **ret_reply,
                         sd_bus_error *ret_error);
int sbx_call_sync(void *userdata, sd_bus_message *m, uint64_t usec, sd_bus_message **ret_reply,
                  sd_bus_error *ret_error);

/* Command-line values: a decimal u32 (no sign), and a repeatable -e KEY=VALUE. Both print what is
 * wrong and return -EINVAL; the caller exits 2. */
int sbx_parse_u32(const char *s, const char *what, uint32_t *ret);
int sbx_add_env_arg(char **env, size_t *n, size_t max, const char *arg);

/* Maps the accepted aliases (js, ts, typescript, bash, sh) to python, javascript or raw. */
const char *sbx_language_normalize(const char *s);
/* Appends {"env": <a{ss}>} to an open a{sv}; entries are "KEY=VALUE". */
int sbx_append_env(sd_bus_message *m, char **env, size_t n);

int sbx_open_session_message(sd_bus *bus, const SessionOptions *o, sd_bus_message **ret);
/* timeout_s 0: the broker's default. out_fd/err_fd < 0: captured in the result instead. */
int sbx_exec_message(sd_bus *bus, const char *session, const char *code, uint32_t timeout_s, int out_fd,
                     int err_fd, sd_bus_message **ret);
uint64_t sbx_exec_call_timeout(uint32_t timeout_s);
/* Best effort; errors are ignored (the broker also closes a session whose owner disconnects). */
void sbx_session_close(sd_bus *bus, const char *session);

/* Exit status for a failed call: like sbx_error_exit_status(), plus 2 for InvalidPath, NotFound and
 * FileTooLarge. */
int sbx_session_error_status(const sd_bus_error *e);
/* The session is gone: SessionClosed, or the object or the broker vanished. */
bool sbx_session_error_is_fatal(const sd_bus_error *e, int r);

/* "--upload LOCAL[:GUEST]" and "--download GUEST[:LOCAL]": splits on the last colon; a missing or
 * empty second part (a trailing colon) takes its default: GUEST = basename(LOCAL) for uploads,
 * *ret_second = NULL (LOCAL = ./basename(GUEST), decided at download time) for downloads.
 * Returns -EINVAL for an empty first part or an upload whose LOCAL has no file name. */
int sbx_transfer_parse(const char *arg, bool upload, char **ret_first, char **ret_second);
/* The last path component of p, without trailing slashes; NULL when there is none ("", "/", ".", ".."). */
char *sbx_path_basename(const char *p);

/* Upload LOCAL ("-": our stdin) into GUEST. Returns an exit status (0 ok, 2 caller error, 75 retry,
 * 1 otherwise) after printing a message; a bus error is also copied to *ret_error (may be NULL).
 * announce: say on stderr what was copied. */
int sbx_upload(sd_bus *bus, SbxCallFn call, void *userdata, const char *session, const char *local,
               const char *guest, bool announce, sd_bus_error *ret_error);
/* Download GUEST into LOCAL (NULL: ./basename(GUEST); an existing directory: DIR/basename(GUEST);
 * "-": our stdout) through an unnamed temporary file in LOCAL's directory that is linked into place
 * only on success, so a failed or interrupted download leaves nothing behind. Same returns. */
int sbx_download(sd_bus *bus, SbxCallFn call, void *userdata, const char *session, const char *guest,
                 const char *local, bool announce, sd_bus_error *ret_error);
/* ListFiles(path): prints one entry a line (directories with a trailing '/'). Same returns. */
int sbx_list_files(sd_bus *bus, SbxCallFn call, void *userdata, const char *session, const char *path,
                   sd_bus_error *ret_error);
