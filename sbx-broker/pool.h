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
#include "vm.h"

typedef enum PoolVmState {
        POOL_VM_BOOTING, /* worker started, waiting for W_SESSION_READY */
        POOL_VM_WARMING, /* the interpreter runs its first (empty) exec */
        POOL_VM_READY,
} PoolVmState;

int pool_new(Broker *b, Pool **ret);
Pool *pool_free(Pool *p);

/* Starts VMs until each language has its target, within the budget, while no
 * request waits. Called after every change of the budget. */
void pool_refill(Pool *p);
/* Hands a ready VM of this language and memory size to a run: the Vm moves to dst with the new
 * owner's callbacks (dst->info says how it booted), its budget share to dst_slot as uid's. Returns
 * false on a miss. */
bool pool_take(Pool *p, SbxLanguage language, uint32_t memory_mb, Vm *dst, AdmissionSlot *dst_slot, uid_t uid,
               const VmOps *ops, void *userdata);
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
