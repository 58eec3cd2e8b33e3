/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The worker's messages to the broker (proto.h, worker channel). */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "framed-conn.h"
#include "proto.h"

/* Queued bytes to the broker before it counts as stuck: all output it can ever get, plus slack. */
#define BROKER_OUT_MAX (SBX_STDOUT_MAX + SBX_STDERR_MAX + 1024u * 1024u)

/* The end of one exec. */
typedef struct RunResult {
        int32_t exit_code;
        uint64_t exec_ms;
        uint64_t cpu_ms, mem_peak_mb, cpu_throttled;
        bool timed_out, stdout_truncated, stderr_truncated;
        const char *accel;
        const char *cgroup_mode; /* optional: vm_cgroup_limits_mode() */
        const char *message;     /* optional */
        bool state_reset;
} RunResult;

/* mappings: the VM's exposed ports ("tcp INTERNAL 127.0.0.1:EXTERNAL"), one SBX_T_PORT_MAPPING each. */
void broker_put_port_mappings(SbxMsg *m, char *const *mappings, size_t n_mappings);
int broker_send_output(FramedConn *c, SbxStream stream, const void *data, size_t n);
int broker_send_result(FramedConn *c, const RunResult *result);
int broker_send_error(FramedConn *c, SbxErrorKind kind, const char *message);
/* How the VM came up (W_SESSION_READY). */
typedef struct ReadyInfo {
        uint64_t boot_ms, setup_ms;
        const char *accel;
        pid_t qemu_pid;
        bool warm;
        bool snapshot; /* SNAPSHOT was asked: the tier, restore_ms (l1), saved and the note go along */
        bool l1, saved;
        uint64_t restore_ms;
        const char *note;
        char *const *mappings; /* the VM's exposed ports */
        size_t n_mappings;
} ReadyInfo;

int broker_send_ready(FramedConn *c, const ReadyInfo *r);
int broker_send_file_result(FramedConn *c, SbxFileStatus status, uint64_t size, const char *message);
int broker_send_list_entry(FramedConn *c, const char *name, bool is_dir, uint64_t size);
