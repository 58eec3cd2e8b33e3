/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The warm pool: booted VMs, one language each, whose persistent interpreter
 * already runs, waiting for a one-shot run. A run takes one (its code goes
 * to the interpreter as a session exec, then the VM is thrown away) and the
 * pool boots a replacement in the background. Pool VMs count against the
 * admission budget like any VM, but a request that needs the room gets it:
 * idle pool VMs are stopped for it. See docs/architecture.md, "Warm pool". */

#include <stdbool.h>
#include <stdint.h>

#include "broker.h"
#include "proto.h"
#include "worker-spawn.h"

typedef enum PoolVmState {
        POOL_VM_BOOTING, /* worker started, waiting for W_SESSION_READY */
        POOL_VM_WARMING, /* the interpreter runs its first (empty) exec */
        POOL_VM_READY,
} PoolVmState;

/* What a run learns about the pool VM it took. */
typedef struct PoolHit {
        uint64_t boot_ms, setup_ms; /* spent before the request existed */
        uint64_t idle_ms;           /* how long it waited in the pool */
        uint32_t qemu_pid;
        bool restored;              /* booted from an L1 snapshot */
} PoolHit;

int pool_new(Broker *b, Pool **ret);
Pool *pool_free(Pool *p);

/* Starts VMs until each language has its target, within the budget, while no
 * request waits. Called after every change of the budget. */
void pool_refill(Pool *p);
/* Hands a ready VM of this language and memory size to a run: its worker link
 * moves to dst with the new handlers, its budget share to dst_slot as uid's. Returns false on a
 * miss. */
bool pool_take(Pool *p, SbxLanguage language, uint32_t memory_mb, WorkerLink *dst, AdmissionSlot *dst_slot, uid_t uid,
               worker_frame_handler_t on_frame, worker_lost_handler_t on_lost, void *userdata, PoolHit *ret_hit);
bool pool_has_ready(const Pool *p, SbxLanguage language, uint32_t memory_mb);
/* Stops one pool VM (booting ones first, then the oldest ready one, unless
 * starting_only) to free its budget for a request. Returns false when there
 * is none to stop. */
bool pool_evict_one(Pool *p, bool starting_only);

typedef struct PoolVmInfo {
        SbxLanguage language;
        PoolVmState state;
        uint32_t qemu_pid; /* 0 until the VM is up */
        pid_t worker_pid;
} PoolVmInfo;

/* Fills up to max entries; returns how many VMs the pool has. */
size_t pool_list(const Pool *p, PoolVmInfo *out, size_t max);
const char *pool_vm_state_to_string(PoolVmState s);

int pool_set_target(Pool *p, SbxLanguage language, uint32_t size);
void pool_get_counts(const Pool *p, SbxLanguage language, uint32_t *ret_target, uint32_t *ret_ready,
                     uint32_t *ret_starting);
void pool_get_stats(const Pool *p, uint64_t *ret_hits, uint64_t *ret_misses);
void pool_count_miss(Pool *p);
