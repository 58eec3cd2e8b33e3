/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the admission core without a bus: a mock warm pool behind its ops table, mock
 * requests as waiters, and sd-event driven by hand. FIFO order, the deferred dispatch, Capacity
 * for a full queue and for the queue timeout, pool VMs stopped to make room (and kept when that
 * would not help), warm hits while the oldest request waits, per-uid limits, round-robin. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <systemd/sd-event.h>

#include "admission.h"
#include "macro.h"
#include "tests.h"

#define BIG_MB (1024u * 1024u)
#define VM_MB 256u
#define VM_CHARGE (VM_MB + SBX_VM_OVERHEAD_MB)

/* The mock pool: VMs of VM_MB, oldest first. */
#define POOL_MAX 8
typedef struct MockPool {
        Admission *a;
        AdmissionSlot vms[POOL_MAX];
        bool ready[POOL_MAX];
        unsigned evictions, dispatches;
} MockPool;

static MockPool pool;
static char started[256]; /* names of the started requests, in order */

static bool mock_evict_one(void *userdata, bool starting_only) {
        MockPool *p = userdata;
        int victim = -1;

        for (int i = 0; i < POOL_MAX && victim < 0; i++)
                if (admission_slot_held(&p->vms[i]) && !p->ready[i])
                        victim = i;
        for (int i = 0; i < POOL_MAX && victim < 0 && !starting_only; i++)
                if (admission_slot_held(&p->vms[i]))
                        victim = i;
        if (victim < 0)
                return false;
        admission_release(&p->vms[victim]);
        p->evictions++;
        return true;
}

static void mock_dispatched(void *userdata) {
        MockPool *p = userdata;
        p->dispatches++;
}

static const AdmissionOps mock_ops = {
        .evict_one = mock_evict_one,
        .dispatched = mock_dispatched,
};

static int pool_add(bool ready) {
        for (int i = 0; i < POOL_MAX; i++)
                if (!admission_slot_held(&pool.vms[i])) {
                        ASSERT_OK(admission_charge(pool.a, &pool.vms[i], ADMISSION_SLOT_POOL, (uid_t) -1, false, VM_MB,
                                                   NULL));
                        admission_slot_set_idle(&pool.vms[i], ready);
                        pool.ready[i] = ready;
                        return i;
                }
        TEST_FAIL("mock pool full");
}

static int pool_ready_vm(void) {
        for (int i = 0; i < POOL_MAX; i++)
                if (admission_slot_held(&pool.vms[i]) && pool.ready[i])
                        return i;
        return -1;
}

static unsigned pool_size(void) {
        unsigned n = 0;
        for (int i = 0; i < POOL_MAX; i++)
                n += admission_slot_held(&pool.vms[i]);
        return n;
}

/* A mock request: a run that takes a warm VM when it wants one and one is ready. */
typedef struct Req {
        AdmissionWaiter w;
        AdmissionSlot slot;
        const char *name;
        uid_t uid;
        bool exempt;
        uint32_t memory_mb;
        bool wants_warm, took_warm;
        bool started, failed;
        char why[ADMISSION_WHY_MAX];
} Req;

static void req_start(AdmissionWaiter *w) {
        Req *r = w->userdata;
        int vm = r->wants_warm ? pool_ready_vm() : -1;

        r->started = true;
        strcat(started, r->name);
        if (vm >= 0) {
                admission_slot_move(&r->slot, &pool.vms[vm], ADMISSION_SLOT_RUN, r->uid);
                pool.ready[vm] = false;
                r->took_warm = true;
        } else
                ASSERT_OK(admission_charge(pool.a, &r->slot, ADMISSION_SLOT_RUN, r->uid, r->exempt, r->memory_mb,
                                           r->why));
}

static void req_fail(AdmissionWaiter *w, const char *why) {
        Req *r = w->userdata;
        r->failed = true;
        snprintf(r->why, sizeof r->why, "%s", why);
}

static bool req_warm_available(AdmissionWaiter *w) {
        Req *r = w->userdata;
        return r->wants_warm && pool_ready_vm() >= 0;
}

static const AdmissionWaiterOps req_ops = {
        .start = req_start,
        .fail = req_fail,
        .warm_available = req_warm_available,
};

static int req_submit(Req *r, const char *name, uid_t uid, bool exempt, uint32_t memory_mb, bool warm) {
        *r = (Req) { .name = name, .uid = uid, .exempt = exempt, .memory_mb = memory_mb, .wants_warm = warm };
        admission_waiter_init(&r->w, &req_ops, r, uid, exempt, memory_mb);
        return admission_enqueue(pool.a, &r->w, r->why);
}

static void req_done(Req *r) {
        admission_cancel(&r->w);
        admission_release(&r->slot);
}

static sd_event *setup(uint32_t max_vms, uint64_t mem_mb, uint32_t queue_max, uint64_t timeout_usec,
                       uint32_t vms_per_uid, uint32_t sessions_per_uid) {
        AdmissionLimits limits = {
                .max_vms = max_vms,
                .mem_budget_mb = mem_mb,
                .queue_max = queue_max,
                .queue_timeout_usec = timeout_usec,
                .max_vms_per_uid = vms_per_uid,
                .max_sessions_per_uid = sessions_per_uid,
        };
        sd_event *e = NULL;

        ASSERT_OK(sd_event_new(&e));
        pool = (MockPool) {};
        started[0] = 0;
        ASSERT_OK(admission_new(e, &limits, &mock_ops, &pool, &pool.a));
        return e;
}

static void teardown(sd_event *e) {
        for (int i = 0; i < POOL_MAX; i++)
                admission_release(&pool.vms[i]);
        ASSERT_EQ(admission_n_active(pool.a), 0);
        ASSERT_EQ(admission_mem_used_mb(pool.a), 0);
        pool.a = admission_free(pool.a);
        sd_event_unref(e);
}

/* Runs what is due now: one dispatch pass at most per iteration. */
static void run_now(sd_event *e) {
        int r;
        while ((r = sd_event_run(e, 0)) > 0)
                ;
        ASSERT_OK(r);
}

/* Runs the loop until *flag, for at most two seconds. */
static void run_until(sd_event *e, const bool *flag) {
        for (int i = 0; i < 200 && !*flag; i++)
                ASSERT_OK(sd_event_run(e, 10000));
        ASSERT_TRUE(*flag);
}

static void test_fifo_deferred(void) {
        sd_event *e = setup(1, BIG_MB, 10, 10000000, 0, 0);
        Req r[3];

        ASSERT_OK(req_submit(&r[0], "1", 1000, false, VM_MB, false));
        ASSERT_OK(req_submit(&r[1], "2", 1000, false, VM_MB, false));
        ASSERT_OK(req_submit(&r[2], "3", 1000, false, VM_MB, false));
        /* Enqueueing only schedules: nothing starts from inside the call. */
        ASSERT_STREQ(started, "");
        ASSERT_EQ(admission_n_queued(pool.a), 3);
        run_now(e);
        ASSERT_STREQ(started, "1");
        ASSERT_EQ(admission_n_queued(pool.a), 2);
        ASSERT_EQ(admission_n_busy(pool.a), 1);
        ASSERT_TRUE(pool.dispatches >= 1); /* the pool refill hook ran */

        /* A release only schedules too. */
        req_done(&r[0]);
        ASSERT_STREQ(started, "1");
        run_now(e);
        ASSERT_STREQ(started, "12");
        req_done(&r[1]);
        run_now(e);
        ASSERT_STREQ(started, "123");
        ASSERT_EQ(admission_n_queued(pool.a), 0);
        req_done(&r[2]);
        ASSERT_EQ(admission_user_vms(pool.a, 1000), 0);
        teardown(e);
}

static void test_queue_full(void) {
        sd_event *e = setup(1, BIG_MB, 1, 10000000, 0, 0);
        Req r[3];

        ASSERT_OK(req_submit(&r[0], "1", 1000, false, VM_MB, false));
        run_now(e);
        ASSERT_TRUE(r[0].started);
        ASSERT_OK(req_submit(&r[1], "2", 1000, false, VM_MB, false));
        run_now(e);
        ASSERT_FALSE(r[1].started || r[1].failed);
        ASSERT_EQ(admission_n_queued(pool.a), 1);
        /* The queue holds one: the next is refused at once. */
        ASSERT_ERROR(req_submit(&r[2], "3", 1000, false, VM_MB, false), EBUSY);
        ASSERT_TRUE(strstr(r[2].why, "1 requests are already waiting") != NULL);
        ASSERT_FALSE(admission_waiter_queued(&r[2].w));
        for (int i = 0; i < 2; i++)
                req_done(&r[i]);
        teardown(e);

        /* No queue at all: two arrive together while there is room for one; the one that finds no
         * room in the dispatch pass gets Capacity from it. */
        e = setup(1, BIG_MB, 0, 10000000, 0, 0);
        ASSERT_OK(req_submit(&r[0], "1", 1000, false, VM_MB, false));
        ASSERT_OK(req_submit(&r[1], "2", 1001, false, VM_MB, false));
        run_now(e);
        ASSERT_TRUE(r[0].started);
        ASSERT_TRUE(r[1].failed);
        ASSERT_TRUE(strstr(r[1].why, "already waiting") != NULL);
        ASSERT_EQ(admission_n_queued(pool.a), 0);
        for (int i = 0; i < 2; i++)
                req_done(&r[i]);
        teardown(e);
}

static void test_queue_timeout(void) {
        sd_event *e = setup(1, BIG_MB, 10, 50000, 0, 0);
        Req r[2];

        ASSERT_OK(req_submit(&r[0], "1", 1000, false, VM_MB, false));
        ASSERT_OK(req_submit(&r[1], "2", 1000, false, VM_MB, false));
        run_now(e);
        ASSERT_TRUE(r[0].started);
        ASSERT_FALSE(r[1].failed);
        run_until(e, &r[1].failed);
        ASSERT_FALSE(r[1].started);
        ASSERT_STREQ(r[1].why, "No VM slot became free within 0.05 s (1 VMs running, 0 queued).");
        ASSERT_EQ(admission_n_queued(pool.a), 0);
        for (int i = 0; i < 2; i++)
                req_done(&r[i]);
        teardown(e);
}

static void test_pool_eviction(void) {
        /* Memory for three VMs, all held by ready pool VMs: a cold run stops the oldest. */
        sd_event *e = setup(4, 3 * VM_CHARGE, 10, 10000000, 0, 0);
        Req r[2];
        int vm0 = pool_add(true);
        pool_add(true);
        pool_add(true);

        ASSERT_EQ(admission_mem_used_mb(pool.a), 3 * VM_CHARGE);
        ASSERT_EQ(admission_n_busy(pool.a), 0);
        ASSERT_OK(req_submit(&r[0], "1", 1000, false, VM_MB, false));
        run_now(e);
        ASSERT_TRUE(r[0].started);
        ASSERT_EQ(pool.evictions, 1);
        ASSERT_FALSE(admission_slot_held(&pool.vms[vm0]));
        ASSERT_EQ(pool_size(), 2);

        /* One that would not fit even with every pool VM stopped leaves them alone and waits. */
        ASSERT_OK(req_submit(&r[1], "2", 1000, false, 4 * VM_MB, false));
        run_now(e);
        ASSERT_FALSE(r[1].started || r[1].failed);
        ASSERT_EQ(pool.evictions, 1);
        ASSERT_EQ(pool_size(), 2);
        for (int i = 0; i < 2; i++)
                req_done(&r[i]);
        teardown(e);

        /* Short of CPU: a booting pool VM (the only kind that holds a CPU share) is stopped. */
        e = setup(1, BIG_MB, 10, 10000000, 0, 0);
        vm0 = pool_add(false);
        ASSERT_FALSE(admission_cpu_free(pool.a));
        ASSERT_OK(req_submit(&r[0], "1", 1000, false, VM_MB, false));
        run_now(e);
        ASSERT_TRUE(r[0].started);
        ASSERT_FALSE(admission_slot_held(&pool.vms[vm0]));
        req_done(&r[0]);
        teardown(e);

        /* A ready pool VM holds no CPU share: it is not stopped for CPU, and a session charged
         * directly stops it only for memory. */
        e = setup(1, 2 * VM_CHARGE, 10, 10000000, 0, 0);
        vm0 = pool_add(true);
        ASSERT_TRUE(admission_cpu_free(pool.a));
        AdmissionSlot session = {};
        ASSERT_OK(admission_charge(pool.a, &session, ADMISSION_SLOT_SESSION, 1000, false, VM_MB, NULL));
        ASSERT_TRUE(admission_slot_held(&pool.vms[vm0]));
        admission_release(&session);
        ASSERT_OK(admission_charge(pool.a, &session, ADMISSION_SLOT_SESSION, 1000, false, 2 * VM_MB, NULL));
        ASSERT_FALSE(admission_slot_held(&pool.vms[vm0]));
        admission_release(&session);
        teardown(e);
}

static void test_warm_while_oldest_waits(void) {
        /* Memory for two VMs: another uid's run holds one, a ready pool VM the other. */
        sd_event *e = setup(4, 2 * VM_CHARGE, 10, 10000000, 0, 0);
        AdmissionSlot other = {};
        Req r[3];

        ASSERT_OK(admission_charge(pool.a, &other, ADMISSION_SLOT_RUN, 1, false, VM_MB, NULL));
        int vm = pool_add(true);
        /* The oldest needs more than the pool could free; the next takes the warm VM meanwhile. */
        ASSERT_OK(req_submit(&r[0], "1", 1000, false, 2 * VM_MB, false));
        ASSERT_OK(req_submit(&r[1], "2", 1000, false, VM_MB, true));
        ASSERT_OK(req_submit(&r[2], "3", 1000, false, VM_MB, false));
        run_now(e);
        ASSERT_STREQ(started, "2");
        ASSERT_TRUE(r[1].took_warm);
        ASSERT_FALSE(admission_slot_held(&pool.vms[vm]));
        ASSERT_EQ(pool.evictions, 0);
        ASSERT_EQ(admission_n_busy(pool.a), 2);
        ASSERT_EQ(admission_user_vms(pool.a, 1000), 1);
        /* A cold one behind the waiting oldest does not overtake it. */
        ASSERT_FALSE(r[2].started);
        ASSERT_EQ(admission_n_queued(pool.a), 2);

        /* Room comes back: the oldest first. */
        admission_release(&other);
        req_done(&r[1]);
        run_now(e);
        ASSERT_STREQ(started, "21");
        for (int i = 0; i < 3; i++)
                req_done(&r[i]);
        teardown(e);
}

static void test_user_limits(void) {
        sd_event *e = setup(8, BIG_MB, 10, 50000, 1, 1);
        AdmissionSlot s1 = {}, s2 = {}, s3 = {};
        char why[ADMISSION_WHY_MAX];
        Req a[3], b, x[2];

        ASSERT_TRUE(admission_has_user_limits(pool.a));
        ASSERT_OK(req_submit(&a[0], "a", 1000, false, VM_MB, false));
        ASSERT_OK(req_submit(&a[1], "A", 1000, false, VM_MB, false));
        ASSERT_OK(req_submit(&b, "b", 1001, false, VM_MB, false));
        /* Root (or admin_group) is exempt. */
        ASSERT_OK(req_submit(&x[0], "x", 0, true, VM_MB, false));
        ASSERT_OK(req_submit(&x[1], "X", 0, true, VM_MB, false));
        run_now(e);
        ASSERT_STREQ(started, "abxX");
        ASSERT_FALSE(a[1].started);
        ASSERT_EQ(admission_user_vms(pool.a, 1000), 1);
        ASSERT_EQ(admission_user_vms(pool.a, 0), 2);

        /* A session of a uid at its VM limit: Capacity naming the limit. */
        ASSERT_ERROR(admission_charge(pool.a, &s1, ADMISSION_SLOT_SESSION, 1000, false, VM_MB, why), EDQUOT);
        ASSERT_STREQ(why, "uid 1000 is at its limit of VMs at once (max_vms_per_uid = 1).");
        /* Sessions have their own limit. */
        ASSERT_OK(admission_charge(pool.a, &s1, ADMISSION_SLOT_SESSION, 1002, false, VM_MB, why));
        ASSERT_EQ(admission_user_sessions(pool.a, 1002), 1);
        ASSERT_ERROR(admission_charge(pool.a, &s2, ADMISSION_SLOT_SESSION, 1002, false, VM_MB, why), EDQUOT);
        ASSERT_STREQ(why, "uid 1002 is at its limit of open sessions (max_sessions_per_uid = 1).");
        ASSERT_OK(admission_charge(pool.a, &s2, ADMISSION_SLOT_SESSION, 0, true, VM_MB, why));
        ASSERT_OK(admission_charge(pool.a, &s3, ADMISSION_SLOT_SESSION, 0, true, VM_MB, why));

        /* The uid's second run waits for its first, then times out naming the limit. */
        run_until(e, &a[1].failed);
        ASSERT_STREQ(
                a[1].why,
                "No VM slot became free within 0.05 s: uid 1000 is at its limit of VMs at once (max_vms_per_uid = 1).");

        /* Once its first run is done, the next one starts. */
        ASSERT_OK(req_submit(&a[2], "c", 1000, false, VM_MB, false));
        run_now(e);
        ASSERT_FALSE(a[2].started);
        req_done(&a[0]);
        run_now(e);
        ASSERT_TRUE(a[2].started);

        for (int i = 0; i < 3; i++)
                req_done(&a[i]);
        req_done(&b);
        req_done(&x[0]);
        req_done(&x[1]);
        admission_release(&s1);
        admission_release(&s2);
        admission_release(&s3);
        ASSERT_EQ(admission_user_sessions(pool.a, 1002), 0);
        teardown(e);

        /* A full queue names the limit when that is what keeps the request out. */
        e = setup(8, BIG_MB, 0, 10000000, 1, 0);
        ASSERT_OK(req_submit(&a[0], "a", 1000, false, VM_MB, false));
        run_now(e);
        ASSERT_ERROR(req_submit(&a[1], "A", 1000, false, VM_MB, false), EBUSY);
        ASSERT_STREQ(
                a[1].why,
                "uid 1000 is at its limit of VMs at once (max_vms_per_uid = 1), and 0 requests are already waiting.");
        req_done(&a[0]);
        teardown(e);
}

static void test_round_robin(void) {
        sd_event *e = setup(1, BIG_MB, 10, 10000000, 0, 0);
        Req a[3], b[2], c;
        Req *order[] = {&a[0], &b[0], &c, &a[1], &b[1], &a[2]};

        ASSERT_OK(req_submit(&a[0], "a", 1000, false, VM_MB, false));
        ASSERT_OK(req_submit(&a[1], "a", 1000, false, VM_MB, false));
        ASSERT_OK(req_submit(&a[2], "a", 1000, false, VM_MB, false));
        run_now(e);
        /* uid 1000's burst waits; two other uids come later. */
        ASSERT_OK(req_submit(&b[0], "b", 1001, false, VM_MB, false));
        ASSERT_OK(req_submit(&b[1], "b", 1001, false, VM_MB, false));
        ASSERT_OK(req_submit(&c, "c", 1002, false, VM_MB, false));
        for (size_t i = 0; i < ELEMENTSOF(order); i++) {
                run_now(e);
                ASSERT_TRUE(order[i]->started);
                req_done(order[i]);
        }
        /* Strict FIFO would be aaabbc. */
        ASSERT_STREQ(started, "abcaba");
        teardown(e);
}

int main(void) {
        TEST(test_fifo_deferred);
        TEST(test_queue_full);
        TEST(test_queue_timeout);
        TEST(test_pool_eviction);
        TEST(test_warm_while_oldest_waits);
        TEST(test_user_limits);
        TEST(test_round_robin);
        return 0;
}
