/* SPDX-License-Identifier: Apache-2.0 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "bus-names.h"
#include "log.h"
#include "macro.h"
#include "proto.h"
#include "validate.h"
#include "vm.h"

void vm_init(Vm *vm) {
        *vm = (Vm) {};
        worker_link_init(&vm->link);
}

void vm_release(Vm *vm, bool kill_worker) {
        worker_link_release(&vm->link, kill_worker);
        vm->request = VM_REQUEST_NONE;
        vm->exec = NULL;
}

/* The request in flight is over; returns its Exec, if it was an exec. */
static Exec *vm_request_done(Vm *vm) {
        Exec *e = vm->exec;
        vm->request = VM_REQUEST_NONE;
        vm->exec = NULL;
        return e;
}

static void vm_lost(Vm *vm, const char *error_name, const char *message) {
        (void) vm_request_done(vm);
        vm->ops->on_lost(vm, error_name, message, vm->userdata);
}

static int handle_ready(Vm *vm, const uint8_t *p, size_t n) {
        int r;

        if (vm->ready)
                return -EBADMSG;
        r = worker_ready_parse(p, n, &vm->info);
        if (r < 0)
                return r;
        vm->ready = true;
        vm->ops->on_ready(vm, vm->userdata);
        return 0;
}

static int handle_output(Vm *vm, const uint8_t *p, size_t n) {
        SbxStream stream;
        const uint8_t *data;
        size_t len;
        int r;

        if (vm->request != VM_REQUEST_EXEC)
                return -EBADMSG;
        r = worker_output_parse(p, n, &stream, &data, &len);
        if (r < 0 || !data)
                return r;
        return exec_output(vm->exec, stream, data, len);
}

static int handle_result(Vm *vm, const uint8_t *p, size_t n) {
        Exec *e = vm->exec;
        int r;

        if (vm->request != VM_REQUEST_EXEC || e->have_result)
                return -EBADMSG;
        r = run_result_parse(&e->result, p, n);
        if (r < 0)
                return r;
        (void) vm_request_done(vm);
        if (vm->ops->on_exec_done)
                vm->ops->on_exec_done(vm, e, vm->userdata);
        /* The Exec lives in the owner, which never frees it from here. */
        exec_result_in(e);
        return 0;
}

static int handle_file_result(Vm *vm, const uint8_t *p, size_t n) {
        _cleanup_free_ char *message = NULL;
        uint32_t status;

        if (vm->request != VM_REQUEST_FILE && vm->request != VM_REQUEST_LIST)
                return -EBADMSG;
        int r = worker_file_result_parse(p, n, &status, &message);
        if (r < 0)
                return r;
        (void) vm_request_done(vm);
        vm->ops->on_file_done(vm, status, message, vm->userdata);
        return 0;
}

static int handle_list_entry(Vm *vm, const uint8_t *p, size_t n) {
        _cleanup_free_ char *name = NULL;
        uint8_t is_dir = 0;
        uint64_t size = 0;
        const uint8_t *v;
        SbxTlvIter it;
        uint16_t tag;
        uint32_t len;
        int r;

        if (vm->request != VM_REQUEST_LIST)
                return -EBADMSG;
        sbx_tlv_iter_init(&it, p, n);
        while ((r = sbx_tlv_next(&it, &tag, &v, &len)) > 0) {
                if (tag == SBX_T_NAME && !name)
                        r = sbx_tlv_str(v, len, SBX_PATH_COMPONENT_MAX, &name);
                else if (tag == SBX_T_IS_DIR)
                        r = sbx_tlv_u8(v, len, &is_dir);
                else if (tag == SBX_T_SIZE)
                        r = sbx_tlv_u64(v, len, &size);
                if (r < 0)
                        return r;
        }
        if (r < 0 || !name)
                return -EBADMSG;
        return vm->ops->on_list_entry(vm, name, is_dir != 0, size, vm->userdata);
}

static int handle_error(Vm *vm, const uint8_t *p, size_t n) {
        _cleanup_free_ char *message = NULL;
        uint32_t kind;
        int r = worker_error_parse(p, n, &kind, &message);
        if (r < 0)
                return r;
        vm_lost(vm, worker_error_name(kind), message ?: "The VM worker failed.");
        return 0;
}

static int on_frame(void *userdata, uint8_t type, const uint8_t *p, size_t n) {
        Vm *vm = userdata;

        switch (type) {
        case SBX_W_SESSION_READY:
                return handle_ready(vm, p, n);
        case SBX_W_OUTPUT:
                return handle_output(vm, p, n);
        case SBX_W_RESULT:
                return handle_result(vm, p, n);
        case SBX_W_FILE_RESULT:
                return handle_file_result(vm, p, n);
        case SBX_W_LIST_ENTRY:
                return handle_list_entry(vm, p, n);
        case SBX_W_ERROR:
                return handle_error(vm, p, n);
        default:
                return -EBADMSG;
        }
}

static void on_link_lost(void *userdata, int error, bool protocol) {
        Vm *vm = userdata;
        char msg[256];

        if (protocol) {
                snprintf(msg, sizeof msg, "Protocol error from the VM worker: %s.", strerror(-error));
                vm_lost(vm, SBX_ERROR_INTERNAL, msg);
        } else if (error == -ETIMEDOUT) {
                snprintf(msg, sizeof msg,
                         "The VM worker stopped reading its requests for %u s and was stopped. Safe to retry.",
                         WORKER_STALL_USEC / 1000000u);
                vm_lost(vm, SBX_ERROR_VM_TRANSIENT, msg);
        } else {
                if (error < 0)
                        log_debug_errno(error, "Reading a VM worker failed: %m");
                vm_lost(vm, SBX_ERROR_VM_TRANSIENT,
                        "The VM worker exited (was it or its QEMU killed?). Safe to retry.");
        }
}

int vm_open(Vm *vm, Broker *b, uint64_t id, SbxLanguage language, uint32_t memory_mb, const SbxRequest *opts, bool warm,
            bool snapshot, bool oneshot, const VmOps *ops, void *userdata) {
        SbxMsg m;
        int r;

        vm->ops = ops;
        vm->userdata = userdata;
        r = worker_link_start(&vm->link, b, on_frame, on_link_lost, vm);
        if (r < 0)
                return r;

        sbx_msg_begin(&m, SBX_B_SESSION_OPEN);
        sbx_msg_put_u64(&m, SBX_T_RUN_ID, id);
        sbx_msg_put_str(&m, SBX_T_LANGUAGE, sbx_language_to_string(language));
        sbx_msg_put_u32(&m, SBX_T_MEMORY_MB, memory_mb);
        sbx_msg_put_u32(&m, SBX_T_VCPUS, b->config.vcpus);
        /* Always the resolved accelerator: without it every worker would probe KVM again. */
        sbx_msg_put_str(&m, SBX_T_ACCEL, sbx_accel_to_string(b->accel));
        if (opts) {
                for (size_t i = 0; i < opts->n_env; i++)
                        sbx_msg_put_str(&m, SBX_T_ENV, opts->env[i]);
                request_put_network(opts, &m);
        }
        if (warm)
                sbx_msg_put_u8(&m, SBX_T_WARM, 1);
        if (oneshot)
                sbx_msg_put_u8(&m, SBX_T_ONESHOT, 1);
        if (snapshot)
                sbx_msg_put_u8(&m, SBX_T_SNAPSHOT, 1);
        r = worker_link_send(&vm->link, &m);
        sbx_msg_done(&m);
        return r;
}

void vm_move(Vm *dst, Vm *src, const VmOps *ops, void *userdata) {
        assert(src->request == VM_REQUEST_NONE);
        *dst = *src;
        worker_link_move(&dst->link, &src->link, on_frame, on_link_lost, dst);
        dst->ops = ops;
        dst->userdata = userdata;
        vm_init(src);
}

static int vm_can_send(const Vm *vm) {
        if (!vm_is_open(vm))
                return -EPIPE;
        if (!vm->ready || vm->request != VM_REQUEST_NONE)
                return -EBUSY;
        return 0;
}

/* Sends m (with fd when >= 0) as the request in flight. */
static int vm_send_request(Vm *vm, SbxMsg *m, int fd, VmRequest request) {
        int r = vm_can_send(vm);
        if (r >= 0)
                r = fd >= 0 ? worker_link_send_with_fd(&vm->link, m, fd) : worker_link_send(&vm->link, m);
        sbx_msg_done(m);
        if (r < 0)
                return r;
        vm->request = request;
        return 0;
}

int vm_exec(Vm *vm, Exec *e, uint64_t id, const char *code, size_t code_len, uint32_t timeout_ms, char *const *env,
            size_t n_env) {
        SbxMsg m;
        int r;

        sbx_msg_begin(&m, SBX_B_EXEC);
        sbx_msg_put_u64(&m, SBX_T_RUN_ID, id);
        sbx_msg_put(&m, SBX_T_CODE, code, code_len);
        sbx_msg_put_u32(&m, SBX_T_TIMEOUT_MS, timeout_ms);
        for (size_t i = 0; i < n_env; i++)
                sbx_msg_put_str(&m, SBX_T_ENV, env[i]);
        r = vm_send_request(vm, &m, -EBADF, VM_REQUEST_EXEC);
        if (r >= 0)
                vm->exec = e;
        return r;
}

int vm_write_file(Vm *vm, const char *path, uint32_t mode, int fd) {
        SbxMsg m;

        sbx_msg_begin(&m, SBX_B_FILE_WRITE);
        sbx_msg_put_str(&m, SBX_T_PATH, path);
        sbx_msg_put_u32(&m, SBX_T_MODE, mode);
        return vm_send_request(vm, &m, fd, VM_REQUEST_FILE);
}

int vm_read_file(Vm *vm, const char *path, int fd) {
        SbxMsg m;

        sbx_msg_begin(&m, SBX_B_FILE_READ);
        sbx_msg_put_str(&m, SBX_T_PATH, path);
        return vm_send_request(vm, &m, fd, VM_REQUEST_FILE);
}

int vm_list(Vm *vm, const char *path) {
        SbxMsg m;

        sbx_msg_begin(&m, SBX_B_LIST);
        sbx_msg_put_str(&m, SBX_T_PATH, path);
        return vm_send_request(vm, &m, -EBADF, VM_REQUEST_LIST);
}

int vm_interrupt(Vm *vm) {
        SbxMsg m;
        int r;

        if (vm->request != VM_REQUEST_EXEC || !vm_is_open(vm))
                return 0;
        sbx_msg_begin(&m, SBX_B_INTERRUPT);
        r = worker_link_send(&vm->link, &m);
        sbx_msg_done(&m);
        return r < 0 ? r : 1;
}
