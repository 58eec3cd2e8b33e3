/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* What a worker's W_RESULT says about one execution, and its rendering into
 * the result dictionary shared by Run, Finished and Session1.Exec. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

#include "output.h"
#include "proto.h"

/* A port of the VM exposed on the host's loopback, as the worker bound it. */
typedef struct PortMapping {
        bool udp;
        uint16_t internal, external;
} PortMapping;

typedef struct PortMappings {
        PortMapping map[SBX_EXPOSE_MAX];
        size_t n;
} PortMappings;

/* SBX_T_PORT_MAPPING "tcp INTERNAL 127.0.0.1:EXTERNAL": adds it (once per protocol and internal port). */
int port_mappings_add(PortMappings *m, const uint8_t *v, size_t len);
/* Appends "a(sqqs)": protocol, internal, external, URL. */
int port_mappings_append(sd_bus_message *m, const PortMappings *p);

typedef struct RunResult {
        int32_t exit_code;
        bool timed_out, state_reset;
        bool stdout_truncated, stderr_truncated;
        uint64_t exec_ms, boot_ms, setup_ms, cpu_ms, mem_peak_mb, cpu_throttled;
        char *accel;
        char *message;
        const char *cgroup_mode; /* "v2", "v1", "none"; NULL when the worker did not say */
        /* Set by the broker, not the worker: */
        bool warm_pool_hit;
        const char *snapshot_tier; /* "warm", "l1" or "cold" (NULL) */
        PortMappings ports;
} RunResult;

/* A worker's W_SESSION_READY. */
typedef struct WorkerReady {
        PortMappings ports;
        uint64_t boot_ms, setup_ms, restore_ms;
        uint32_t qemu_pid;
        bool restored; /* from an L1 snapshot */
        bool saved;    /* this VM's boot built the snapshot */
} WorkerReady;

int worker_ready_parse(const uint8_t *payload, size_t n, WorkerReady *ret);

void run_result_done(RunResult *r);
int run_result_parse(RunResult *r, const uint8_t *payload, size_t n);
/* The cgroup mode of the most recent W_RESULT parsed that carried one, "unknown" before that: what
 * GetStatus reports. The broker cannot know it better without a VM: it depends on the worker's own
 * cgroup, its privileges and cgroup_parent. */
const char *worker_cgroup_mode_last(void);
/* The timeout reason goes into stderr; the VM is gone by then (one-shot) or its interpreter restarted (session). */
void run_result_note_timeout(const RunResult *r, OutputCapture *err, char *buf, size_t size);
/* Appends the result keys (not the dictionary's open/close). */
int run_result_append(sd_bus_message *m, const RunResult *r, const OutputCapture *out, const OutputCapture *err,
                      const char *accel_default);

/* A worker's W_ERROR: its kind (SbxErrorKind) and message (NULL when absent, owned). */
int worker_error_parse(const uint8_t *payload, size_t n, uint32_t *ret_kind, char **ret_message);
/* A worker's W_FILE_RESULT: its SbxFileStatus and message (NULL when absent, owned). */
int worker_file_result_parse(const uint8_t *payload, size_t n, uint32_t *ret_status, char **ret_message);
/* The D-Bus error name for an SbxErrorKind. */
const char *worker_error_name(uint32_t kind);

/* A worker's W_OUTPUT: its stream and data (pointing into the payload; NULL when absent). */
int worker_output_parse(const uint8_t *payload, size_t n, SbxStream *ret_stream, const uint8_t **ret_data,
                        size_t *ret_len);
