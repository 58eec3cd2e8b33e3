/* SPDX-License-Identifier: Apache-2.0 */
#include "broker-channel.h"

static int broker_send(FramedConn *c, SbxMsg *m) {
        int r = framed_conn_send(c, m);
        sbx_msg_done(m);
        return r;
}

void broker_put_port_mappings(SbxMsg *m, char *const *mappings, size_t n_mappings) {
        for (size_t i = 0; i < n_mappings; i++)
                sbx_msg_put_str(m, SBX_T_PORT_MAPPING, mappings[i]);
}

int broker_send_output(FramedConn *c, SbxStream stream, const void *data, size_t n) {
        SbxMsg m;

        sbx_msg_begin(&m, SBX_W_OUTPUT);
        sbx_msg_put_u8(&m, SBX_T_STREAM, (uint8_t) stream);
        sbx_msg_put(&m, SBX_T_DATA, data, n);
        return broker_send(c, &m);
}

int broker_send_result(FramedConn *c, const RunResult *result) {
        SbxMsg m;

        sbx_msg_begin(&m, SBX_W_RESULT);
        sbx_msg_put_i32(&m, SBX_T_EXIT_CODE, result->exit_code);
        sbx_msg_put_u64(&m, SBX_T_EXEC_MS, result->exec_ms);
        sbx_msg_put_u64(&m, SBX_T_CPU_MS, result->cpu_ms);
        sbx_msg_put_u64(&m, SBX_T_MEM_PEAK_MB, result->mem_peak_mb);
        sbx_msg_put_u64(&m, SBX_T_CPU_THROTTLED, result->cpu_throttled);
        sbx_msg_put_u8(&m, SBX_T_TIMED_OUT, result->timed_out);
        sbx_msg_put_u8(&m, SBX_T_STDOUT_TRUNC, result->stdout_truncated);
        sbx_msg_put_u8(&m, SBX_T_STDERR_TRUNC, result->stderr_truncated);
        sbx_msg_put_str(&m, SBX_T_ACCEL, result->accel);
        if (result->cgroup_mode)
                sbx_msg_put_str(&m, SBX_T_CGROUP_MODE, result->cgroup_mode);
        if (result->message)
                sbx_msg_put_str(&m, SBX_T_MESSAGE, result->message);
        sbx_msg_put_u8(&m, SBX_T_STATE_RESET, result->state_reset);
        return broker_send(c, &m);
}

int broker_send_error(FramedConn *c, SbxErrorKind kind, const char *message) {
        SbxMsg m;

        sbx_msg_begin(&m, SBX_W_ERROR);
        sbx_msg_put_u32(&m, SBX_T_ERROR_KIND, (uint32_t) kind);
        sbx_msg_put_str(&m, SBX_T_MESSAGE, message);
        return broker_send(c, &m);
}

int broker_send_ready(FramedConn *c, const ReadyInfo *r) {
        SbxMsg m;

        sbx_msg_begin(&m, SBX_W_SESSION_READY);
        sbx_msg_put_u64(&m, SBX_T_BOOT_MS, r->boot_ms);
        sbx_msg_put_u64(&m, SBX_T_SETUP_MS, r->setup_ms);
        sbx_msg_put_str(&m, SBX_T_ACCEL, r->accel);
        sbx_msg_put_u32(&m, SBX_T_QEMU_PID, (uint32_t) r->qemu_pid);
        sbx_msg_put_u8(&m, SBX_T_WARM, r->warm);
        broker_put_port_mappings(&m, r->mappings, r->n_mappings);
        if (r->snapshot) {
                /* A VM whose snapshot was built here was a cold boot, even if it now runs restored. */
                sbx_msg_put_str(&m, SBX_T_SNAPSHOT_TIER, r->l1 && !r->saved ? "l1" : "cold");
                if (r->l1)
                        sbx_msg_put_u64(&m, SBX_T_RESTORE_MS, r->restore_ms);
                sbx_msg_put_u8(&m, SBX_T_SNAPSHOT_SAVED, r->saved);
                if (r->note && *r->note)
                        sbx_msg_put_str(&m, SBX_T_SNAPSHOT_NOTE, r->note);
        }
        return broker_send(c, &m);
}

int broker_send_file_result(FramedConn *c, SbxFileStatus status, uint64_t size, const char *message) {
        SbxMsg m;

        sbx_msg_begin(&m, SBX_W_FILE_RESULT);
        sbx_msg_put_u32(&m, SBX_T_FILE_STATUS, (uint32_t) status);
        sbx_msg_put_u64(&m, SBX_T_SIZE, size);
        if (message && *message)
                sbx_msg_put_str(&m, SBX_T_MESSAGE, message);
        return broker_send(c, &m);
}

int broker_send_list_entry(FramedConn *c, const char *name, bool is_dir, uint64_t size) {
        SbxMsg m;

        sbx_msg_begin(&m, SBX_W_LIST_ENTRY);
        sbx_msg_put_str(&m, SBX_T_NAME, name);
        sbx_msg_put_u8(&m, SBX_T_IS_DIR, is_dir);
        sbx_msg_put_u64(&m, SBX_T_SIZE, size);
        return broker_send(c, &m);
}
