/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Admission: the budget every VM is charged to (memory and CPU), the per-uid limits, and the
 * queue of requests waiting for room. Jobs, sessions and the warm pool charge a slot for each VM
 * and release it when the VM goes; runs that find no room wait in the queue and are started from
 * a deferred event source, at most once per loop iteration, round-robin across uids (FIFO within
 * one). Nothing here knows D-Bus: starting a VM and stopping a pool VM are the callers'
 * callbacks. See docs/architecture.md, "Admission". */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

/* What a VM costs the host beyond its guest RAM: QEMU itself, the TCG
 * translation cache, the worker. Counted against the memory budget. */
#define SBX_VM_OVERHEAD_MB 160u

/* Room for a Capacity message: why a request got no VM. */
#define ADMISSION_WHY_MAX 256u

typedef struct Admission Admission;
typedef struct AdmissionUser AdmissionUser;
typedef struct AdmissionWaiter AdmissionWaiter;

typedef struct AdmissionLimits {
        uint32_t max_vms;              /* busy VMs at once: the CPU side (ready pool VMs do not count) */
        uint64_t mem_budget_mb;        /* the memory side: guest RAM plus overhead of every VM */
        uint32_t queue_max;            /* requests waiting before Capacity */
        uint64_t queue_timeout_usec;   /* how long one may wait */
        uint32_t max_vms_per_uid;      /* a uid's runs and sessions at once; 0: no limit */
        uint32_t max_sessions_per_uid; /* a uid's open sessions; 0: no limit */
} AdmissionLimits;

/* What the admission asks of the rest of the broker (the warm pool). */
typedef struct AdmissionOps {
        /* Stops one pool VM, which releases its slot: a booting one first, then the oldest ready
         * one unless starting_only. Returns false when there is none to stop. */
        bool (*evict_one)(void *userdata, bool starting_only);
        /* After each dispatch pass, with what room is left (the pool refills). May be NULL. */
        void (*dispatched)(void *userdata);
} AdmissionOps;

typedef enum AdmissionSlotKind {
        ADMISSION_SLOT_RUN,
        ADMISSION_SLOT_SESSION,
        ADMISSION_SLOT_POOL, /* no uid's: a warm pool VM until a run takes it */
} AdmissionSlotKind;

/* One VM's share of the budget, kept by its owner (a job, a session, a pool VM). Zeroed: holds
 * nothing. Read it through the accessors below. */
typedef struct AdmissionSlot {
        Admission *admission; /* NULL while it holds nothing */
        AdmissionSlotKind kind;
        uid_t uid;
        uint32_t charge_mb; /* guest RAM plus SBX_VM_OVERHEAD_MB */
        bool idle;          /* a ready pool VM: memory, but no CPU share */
} AdmissionSlot;

typedef struct AdmissionWaiterOps {
        /* It has left the queue and may start now: charge a slot (or take a warm VM) at once. */
        void (*start)(AdmissionWaiter *w);
        /* It has left the queue without room: the queue timed out or was full. why says which,
         * for an org.sbx.Error.Capacity. */
        void (*fail)(AdmissionWaiter *w, const char *why);
        /* Whether a ready warm pool VM would serve it now (it then needs a CPU share but no new
         * memory). May be NULL: never. */
        bool (*warm_available)(AdmissionWaiter *w);
} AdmissionWaiterOps;

/* A request waiting for room, kept by its owner (a job). Set up with admission_waiter_init(). */
struct AdmissionWaiter {
        const AdmissionWaiterOps *ops;
        void *userdata;
        uid_t uid;
        bool exempt; /* root or admin_group: no per-uid limits */
        uint32_t memory_mb;

        /* The queue's own */
        Admission *admission; /* set while queued */
        AdmissionUser *user;
        AdmissionWaiter *uprev, *unext; /* its uid's waiters, oldest first */
        AdmissionWaiter *fprev, *fnext; /* not through a dispatch pass yet: no deadline */
        sd_event_source *deadline;
};

int admission_new(sd_event *event, const AdmissionLimits *limits, const AdmissionOps *ops, void *userdata,
                  Admission **ret);
/* Call after every slot and waiter is gone. */
Admission *admission_free(Admission *a);

const AdmissionLimits *admission_limits(const Admission *a);
/* Whether a per-uid limit is configured (callers skip the admin lookup otherwise). */
bool admission_has_user_limits(const Admission *a);
uint32_t admission_n_active(const Admission *a); /* VMs holding a share: runs', sessions', the pool's */
uint32_t admission_n_busy(const Admission *a);   /* of those, the ones counted on the CPU side */
uint32_t admission_n_queued(const Admission *a);
uint64_t admission_mem_used_mb(const Admission *a);
uint32_t admission_user_vms(const Admission *a, uid_t uid);
uint32_t admission_user_sessions(const Admission *a, uid_t uid);

/* Whether one more VM may become busy: the CPU side alone. */
bool admission_cpu_free(const Admission *a);
/* Whether one more VM of memory_mb fits the budget right now. */
bool admission_fits(const Admission *a, uint32_t memory_mb);
/* Makes room for a VM of memory_mb by stopping warm pool VMs, when that is what stands in the way
 * and stopping them is enough. Returns whether it fits now. */
bool admission_make_room(Admission *a, uint32_t memory_mb);

/* Charges a VM of memory_mb to s. A run or a session is held to its uid's limits (unless exempt)
 * and may stop pool VMs for room; a pool VM only takes room that is free. Returns -EDQUOT (a
 * per-uid limit) or -EBUSY (no room) with the reason in why (ADMISSION_WHY_MAX bytes, may be
 * NULL). */
int admission_charge(Admission *a, AdmissionSlot *s, AdmissionSlotKind kind, uid_t uid, bool exempt, uint32_t memory_mb,
                     char *why);
/* Gives the share back and schedules a dispatch pass. Idempotent. */
void admission_release(AdmissionSlot *s);
/* A pool VM became ready (idle: its CPU share is free) or was taken. */
void admission_slot_set_idle(AdmissionSlot *s, bool idle);
/* A run takes a warm pool VM: its share moves from src to dst, now the run's of uid. */
void admission_slot_move(AdmissionSlot *dst, AdmissionSlot *src, AdmissionSlotKind kind, uid_t uid);
bool admission_slot_held(const AdmissionSlot *s);

void admission_waiter_init(AdmissionWaiter *w, const AdmissionWaiterOps *ops, void *userdata, uid_t uid, bool exempt,
                           uint32_t memory_mb);
/* Queues w; it is started (or failed) from a later dispatch pass, never from here. Returns -EBUSY
 * with the reason in why when the queue is full and w could not start at once. */
int admission_enqueue(Admission *a, AdmissionWaiter *w, char *why);
/* Takes w out of the queue, if it is there. Idempotent. */
void admission_cancel(AdmissionWaiter *w);
bool admission_waiter_queued(const AdmissionWaiter *w);
/* Asks for a dispatch pass in the next loop iteration (queued requests first, then the pool's
 * refill). */
void admission_schedule(Admission *a);
