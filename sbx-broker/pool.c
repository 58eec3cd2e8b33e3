/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "fdio.h"
#include "job.h"
#include "log.h"
#include "macro.h"
#include "pool.h"
#include "list.h"
#include "result.h"
#include "validate.h"

/* Pool VMs booting at once: each keeps a core busy under TCG, and requests
 * come first. */
#define POOL_STARTING_MAX 2u
/* Execs before a pool VM counts as warm. Bun's second block still pays for
 * code its first one did not reach (about 100 ms under TCG), and a VM restored
 * from a snapshot starts with an empty TCG translation cache, which Bun's large
 * runtime takes several blocks to refill. */
static const unsigned warmup_execs[_SBX_LANG_MAX] = {
        [SBX_LANG_PYTHON] = 2,
        [SBX_LANG_JAVASCRIPT] = 6,
        [SBX_LANG_RAW] = 2,
};
/* The first exec starts the interpreter; it may take a while on a loaded host. */
#define POOL_WARMUP_TIMEOUT_MS 120000u
/* After a pool VM fails, wait before the next attempt: 1 s, doubling, at most this. */
#define POOL_BACKOFF_MAX_USEC (60u * 1000000u)

typedef struct PoolVm PoolVm;

struct PoolVm {
        Pool *pool;
        PoolVm *prev, *next;
        SbxLanguage language;
        PoolVmState state;
        unsigned warmups_left;
        WorkerLink worker;
        AdmissionSlot slot;
        uint64_t t_ready;
        PoolHit info;
};

struct Pool {
        Broker *broker;
        uint32_t target[_SBX_LANG_MAX];
        PoolVm *head, *tail; /* oldest first */
        PoolVm *dead;        /* unlinked, freed from a defer source: a frame handler may still run on them */
        sd_event_source *reaper;
        sd_event_source *retry;
        unsigned n_failures; /* in a row */
        uint64_t hits, misses;
        bool refilling;
};

/* Code that starts the interpreter and does nothing visible. */
static const char *const warmup_code[_SBX_LANG_MAX] = {
        /* Each takes its language's output path once; the pool drops the output. */
        [SBX_LANG_PYTHON] = "print(end='')\n",
        [SBX_LANG_JAVASCRIPT] = "console.log('');\n",
        [SBX_LANG_RAW] = "printf ''\n",
};

int pool_new(Broker *b, Pool **ret) {
        Pool *p = calloc(1, sizeof(Pool));
        if (!p)
                return -ENOMEM;
        p->broker = b;
        memcpy(p->target, b->config.warm_pool_size, sizeof p->target);
        *ret = p;
        return 0;
}

static int on_reap(sd_event_source *s, void *userdata) {
        Pool *p = userdata;
        (void) s;
        p->reaper = sd_event_source_disable_unref(p->reaper);
        while (p->dead) {
                PoolVm *vm = p->dead;
                p->dead = vm->next;
                free(vm);
        }
        return 0;
}

static void pool_vm_free(PoolVm *vm) {
        Pool *p = vm->pool;

        worker_link_release(&vm->worker, true);
        /* Queued work gets the room from the next dispatch pass. */
        admission_release(&vm->slot);
        LIST_REMOVE(p->head, p->tail, vm);
        vm->next = p->dead;
        p->dead = vm;
        if (!p->reaper && sd_event_add_defer(p->broker->event, &p->reaper, on_reap, p) < 0)
                /* No way to defer: the worker link is closed, so nothing refers to it any more
                 * except a frame handler up the stack, which stops on the closed fd. Leak it. */
                p->dead = vm->next;
}

Pool *pool_free(Pool *p) {
        if (!p)
                return NULL;
        while (p->head)
                pool_vm_free(p->head);
        p->reaper = sd_event_source_disable_unref(p->reaper);
        while (p->dead) {
                PoolVm *vm = p->dead;
                p->dead = vm->next;
                free(vm);
        }
        p->retry = sd_event_source_disable_unref(p->retry);
        free(p);
        return NULL;
}

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        Pool *p = userdata;
        (void) s;
        (void) usec;
        p->retry = sd_event_source_disable_unref(p->retry);
        pool_refill(p);
        return 0;
}

/* A pool VM that fails to come up is dropped; refills back off so a broken
 * image does not turn into a boot loop. */
static void pool_vm_failed(PoolVm *vm, const char *why) {
        Pool *p = vm->pool;
        uint64_t delay;

        log_warning("Warm pool: a %s VM failed: %s", sbx_language_to_string(vm->language), why);
        pool_vm_free(vm);
        p->n_failures = MIN(p->n_failures + 1, 16u);
        delay = MIN((uint64_t) 1000000u << (p->n_failures - 1), (uint64_t) POOL_BACKOFF_MAX_USEC);
        if (!p->retry)
                (void) sd_event_add_time_relative(p->broker->event, &p->retry, CLOCK_MONOTONIC, delay, 0, on_retry,
                                                  p);
}

static int pool_vm_send_warmup(PoolVm *vm) {
        const char *code = warmup_code[vm->language];
        return worker_send_exec(&vm->worker, 1, code, strlen(code), POOL_WARMUP_TIMEOUT_MS, NULL, 0);
}

static int on_pool_vm_frame(void *userdata, uint8_t type, const uint8_t *p, size_t n) {
        PoolVm *vm = userdata;
        int r;

        switch (type) {
        case SBX_W_SESSION_READY: {
                WorkerReady ready;
                if (vm->state != POOL_VM_BOOTING)
                        return -EBADMSG;
                r = worker_ready_parse(p, n, &ready);
                if (r < 0)
                        return r;
                vm->info.boot_ms = ready.boot_ms;
                vm->info.setup_ms = ready.setup_ms;
                vm->info.qemu_pid = ready.qemu_pid;
                vm->info.restored = ready.restored;
                vm->state = POOL_VM_WARMING;
                vm->warmups_left = warmup_execs[vm->language];
                return pool_vm_send_warmup(vm);
        }
        case SBX_W_OUTPUT:
                /* The warm-up prints nothing; whatever the image's interpreter says at start is not a run's. */
                return vm->state == POOL_VM_WARMING ? 0 : -EBADMSG;
        case SBX_W_RESULT: {
                _cleanup_(run_result_done) RunResult res = {};
                if (vm->state != POOL_VM_WARMING)
                        return -EBADMSG;
                r = run_result_parse(&res, p, n);
                if (r < 0)
                        return r;
                if (res.exit_code != 0 || res.timed_out) {
                        pool_vm_failed(vm, "the interpreter did not start");
                        return 0;
                }
                if (--vm->warmups_left > 0)
                        return pool_vm_send_warmup(vm);
                vm->state = POOL_VM_READY;
                admission_slot_set_idle(&vm->slot, true);
                vm->t_ready = now_usec(CLOCK_MONOTONIC);
                vm->pool->n_failures = 0;
                log_debug("Warm pool: a %s VM is ready (boot %" PRIu64 " ms%s).",
                          sbx_language_to_string(vm->language), vm->info.boot_ms,
                          vm->info.restored ? ", from a snapshot" : "");
                pool_refill(vm->pool);
                return 0;
        }
        case SBX_W_ERROR: {
                _cleanup_free_ char *msg = NULL;
                uint32_t kind;
                r = worker_error_parse(p, n, &kind, &msg);
                if (r < 0)
                        return r;
                pool_vm_failed(vm, msg ?: "the worker reported an error");
                return 0;
        }
        default:
                return -EBADMSG;
        }
}

static void on_pool_vm_lost(void *userdata, int error, bool protocol) {
        PoolVm *vm = userdata;
        (void) error;
        pool_vm_failed(vm, protocol ? "protocol error from the VM worker" : "the VM worker exited");
}

static int pool_vm_start(Pool *p, SbxLanguage language) {
        Broker *b = p->broker;
        PoolVm *vm;
        int r;

        vm = calloc(1, sizeof(PoolVm));
        if (!vm)
                return -ENOMEM;
        vm->pool = p;
        vm->language = language;
        vm->state = POOL_VM_BOOTING;
        worker_link_init(&vm->worker);
        LIST_APPEND(p->head, p->tail, vm);

        r = admission_charge(b->admission, &vm->slot, ADMISSION_SLOT_POOL, (uid_t) -1, false,
                             b->config.default_memory_mb, NULL);
        if (r >= 0)
                r = worker_link_start(&vm->worker, b, on_pool_vm_frame, on_pool_vm_lost, vm);
        /* Refills restore the L1 snapshot when there is one: cheap, and the restored VMs share the
         * snapshot's unchanged pages. */
        if (r >= 0)
                r = worker_send_session_open(&vm->worker, ++b->next_id, language, b->config.default_memory_mb, NULL,
                                             true, b->config.snapshots);
        if (r < 0) {
                /* With back-off, like a VM that fails later: the freed room must not start it again at once. */
                log_warning_errno(r, "Warm pool: failed to start a %s VM: %m", sbx_language_to_string(language));
                pool_vm_failed(vm, "its worker did not start");
                return r;
        }
        return 0;
}

static void pool_count(const Pool *p, SbxLanguage language, uint32_t *ret_ready, uint32_t *ret_starting) {
        uint32_t ready = 0, starting = 0;
        for (const PoolVm *vm = p->head; vm; vm = vm->next) {
                if (language >= 0 && vm->language != language)
                        continue;
                if (vm->state == POOL_VM_READY)
                        ready++;
                else
                        starting++;
        }
        *ret_ready = ready;
        *ret_starting = starting;
}

/* Stops the oldest ready VM of a language that has at least two. */
static bool pool_evict_surplus(Pool *p) {
        for (PoolVm *vm = p->head; vm; vm = vm->next) {
                uint32_t r_l, s_l;
                if (vm->state != POOL_VM_READY)
                        continue;
                pool_count(p, vm->language, &r_l, &s_l);
                if (r_l + s_l >= 2) {
                        pool_vm_free(vm);
                        return true;
                }
        }
        return false;
}

void pool_refill(Pool *p) {
        Broker *b;

        if (!p || p->refilling || p->retry)
                return;
        b = p->broker;
        /* Requests waiting for room come first. */
        if (admission_n_queued(b->admission) > 0)
                return;
        p->refilling = true;
        for (bool started = true; started;) {
                uint32_t ready, starting;

                started = false;
                pool_count(p, -1, &ready, &starting);
                if (starting >= POOL_STARTING_MAX)
                        break;
                /* The language furthest below its target first, so a budget too small for every
                 * target still gives each language its share rather than filling the first. */
                int best = -1;
                double best_fill = 2.0;
                for (int l = 0; l < _SBX_LANG_MAX; l++) {
                        uint32_t r_l, s_l;
                        pool_count(p, l, &r_l, &s_l);
                        if (r_l + s_l >= p->target[l])
                                continue;
                        double fill = (double) (r_l + s_l) / (double) p->target[l];
                        if (fill < best_fill) {
                                best_fill = fill;
                                best = l;
                        }
                }
                if (best < 0)
                        break;
                /* A language with no VM at all may take one from a language that has two or more. */
                if (!admission_fits(b->admission, b->config.default_memory_mb) &&
                    !(best_fill == 0.0 && admission_cpu_free(b->admission) && pool_evict_surplus(p) &&
                      admission_fits(b->admission, b->config.default_memory_mb)))
                        break;
                if (pool_vm_start(p, best) < 0)
                        break;
                started = true;
        }
        p->refilling = false;
}

/* The oldest ready VM that a run of this language and memory may take now, or NULL. */
static PoolVm *pool_find_ready(const Pool *p, SbxLanguage language, uint32_t memory_mb) {
        if (!p || memory_mb != p->broker->config.default_memory_mb || !admission_cpu_free(p->broker->admission))
                return NULL;
        for (PoolVm *vm = p->head; vm; vm = vm->next)
                if (vm->state == POOL_VM_READY && vm->language == language)
                        return vm;
        return NULL;
}

bool pool_take(Pool *p, SbxLanguage language, uint32_t memory_mb, WorkerLink *dst, AdmissionSlot *dst_slot, uid_t uid,
               worker_frame_handler_t on_frame, worker_lost_handler_t on_lost, void *userdata, PoolHit *ret_hit) {
        PoolVm *vm = pool_find_ready(p, language, memory_mb);

        if (!vm)
                return false;
        *ret_hit = vm->info;
        ret_hit->idle_ms = (now_usec(CLOCK_MONOTONIC) - vm->t_ready) / 1000u;
        worker_link_move(dst, &vm->worker, on_frame, on_lost, userdata);
        /* Busy from now on, and the run's uid's. */
        admission_slot_move(dst_slot, &vm->slot, ADMISSION_SLOT_RUN, uid);
        pool_vm_free(vm); /* the link and the slot are empty now: only the entry goes */
        p->hits++;
        return true;
}

bool pool_has_ready(const Pool *p, SbxLanguage language, uint32_t memory_mb) {
        return pool_find_ready(p, language, memory_mb) != NULL;
}

void pool_count_miss(Pool *p) {
        if (p)
                p->misses++;
}

bool pool_evict_one(Pool *p, bool starting_only) {
        PoolVm *victim = NULL;

        if (!p)
                return false;
        /* A booting VM is the furthest from being useful, and the only kind that uses the CPU. */
        for (PoolVm *vm = p->head; vm && !victim; vm = vm->next)
                if (vm->state != POOL_VM_READY)
                        victim = vm;
        if (!victim && !starting_only)
                victim = p->head;
        if (!victim)
                return false;
        log_debug("Warm pool: stopping a %s VM to make room for a request.", sbx_language_to_string(victim->language));
        pool_vm_free(victim);
        return true;
}

int pool_set_target(Pool *p, SbxLanguage language, uint32_t size) {
        uint32_t ready, starting;

        if (language < 0 || language >= _SBX_LANG_MAX)
                return -EINVAL;
        p->target[language] = size;
        /* Shrink now: stop the extra VMs of that language, booting ones first. */
        pool_count(p, language, &ready, &starting);
        while (ready + starting > size) {
                PoolVm *victim = NULL;
                for (PoolVm *vm = p->head; vm; vm = vm->next)
                        if (vm->language == language && (!victim || vm->state != POOL_VM_READY))
                                victim = vm;
                if (!victim)
                        break;
                pool_vm_free(victim);
                pool_count(p, language, &ready, &starting);
        }
        p->retry = sd_event_source_disable_unref(p->retry);
        p->n_failures = 0;
        /* Queued requests first, then the refill to the new size. */
        admission_schedule(p->broker->admission);
        return 0;
}

void pool_get_counts(const Pool *p, SbxLanguage language, uint32_t *ret_target, uint32_t *ret_ready,
                     uint32_t *ret_starting) {
        *ret_target = p->target[language];
        pool_count(p, language, ret_ready, ret_starting);
}

void pool_get_stats(const Pool *p, uint64_t *ret_hits, uint64_t *ret_misses) {
        *ret_hits = p->hits;
        *ret_misses = p->misses;
}

size_t pool_list(const Pool *p, PoolVmInfo *out, size_t max) {
        size_t n = 0;
        for (const PoolVm *vm = p ? p->head : NULL; vm; vm = vm->next, n++)
                if (n < max)
                        out[n] = (PoolVmInfo) {
                                .language = vm->language,
                                .state = vm->state,
                                .qemu_pid = vm->info.qemu_pid,
                                .worker_pid = vm->worker.pid,
                        };
        return n;
}

const char *pool_vm_state_to_string(PoolVmState s) {
        static const char *const names[] = {
                [POOL_VM_BOOTING] = "booting",
                [POOL_VM_WARMING] = "warming",
                [POOL_VM_READY] = "ready",
        };
        return s <= POOL_VM_READY ? names[s] : "unknown";
}
