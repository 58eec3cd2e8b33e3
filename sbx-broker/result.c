/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "macro.h"
#include "proto.h"
#include "bus-names.h"
#include "result.h"

int port_mappings_add(PortMappings *m, const uint8_t *v, size_t len) {
        char buf[64], proto[4];
        unsigned internal, external;
        int consumed = 0;

        if (len == 0 || len >= sizeof buf || memchr(v, 0, len))
                return -EBADMSG;
        memcpy(buf, v, len);
        buf[len] = 0;
        if (sscanf(buf, "%3s %5u 127.0.0.1:%5u%n", proto, &internal, &external, &consumed) != 3 ||
            (size_t) consumed != len || internal < 1 || internal > 65535 || external < 1 || external > 65535 ||
            (strcmp(proto, "tcp") != 0 && strcmp(proto, "udp") != 0))
                return -EBADMSG;
        PortMapping pm = { .udp = proto[0] == 'u', .internal = (uint16_t) internal, .external = (uint16_t) external };
        for (size_t i = 0; i < m->n; i++)
                if (m->map[i].udp == pm.udp && m->map[i].internal == pm.internal) {
                        m->map[i] = pm;
                        return 0;
                }
        if (m->n >= SBX_EXPOSE_MAX)
                return -EBADMSG;
        m->map[m->n++] = pm;
        return 0;
}

int port_mappings_append(sd_bus_message *m, const PortMappings *p) {
        int r = sd_bus_message_open_container(m, 'a', "(sqqs)");
        for (size_t i = 0; r >= 0 && i < p->n; i++) {
                char url[64];
                snprintf(url, sizeof url, "%s://127.0.0.1:%u", p->map[i].udp ? "udp" : "http", p->map[i].external);
                r = sd_bus_message_append(m, "(sqqs)", p->map[i].udp ? "udp" : "tcp", p->map[i].internal,
                                          p->map[i].external, url);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        return r;
}

void run_result_done(RunResult *r) {
        free(r->accel);
        free(r->message);
        *r = (RunResult) {};
}

static int parse_flag(const uint8_t *v, uint32_t len, bool *ret) {
        uint8_t f;
        int r = sbx_tlv_u8(v, len, &f);
        if (r >= 0)
                *ret = f != 0;
        return r;
}

static const char *last_cgroup_mode = "unknown";

const char *worker_cgroup_mode_last(void) {
        return last_cgroup_mode;
}

/* SBX_T_CGROUP_MODE: one of the three names, kept as a static string. */
static int parse_cgroup_mode(const uint8_t *v, uint32_t len, const char **ret) {
        static const char *const modes[] = { "v2", "v1", "none" };

        for (size_t i = 0; i < ELEMENTSOF(modes); i++)
                if (len == strlen(modes[i]) && memcmp(v, modes[i], len) == 0) {
                        *ret = modes[i];
                        return 0;
                }
        return -EBADMSG;
}

static int parse_str(const uint8_t *v, uint32_t len, size_t max, char **field) {
        free(*field);
        *field = NULL;
        return sbx_tlv_str(v, len, max, field);
}

int run_result_parse(RunResult *res, const uint8_t *p, size_t n) {
        SbxTlvIter it;
        uint16_t tag;
        const uint8_t *v;
        uint32_t len;
        int r;

        res->exit_code = -1;
        sbx_tlv_iter_init(&it, p, n);
        while ((r = sbx_tlv_next(&it, &tag, &v, &len)) > 0) {
                switch (tag) {
                case SBX_T_EXIT_CODE:
                        r = sbx_tlv_i32(v, len, &res->exit_code);
                        break;
                case SBX_T_EXEC_MS:
                        r = sbx_tlv_u64(v, len, &res->exec_ms);
                        break;
                case SBX_T_BOOT_MS:
                        r = sbx_tlv_u64(v, len, &res->boot_ms);
                        break;
                case SBX_T_SETUP_MS:
                        r = sbx_tlv_u64(v, len, &res->setup_ms);
                        break;
                case SBX_T_CPU_MS:
                        r = sbx_tlv_u64(v, len, &res->cpu_ms);
                        break;
                case SBX_T_MEM_PEAK_MB:
                        r = sbx_tlv_u64(v, len, &res->mem_peak_mb);
                        break;
                case SBX_T_CPU_THROTTLED:
                        r = sbx_tlv_u64(v, len, &res->cpu_throttled);
                        break;
                case SBX_T_TIMED_OUT:
                        r = parse_flag(v, len, &res->timed_out);
                        break;
                case SBX_T_STATE_RESET:
                        r = parse_flag(v, len, &res->state_reset);
                        break;
                case SBX_T_STDOUT_TRUNC:
                        r = parse_flag(v, len, &res->stdout_truncated);
                        break;
                case SBX_T_STDERR_TRUNC:
                        r = parse_flag(v, len, &res->stderr_truncated);
                        break;
                case SBX_T_ACCEL:
                        r = parse_str(v, len, 16, &res->accel);
                        break;
                case SBX_T_CGROUP_MODE:
                        r = parse_cgroup_mode(v, len, &res->cgroup_mode);
                        break;
                case SBX_T_MESSAGE:
                        r = parse_str(v, len, SBX_MESSAGE_MAX, &res->message);
                        break;
                case SBX_T_PORT_MAPPING:
                        r = port_mappings_add(&res->ports, v, len);
                        break;
                default:
                        break;
                }
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        if (res->timed_out)
                res->exit_code = -1;
        if (res->cgroup_mode)
                last_cgroup_mode = res->cgroup_mode;
        return 0;
}

void run_result_note_timeout(const RunResult *r, OutputCapture *err, char *buf, size_t size) {
        snprintf(buf, size, "\nsbx: %s.\n", r->message ?: "execution timed out");
        output_capture_note(err, buf);
}

static int append_u64(sd_bus_message *m, const char *key, uint64_t v) {
        return sd_bus_message_append(m, "{sv}", key, "t", v);
}

static int append_bool(sd_bus_message *m, const char *key, bool v) {
        return sd_bus_message_append(m, "{sv}", key, "b", (int) v);
}

int run_result_append(sd_bus_message *m, const RunResult *res, const OutputCapture *out, const OutputCapture *err,
                      const char *accel_default) {
        int r;

        if ((r = output_capture_append_to(m, "stdout", out)) < 0 ||
            (r = output_capture_append_to(m, "stderr", err)) < 0 ||
            (r = sd_bus_message_append(m, "{sv}", "exit_code", "i", res->exit_code)) < 0 ||
            (r = append_bool(m, "stdout_truncated", res->stdout_truncated || out->truncated)) < 0 ||
            (r = append_bool(m, "stderr_truncated", res->stderr_truncated || err->truncated)) < 0 ||
            (r = append_bool(m, "timed_out", res->timed_out)) < 0 ||
            (r = append_bool(m, "state_reset", res->state_reset)) < 0 ||
            (r = append_u64(m, "execution_time_ms", res->exec_ms)) < 0 ||
            (r = append_u64(m, "timing_setup_ms", res->setup_ms)) < 0 ||
            (r = append_u64(m, "timing_boot_ms", res->boot_ms)) < 0 ||
            (r = append_u64(m, "timing_execute_ms", res->exec_ms)) < 0 ||
            (r = append_u64(m, "external_cpu_time_ms", res->cpu_ms)) < 0 ||
            (r = append_u64(m, "external_memory_peak_mb", res->mem_peak_mb)) < 0 ||
            (r = append_u64(m, "external_cpu_nr_throttled", res->cpu_throttled)) < 0 ||
            (r = sd_bus_message_append(m, "{sv}", "accel", "s", res->accel ?: accel_default)) < 0 ||
            (r = sd_bus_message_append(m, "{sv}", "cgroup_mode", "s", res->cgroup_mode ?: "none")) < 0 ||
            (r = append_bool(m, "warm_pool_hit", res->warm_pool_hit)) < 0 ||
            (r = sd_bus_message_append(m, "{sv}", "snapshot_tier", "s", res->snapshot_tier ?: "cold")) < 0)
                return r;
        if (res->ports.n > 0) {
                r = sd_bus_message_open_container(m, 'e', "sv");
                if (r >= 0)
                        r = sd_bus_message_append(m, "s", "exposed_ports");
                if (r >= 0)
                        r = sd_bus_message_open_container(m, 'v', "a(sqqs)");
                if (r >= 0)
                        r = port_mappings_append(m, &res->ports);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
        }
        return r < 0 ? r : 0;
}

int worker_ready_parse(const uint8_t *p, size_t n, WorkerReady *ret) {
        WorkerReady ready = {};
        SbxTlvIter it;
        uint16_t tag;
        const uint8_t *v;
        uint32_t len;
        int r;

        sbx_tlv_iter_init(&it, p, n);
        while ((r = sbx_tlv_next(&it, &tag, &v, &len)) > 0) {
                switch (tag) {
                case SBX_T_BOOT_MS:
                        r = sbx_tlv_u64(v, len, &ready.boot_ms);
                        break;
                case SBX_T_SETUP_MS:
                        r = sbx_tlv_u64(v, len, &ready.setup_ms);
                        break;
                case SBX_T_QEMU_PID:
                        r = sbx_tlv_u32(v, len, &ready.qemu_pid);
                        break;
                case SBX_T_RESTORE_MS:
                        r = sbx_tlv_u64(v, len, &ready.restore_ms);
                        break;
                case SBX_T_SNAPSHOT_SAVED:
                        r = parse_flag(v, len, &ready.saved);
                        break;
                case SBX_T_PORT_MAPPING:
                        r = port_mappings_add(&ready.ports, v, len);
                        break;
                case SBX_T_SNAPSHOT_TIER:
                        /* "l1" or "cold"; anything else is a broken worker. */
                        if (len == 2 && memcmp(v, "l1", 2) == 0)
                                ready.restored = true;
                        else if (!(len == 4 && memcmp(v, "cold", 4) == 0))
                                r = -EBADMSG;
                        break;
                default:
                        break;
                }
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        *ret = ready;
        return 0;
}

/* W_ERROR and W_FILE_RESULT: a u32 code under code_tag and an optional MESSAGE. */
static int parse_code_and_message(const uint8_t *p, size_t n, uint16_t code_tag, uint32_t code_default,
                                  uint32_t *ret_code, char **ret_message) {
        _cleanup_free_ char *msg = NULL;
        uint32_t code = code_default;
        SbxTlvIter it;
        uint16_t tag;
        const uint8_t *v;
        uint32_t len;
        int r;

        sbx_tlv_iter_init(&it, p, n);
        while ((r = sbx_tlv_next(&it, &tag, &v, &len)) > 0) {
                if (tag == code_tag)
                        r = sbx_tlv_u32(v, len, &code);
                else if (tag == SBX_T_MESSAGE && !msg)
                        r = sbx_tlv_str(v, len, SBX_MESSAGE_MAX, &msg);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        *ret_code = code;
        *ret_message = TAKE_PTR(msg);
        return 0;
}

int worker_error_parse(const uint8_t *p, size_t n, uint32_t *ret_kind, char **ret_message) {
        return parse_code_and_message(p, n, SBX_T_ERROR_KIND, SBX_ERR_INTERNAL, ret_kind, ret_message);
}

int worker_file_result_parse(const uint8_t *p, size_t n, uint32_t *ret_status, char **ret_message) {
        return parse_code_and_message(p, n, SBX_T_FILE_STATUS, SBX_FILE_IO_ERROR, ret_status, ret_message);
}

const char *worker_error_name(uint32_t kind) {
        switch (kind) {
        case SBX_ERR_TRANSIENT:
                return SBX_ERROR_VM_TRANSIENT;
        case SBX_ERR_BOOT_TIMEOUT:
                return SBX_ERROR_VM_BOOT_TIMEOUT;
        case SBX_ERR_INVALID:
                return SBX_ERROR_INVALID_INPUT;
        case SBX_ERR_NETWORK:
                return SBX_ERROR_NETWORK_UNAVAILABLE;
        default:
                return SBX_ERROR_INTERNAL;
        }
}

int worker_output_parse(const uint8_t *p, size_t n, SbxStream *ret_stream, const uint8_t **ret_data,
                        size_t *ret_len) {
        const uint8_t *v, *data = NULL;
        uint32_t len, data_len = 0;
        uint8_t stream = 0;
        SbxTlvIter it;
        uint16_t tag;
        int r;

        sbx_tlv_iter_init(&it, p, n);
        while ((r = sbx_tlv_next(&it, &tag, &v, &len)) > 0) {
                if (tag == SBX_T_STREAM)
                        r = sbx_tlv_u8(v, len, &stream);
                else if (tag == SBX_T_DATA) {
                        data = v;
                        data_len = len;
                }
                if (r < 0)
                        return r;
        }
        if (r < 0 || (stream != SBX_STREAM_STDOUT && stream != SBX_STREAM_STDERR))
                return -EBADMSG;
        *ret_stream = (SbxStream) stream;
        *ret_data = data;
        *ret_len = data_len;
        return 0;
}
