/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "broker.h"
#include "exec.h"
#include "frame.h"
#include "pool.h"
#include "request.h"
#include "result.h"
#include "vm.h"

typedef enum JobState {
        JOB_QUEUED,
        JOB_BOOTING,
        JOB_RUNNING,
        JOB_FINISHED,
        JOB_FAILED,
        JOB_CANCELLED,
        _JOB_STATE_MAX,
} JobState;

struct Job {
        Broker *broker;
        Job *prev, *next;
        uint64_t id;
        char path[64];
        JobState state;
        SbxRequest req;

        char *owner; /* unique bus name of the caller */
        uid_t owner_uid;
        sd_bus_track *track;
        sd_bus_message *reply_to; /* pending Run() call */
        bool emit_signals;        /* StartRun() */

        Vm vm;                   /* its own, or a warm pool VM it took */
        AdmissionSlot slot;      /* its VM's share of the budget */
        AdmissionWaiter waiter;  /* while it waits for room */
        bool pooled;             /* runs in a warm pool VM */
        sd_event_source *linger; /* pre-allocated: frees the finished job after job_linger_seconds */

        Exec exec; /* the run's output, result and drain */
        const char *error_name;
        char *error_message;

        uint64_t t_created, t_started, t_done;
};

const char *job_state_to_string(JobState s);

/* Takes over *req. On success the job waits in the admission queue, which starts it from a
 * later loop iteration; the caller attaches reply_to or emit_signals before returning. */
int job_new(Broker *b, SbxRequest *req, sd_bus_message *call, Job **ret, sd_bus_error *error);
Job *job_free(Job *j);
Job *broker_find_job(Broker *b, uint64_t id);
int job_start(Job *j);
void job_cancel(Job *j, const char *why);

/* job-bus.c */
int job_bus_setup(Broker *b);
int job_emit_output(Job *j, SbxStream stream, const void *data, size_t n);
int job_emit_finished(Job *j);
int job_append_result(Job *j, sd_bus_message *m);
void job_emit_state_changed(Job *j);
