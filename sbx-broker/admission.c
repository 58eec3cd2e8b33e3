/* SPDX-License-Identifier: Apache-2.0 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admission.h"
#include "list.h"
#include "log.h"
#include "macro.h"

/* A uid that holds VMs or has requests waiting. */
struct AdmissionUser {
        AdmissionUser *prev, *next;   /* Admission.users */
        AdmissionUser *tprev, *tnext; /* Admission.turns, while it has waiters */
        uid_t uid;
        uint32_t n_vms, n_sessions;
        uint32_t n_waiting;
        AdmissionWaiter *head, *tail; /* its waiters, oldest first */
        uint64_t served;              /* the turn in which a request of it last started; 0: never */
};

struct Admission {
        sd_event *event;
        AdmissionLimits limits;
        const AdmissionOps *ops;
        void *userdata;
        sd_event_source *dispatch; /* defer, SD_EVENT_ONESHOT when a pass is due */
        bool dispatching;

        uint32_t n_active; /* slots held */
        uint32_t n_pool;   /* of those, the pool's */
        uint32_t n_idle;   /* of the pool's, ready ones: no CPU share */
        uint64_t mem_used_mb;
        uint64_t pool_mem_mb;

        AdmissionUser *users, *users_tail;
        /* Uids with waiters, least recently served first: the round-robin order. */
        AdmissionUser *turns, *turns_tail;
        uint64_t turn;
        uint32_t n_queued;
        uint32_t n_armed; /* waiters with a deadline: the ones that count against queue_max */
        AdmissionWaiter *fresh, *fresh_tail;
};

static int on_dispatch(sd_event_source *s, void *userdata);

int admission_new(sd_event *event, const AdmissionLimits *limits, const AdmissionOps *ops, void *userdata,
                  Admission **ret) {
        Admission *a;
        int r;

        a = calloc(1, sizeof(Admission));
        if (!a)
                return -ENOMEM;
        a->event = sd_event_ref(event);
        a->limits = *limits;
        a->ops = ops;
        a->userdata = userdata;
        r = sd_event_add_defer(event, &a->dispatch, on_dispatch, a);
        if (r >= 0)
                r = sd_event_source_set_enabled(a->dispatch, SD_EVENT_OFF);
        if (r < 0) {
                admission_free(a);
                return r;
        }
        *ret = a;
        return 0;
}

static void user_free(Admission *a, AdmissionUser *u) {
        LIST_REMOVE(a->users, a->users_tail, u);
        free(u);
}

Admission *admission_free(Admission *a) {
        if (!a)
                return NULL;
        /* Owners cancel their waiters first; detach any left so they do not point here. */
        while (a->turns)
                admission_cancel(a->turns->head);
        while (a->users)
                user_free(a, a->users);
        a->dispatch = sd_event_source_disable_unref(a->dispatch);
        sd_event_unref(a->event);
        free(a);
        return NULL;
}

const AdmissionLimits *admission_limits(const Admission *a) {
        return &a->limits;
}

bool admission_has_user_limits(const Admission *a) {
        return a->limits.max_vms_per_uid > 0 || a->limits.max_sessions_per_uid > 0;
}

uint32_t admission_n_active(const Admission *a) {
        return a->n_active;
}

uint32_t admission_n_busy(const Admission *a) {
        return a->n_active - a->n_idle;
}

uint32_t admission_n_queued(const Admission *a) {
        return a->n_queued;
}

uint64_t admission_mem_used_mb(const Admission *a) {
        return a->mem_used_mb;
}

static AdmissionUser *user_find(const Admission *a, uid_t uid) {
        for (AdmissionUser *u = a->users; u; u = u->next)
                if (u->uid == uid)
                        return u;
        return NULL;
}

static AdmissionUser *user_get(Admission *a, uid_t uid) {
        AdmissionUser *u = user_find(a, uid);
        if (u)
                return u;
        u = calloc(1, sizeof(AdmissionUser));
        if (!u)
                return NULL;
        u->uid = uid;
        LIST_APPEND(a->users, a->users_tail, u);
        return u;
}

/* A uid with nothing held and nothing waiting is forgotten: when it comes back, it is served first. */
static void user_gc(Admission *a, uid_t uid) {
        AdmissionUser *u = user_find(a, uid);
        if (u && u->n_vms == 0 && u->n_sessions == 0 && u->n_waiting == 0)
                user_free(a, u);
}

uint32_t admission_user_vms(const Admission *a, uid_t uid) {
        const AdmissionUser *u = user_find(a, uid);
        return u ? u->n_vms : 0;
}

uint32_t admission_user_sessions(const Admission *a, uid_t uid) {
        const AdmissionUser *u = user_find(a, uid);
        return u ? u->n_sessions : 0;
}

void admission_schedule(Admission *a) {
        if (a && a->dispatch)
                (void) sd_event_source_set_enabled(a->dispatch, SD_EVENT_ONESHOT);
}

bool admission_cpu_free(const Admission *a) {
        return a->n_active - a->n_idle < a->limits.max_vms;
}

static bool mem_fits(const Admission *a, uint64_t used_mb, uint32_t memory_mb) {
        return used_mb + memory_mb + SBX_VM_OVERHEAD_MB <= a->limits.mem_budget_mb;
}

bool admission_fits(const Admission *a, uint32_t memory_mb) {
        return admission_cpu_free(a) && mem_fits(a, a->mem_used_mb, memory_mb);
}

/* Whether it would fit with every pool VM stopped: the booting ones hold CPU shares, all hold memory. */
static bool fits_without_pool(const Admission *a, uint32_t memory_mb) {
        return a->n_active - a->n_pool < a->limits.max_vms && mem_fits(a, a->mem_used_mb - a->pool_mem_mb, memory_mb);
}

bool admission_make_room(Admission *a, uint32_t memory_mb) {
        if (admission_fits(a, memory_mb))
                return true;
        /* Stopping pool VMs that cannot make enough room would only lose them: a later request
         * may still take one while this one waits. */
        if (!a->ops || !a->ops->evict_one || !fits_without_pool(a, memory_mb))
                return false;
        while (!admission_fits(a, memory_mb)) {
                uint32_t before = a->n_active;
                /* Short of CPU, only stopping a booting pool VM helps; short of memory, any does. */
                if (!a->ops->evict_one(a->userdata, !admission_cpu_free(a)) || a->n_active >= before)
                        return false;
        }
        return true;
}

/* Whether a per-uid limit stands in the way of one more VM (a session when session is set) for
 * uid; why (ADMISSION_WHY_MAX bytes, may be NULL) then names the limit, without a full stop. */
static bool user_limit_hit(const Admission *a, uid_t uid, bool exempt, bool session, char *why) {
        const AdmissionUser *u = user_find(a, uid);

        if (exempt || !u)
                return false;
        if (session && a->limits.max_sessions_per_uid > 0 && u->n_sessions >= a->limits.max_sessions_per_uid) {
                if (why)
                        snprintf(why, ADMISSION_WHY_MAX,
                                 "uid %u is at its limit of open sessions (max_sessions_per_uid = %u)", (unsigned) uid,
                                 a->limits.max_sessions_per_uid);
                return true;
        }
        if (a->limits.max_vms_per_uid > 0 && u->n_vms >= a->limits.max_vms_per_uid) {
                if (why)
                        snprintf(why, ADMISSION_WHY_MAX, "uid %u is at its limit of VMs at once (max_vms_per_uid = %u)",
                                 (unsigned) uid, a->limits.max_vms_per_uid);
                return true;
        }
        return false;
}

static void slot_account(Admission *a, AdmissionSlot *s, AdmissionUser *u, int sign) {
        if (s->kind == ADMISSION_SLOT_POOL) {
                a->n_pool += sign;
                a->pool_mem_mb += (int64_t) sign * s->charge_mb;
                if (s->idle)
                        a->n_idle += sign;
                return;
        }
        if (!u)
                return;
        u->n_vms += sign;
        if (s->kind == ADMISSION_SLOT_SESSION)
                u->n_sessions += sign;
}

int admission_charge(Admission *a, AdmissionSlot *s, AdmissionSlotKind kind, uid_t uid, bool exempt, uint32_t memory_mb,
                     char *why) {
        AdmissionUser *u = NULL;

        assert(!s->admission);
        if (kind == ADMISSION_SLOT_POOL) {
                if (!admission_fits(a, memory_mb)) {
                        if (why)
                                snprintf(why, ADMISSION_WHY_MAX, "No room for a pool VM.");
                        return -EBUSY;
                }
        } else {
                if (user_limit_hit(a, uid, exempt, kind == ADMISSION_SLOT_SESSION, why)) {
                        if (why)
                                strcat(why, ".");
                        return -EDQUOT;
                }
                if (!admission_make_room(a, memory_mb)) {
                        if (why)
                                snprintf(why, ADMISSION_WHY_MAX,
                                         "The VM budget is in use (%u VMs, %" PRIu64 " of %" PRIu64 " MB)%s",
                                         a->n_active, a->mem_used_mb, a->limits.mem_budget_mb,
                                         kind == ADMISSION_SLOT_SESSION ? "; a session needs a VM of its own." : ".");
                        return -EBUSY;
                }
                u = user_get(a, uid);
                if (!u)
                        return -ENOMEM;
        }
        *s = (AdmissionSlot) {
                .admission = a,
                .kind = kind,
                .uid = uid,
                .charge_mb = memory_mb + SBX_VM_OVERHEAD_MB,
        };
        a->n_active++;
        a->mem_used_mb += s->charge_mb;
        slot_account(a, s, u, +1);
        return 0;
}

void admission_release(AdmissionSlot *s) {
        Admission *a = s->admission;
        AdmissionUser *u;

        if (!a)
                return;
        u = s->kind == ADMISSION_SLOT_POOL ? NULL : user_find(a, s->uid);
        slot_account(a, s, u, -1);
        a->n_active--;
        a->mem_used_mb -= s->charge_mb;
        if (u)
                user_gc(a, u->uid);
        *s = (AdmissionSlot) {};
        admission_schedule(a);
}

void admission_slot_set_idle(AdmissionSlot *s, bool idle) {
        Admission *a = s->admission;

        if (!a || s->kind != ADMISSION_SLOT_POOL || s->idle == idle)
                return;
        s->idle = idle;
        if (idle) {
                a->n_idle++;
                /* Its CPU share is free now. */
                admission_schedule(a);
        } else
                a->n_idle--;
}

void admission_slot_move(AdmissionSlot *dst, AdmissionSlot *src, AdmissionSlotKind kind, uid_t uid) {
        Admission *a = src->admission;
        AdmissionUser *u;

        assert(!dst->admission);
        *dst = *src;
        *src = (AdmissionSlot) {};
        if (!a)
                return;
        /* Out of the old owner's counts, into the new one's; the budget itself is unchanged. */
        slot_account(a, dst, dst->kind == ADMISSION_SLOT_POOL ? NULL : user_find(a, dst->uid), -1);
        if (dst->kind != ADMISSION_SLOT_POOL)
                user_gc(a, dst->uid);
        dst->kind = kind;
        dst->uid = uid;
        dst->idle = false;
        u = kind == ADMISSION_SLOT_POOL ? NULL : user_get(a, uid);
        /* Without memory for the uid's entry the VM still counts in the budget, only not against the uid. */
        slot_account(a, dst, u, +1);
}

bool admission_slot_held(const AdmissionSlot *s) {
        return s->admission != NULL;
}

void admission_waiter_init(AdmissionWaiter *w, const AdmissionWaiterOps *ops, void *userdata, uid_t uid, bool exempt,
                           uint32_t memory_mb) {
        *w = (AdmissionWaiter) {
                .ops = ops,
                .userdata = userdata,
                .uid = uid,
                .exempt = exempt,
                .memory_mb = memory_mb,
        };
}

bool admission_waiter_queued(const AdmissionWaiter *w) {
        return w->admission != NULL;
}

static bool waiter_warm(const Admission *a, AdmissionWaiter *w) {
        return admission_cpu_free(a) && w->ops->warm_available && w->ops->warm_available(w);
}

/* Why w gets no place in a queue that holds n_waiting: its uid's limit, or the budget. */
static void queue_full_why(const Admission *a, const AdmissionWaiter *w, uint32_t n_waiting, char *why) {
        char limit[ADMISSION_WHY_MAX];

        if (user_limit_hit(a, w->uid, w->exempt, false, limit))
                snprintf(why, ADMISSION_WHY_MAX, "%.160s, and %u requests are already waiting.", limit, n_waiting);
        else
                snprintf(why, ADMISSION_WHY_MAX,
                         "The VM budget is in use (%u VMs, %" PRIu64 " of %" PRIu64
                         " MB) and %u requests are already waiting.",
                         a->n_active, a->mem_used_mb, a->limits.mem_budget_mb, n_waiting);
}

/* The round-robin order: least recently served first; among equals, who came first. */
static void turns_insert(Admission *a, AdmissionUser *u) {
        AdmissionUser *before = a->turns;
        while (before && before->served <= u->served)
                before = before->tnext;
        LIST_INSERT_BEFORE_AT(a->turns, a->turns_tail, before, u, tprev, tnext);
}

int admission_enqueue(Admission *a, AdmissionWaiter *w, char *why) {
        AdmissionUser *u;

        assert(!w->admission);
        /* Full: only a request that could start at once gets in. */
        if (a->n_queued >= a->limits.queue_max) {
                if (user_limit_hit(a, w->uid, w->exempt, false, NULL) ||
                    (!waiter_warm(a, w) && !fits_without_pool(a, w->memory_mb))) {
                        if (why)
                                queue_full_why(a, w, a->n_queued, why);
                        return -EBUSY;
                }
        }
        u = user_get(a, w->uid);
        if (!u)
                return -ENOMEM;
        w->admission = a;
        w->user = u;
        LIST_APPEND_AT(u->head, u->tail, w, uprev, unext);
        if (u->n_waiting++ == 0)
                turns_insert(a, u);
        LIST_APPEND_AT(a->fresh, a->fresh_tail, w, fprev, fnext);
        a->n_queued++;
        admission_schedule(a);
        return 0;
}

static bool waiter_is_fresh(const Admission *a, const AdmissionWaiter *w) {
        return w->fprev || a->fresh == w;
}

/* Out of every list; the owner's callback comes next. The uid's entry stays until user_gc(). */
static void waiter_unlink(AdmissionWaiter *w) {
        Admission *a = w->admission;
        AdmissionUser *u = w->user;

        LIST_REMOVE_AT(u->head, u->tail, w, uprev, unext);
        if (--u->n_waiting == 0)
                LIST_REMOVE_AT(a->turns, a->turns_tail, u, tprev, tnext);
        if (waiter_is_fresh(a, w))
                LIST_REMOVE_AT(a->fresh, a->fresh_tail, w, fprev, fnext);
        if (w->deadline) {
                w->deadline = sd_event_source_disable_unref(w->deadline);
                a->n_armed--;
        }
        a->n_queued--;
        w->admission = NULL;
        w->user = NULL;
}

void admission_cancel(AdmissionWaiter *w) {
        Admission *a = w->admission;

        if (!a)
                return;
        waiter_unlink(w);
        user_gc(a, w->uid);
        /* It may have been the one whose wait held the others back. */
        admission_schedule(a);
}

static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        AdmissionWaiter *w = userdata;
        Admission *a = w->admission;
        char why[ADMISSION_WHY_MAX], limit[ADMISSION_WHY_MAX];
        double secs = (double) a->limits.queue_timeout_usec / 1e6;
        (void) s;
        (void) usec;

        waiter_unlink(w);
        if (user_limit_hit(a, w->uid, w->exempt, false, limit))
                snprintf(why, sizeof why, "No VM slot became free within %g s: %.160s.", secs, limit);
        else
                snprintf(why, sizeof why, "No VM slot became free within %g s (%u VMs running, %u queued).", secs,
                         a->n_active, a->n_queued);
        user_gc(a, w->uid);
        admission_schedule(a);
        w->ops->fail(w, why);
        return 0;
}

/* The next request to start, in round-robin order across uids and FIFO within one, skipping uids
 * at their limit. Once one cannot get room (*room), later ones only take warm pool VMs, so a
 * stream of small requests cannot keep a large one waiting for ever. */
static AdmissionWaiter *pick(Admission *a, bool *room) {
        for (AdmissionUser *u = a->turns; u; u = u->tnext)
                for (AdmissionWaiter *w = u->head; w; w = w->unext) {
                        if (user_limit_hit(a, w->uid, w->exempt, false, NULL))
                                continue;
                        if (waiter_warm(a, w))
                                return w;
                        if (!*room)
                                continue;
                        if (admission_make_room(a, w->memory_mb))
                                return w;
                        *room = false;
                }
        return NULL;
}

static void admission_dispatch(Admission *a) {
        AdmissionWaiter *w;
        bool room = true;

        assert(!a->dispatching);
        a->dispatching = true;
        while ((w = pick(a, &room))) {
                AdmissionUser *u = w->user;
                uid_t uid = w->uid; /* w may be gone after start() */

                u->served = ++a->turn;
                waiter_unlink(w);
                /* It stays in line, now behind every other uid that waits. */
                if (u->n_waiting > 0) {
                        LIST_REMOVE_AT(a->turns, a->turns_tail, u, tprev, tnext);
                        LIST_APPEND_AT(a->turns, a->turns_tail, u, tprev, tnext);
                }
                w->ops->start(w);
                /* start() charged a slot to the uid, or failed and released it. */
                user_gc(a, uid);
        }
        /* What still waits gets a deadline, as long as the queue has room. */
        while ((w = a->fresh)) {
                char why[ADMISSION_WHY_MAX];

                LIST_REMOVE_AT(a->fresh, a->fresh_tail, w, fprev, fnext);
                if (a->n_armed < a->limits.queue_max &&
                    sd_event_add_time_relative(a->event, &w->deadline, CLOCK_MONOTONIC, a->limits.queue_timeout_usec, 0,
                                               on_deadline, w) >= 0) {
                        a->n_armed++;
                        continue;
                }
                queue_full_why(a, w, a->n_armed, why);
                waiter_unlink(w);
                user_gc(a, w->uid);
                w->ops->fail(w, why);
        }
        a->dispatching = false;
        if (a->ops && a->ops->dispatched)
                a->ops->dispatched(a->userdata);
}

static int on_dispatch(sd_event_source *s, void *userdata) {
        (void) s;
        admission_dispatch(userdata);
        return 0;
}
