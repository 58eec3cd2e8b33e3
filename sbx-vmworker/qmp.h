/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* A small QMP client for snapshots (snapshot.c): QEMU's monitor on one end of a socketpair (QEMU's
 * fd 8, "-chardev socket,id=qmp,fd=8 -mon chardev=qmp,mode=control"). Synchronous, with a deadline
 * per call: the worker only talks QMP while it saves or restores, and nothing else is in flight then.
 *
 * QEMU runs guest code, so its replies are parsed like untrusted input: one JSON object per line, at
 * most QMP_LINE_MAX bytes, nesting at most QMP_DEPTH_MAX, and only a few fields are extracted (into
 * fixed-size buffers, truncated). Anything else is -EBADMSG. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QMP_LINE_MAX (64u * 1024u)
#define QMP_DEPTH_MAX 16u

typedef enum QmpKind {
        QMP_KIND_GREETING, /* {"QMP": {...}} */
        QMP_KIND_RETURN,   /* {"return": ...} */
        QMP_KIND_ERROR,    /* {"error": {"class": ..., "desc": ...}} */
        QMP_KIND_EVENT,    /* {"event": "NAME", ...} */
} QmpKind;

typedef struct QmpReply {
        QmpKind kind;
        char status[32]; /* "return"."status" (query-migrate, query-status), "" when absent */
        char desc[256];  /* "error"."desc", or "return"."error-desc" (a failed migration) */
        char event[64];  /* "event" */
        int version[3];  /* greeting: "QMP"."version"."qemu".major/minor/micro, -1 when absent */
} QmpReply;

/* Parses one line (without its line break). 0, or -EBADMSG for anything that is not a single JSON
 * object with exactly one of the keys QMP, return, error or event. */
int qmp_parse(const char *line, size_t n, QmpReply *ret);

typedef struct Qmp {
        int fd; /* non-blocking; not owned */
        char buf[QMP_LINE_MAX];
        size_t len;
} Qmp;

void qmp_init(Qmp *q, int fd);
/* The next reply that is not an event (events are skipped). deadline: CLOCK_MONOTONIC µs.
 * -ETIMEDOUT, -ECONNRESET on EOF, -EMSGSIZE for an overlong line, -EBADMSG. */
int qmp_read_reply(Qmp *q, uint64_t deadline, QmpReply *ret);
/* Reads the greeting and negotiates capabilities. */
int qmp_handshake(Qmp *q, uint64_t deadline, QmpReply *ret_greeting);
/* Sends one command (a complete JSON object) and reads its reply. An "error" reply is -EPROTO with the
 * description in ret->desc. */
int qmp_execute(Qmp *q, const char *command, uint64_t deadline, QmpReply *ret);
