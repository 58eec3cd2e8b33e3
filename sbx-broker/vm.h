/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* One VM as the broker sees it: a worker link (worker-spawn.h) and the client of the worker
 * protocol on it (docs/protocols.md, "Worker channel"). It starts the worker and opens the VM,
 * keeps what W_SESSION_READY said, runs one request at a time (an exec into an Exec, a file write
 * or read, a listing, an interrupt) and hands each answer to its owner's callbacks. Its owner is a
 * job (one exec), a session (a queue of calls) or the warm pool (warm-up execs), and a warm pool
 * VM changes owner (vm_move) when a run takes it.
 *
 * Callbacks run from the worker link's I/O handler. The owner may release the Vm (vm_release) from
 * inside any of them, but never free the memory it lives in there: jobs and sessions free
 * themselves from a pre-allocated linger source, the pool from a defer source. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "broker.h"
#include "exec.h"
#include "request.h"
#include "result.h"
#include "worker-spawn.h"

typedef struct Vm Vm;

typedef struct VmOps {
        /* W_SESSION_READY: vm->info holds what it said. */
        void (*on_ready)(Vm *vm, void *userdata);
        /* Optional: the exec's W_RESULT is parsed into e->result and the VM takes the next request.
         * The owner may add to the result or release the VM here; the Exec completes right after. */
        void (*on_exec_done)(Vm *vm, Exec *e, void *userdata);
        /* W_FILE_RESULT of a write, read or listing: status SBX_FILE_*, message NULL when absent. */
        void (*on_file_done)(Vm *vm, uint32_t status, const char *message, void *userdata);
        /* W_LIST_ENTRY of the running listing (name: 1-255 bytes without '/' or NUL, not yet
         * checked for UTF-8). A negative return is a protocol error. */
        int (*on_list_entry)(Vm *vm, const char *name, bool is_dir, uint64_t size, void *userdata);
        /* The VM is gone: W_ERROR, the worker exited or stalled, or it broke the protocol. error_name
         * is an org.sbx.Error name, message a sentence for the caller. The request in flight, if
         * any, is dropped (its Exec gets nothing more); the owner releases the Vm. */
        void (*on_lost)(Vm *vm, const char *error_name, const char *message, void *userdata);
} VmOps;

typedef enum VmRequest {
        VM_REQUEST_NONE,
        VM_REQUEST_EXEC,
        VM_REQUEST_FILE, /* a write or a read */
        VM_REQUEST_LIST,
} VmRequest;

struct Vm {
        WorkerLink link;
        const VmOps *ops;
        void *userdata;
        bool ready;        /* W_SESSION_READY came */
        WorkerReady info;  /* what it said: boot, snapshot tier, QEMU's pid, exposed ports */
        VmRequest request; /* the one in flight */
        Exec *exec;        /* VM_REQUEST_EXEC: where its output and result go */
};

void vm_init(Vm *vm);
/* Starts a worker and sends B_SESSION_OPEN for a VM of this language and memory (id names it in
 * the worker's logs and cgroup). opts (may be NULL) adds the session-wide env and the network
 * options; warm starts the interpreter before READY; snapshot restores (or builds) the L1
 * snapshot; oneshot (a cold run's VM, which serves one exec) has the guest run execs as fresh
 * processes rather than in the persistent interpreter. on_ready follows, or on_lost. */
int vm_open(Vm *vm, Broker *b, uint64_t id, SbxLanguage language, uint32_t memory_mb, const SbxRequest *opts, bool warm,
            bool snapshot, bool oneshot, const VmOps *ops, void *userdata);
/* Hands a ready VM with no request in flight to a new owner; src is left empty. */
void vm_move(Vm *dst, Vm *src, const VmOps *ops, void *userdata);
/* Closes the link (the worker stops the VM on EOF) and SIGTERMs the worker if asked. Idempotent.
 * A request in flight is dropped. */
void vm_release(Vm *vm, bool kill_worker);

static inline bool vm_is_open(const Vm *vm) {
        return worker_link_is_open(&vm->link);
}
static inline pid_t vm_worker_pid(const Vm *vm) {
        return vm->link.pid;
}

/* The requests; each needs a ready VM with none in flight (else -EBUSY), and a queue that has room
 * (-ENOBUFS) on a link that is open (-EPIPE). */
/* B_EXEC: code for the VM's interpreter; its output and result go into e (exec_output(),
 * exec_result_in()). id names the exec in the worker's logs. */
int vm_exec(Vm *vm, Exec *e, uint64_t id, const char *code, size_t code_len, uint32_t timeout_ms, char *const *env,
            size_t n_env);
/* B_FILE_WRITE / B_FILE_READ with the content's fd (the caller keeps its own). */
int vm_write_file(Vm *vm, const char *path, uint32_t mode, int fd);
int vm_read_file(Vm *vm, const char *path, int fd);
/* B_LIST: on_list_entry for each entry, then on_file_done. */
int vm_list(Vm *vm, const char *path);
/* B_INTERRUPT for the running exec: 1 if one was running, 0 if not. */
int vm_interrupt(Vm *vm);
