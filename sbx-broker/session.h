/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* A stateful session: one VM kept across Exec calls, with file I/O. Calls
 * queue and run one at a time in arrival order, each one request on the
 * session's Vm (vm.h); an Exec call's output and result are an Exec (exec.h). */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "broker.h"
#include "bus-names.h"
#include "frame.h"
#include "exec.h"
#include "request.h"
#include "result.h"
#include "vm.h"

#define SESSION_QUEUE_MAX 16u

typedef enum SessionOpKind {
        SESSION_OP_EXEC,
        SESSION_OP_WRITE,
        SESSION_OP_READ,
        SESSION_OP_LIST,
} SessionOpKind;

typedef struct SessionOp SessionOp;
struct SessionOp {
        SessionOp *next;
        SessionOpKind kind;
        sd_bus_message *call;
        SbxRequest req; /* EXEC: code, timeout, env, output fds */
        char *path;     /* file operations */
        int fd;         /* WRITE: read from it; READ: write into it */
        uint32_t mode;
};

typedef struct Session Session;
struct Session {
        Broker *broker;
        Session *prev, *next;
        uint64_t id;
        char path[80];
        SbxRequest options; /* language, memory, env, idle timeout */
        char *owner;
        uid_t owner_uid;
        sd_bus_message *open_call; /* pending OpenSession() until the VM is up */

        bool closed;
        Vm vm;              /* vm.info: what W_SESSION_READY said (boot, snapshot tier, exposed ports) */
        AdmissionSlot slot; /* its VM's share of the budget */
        sd_event_source *timer;  /* idle timeout */
        sd_event_source *linger; /* pre-allocated: frees the closed session after job_linger_seconds */

        SessionOp *queue_head, *queue_tail, *current;
        size_t n_queued;
        uint64_t next_exec_id;
        uint32_t exec_count;
        Exec exec; /* the running Exec call's output and result */
        sd_bus_message *list_reply;
        uint64_t created_realtime_usec;
};

int session_open(Broker *b, sd_bus_message *call, sd_bus_error *error);
/* Queues a call; the reply comes when it ran. Takes over *op on success. */
int session_enqueue(Session *s, SessionOp *op, sd_bus_error *error);
void session_close(Session *s, const char *why);
Session *session_free(Session *s);
Session *broker_find_session(Broker *b, const char *path);
SessionOp *session_op_free(SessionOp *op);

/* session-bus.c */
int session_bus_setup(Broker *b);
int session_check_owner(Session *s, sd_bus_message *m, sd_bus_error *error);
void session_emit_changed(Session *s, const char *property);
/* Output(s stream, ay data), sent only to the caller of the running Exec. */
void session_emit_output(Session *s, const char *destination, SbxStream stream, const void *data, size_t n);
