/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "fdio.h"
#include "log.h"
#include "macro.h"
#include "pool.h"
#include "list.h"
#include "validate.h"
#include "vm.h"

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
        Vm vm;
        Exec warmup; /* the warm-up exec in flight; its output is dropped */
        AdmissionSlot slot;
        uint64_t t_ready;
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

        vm_release(&vm->vm, true);
        exec_done(&vm->warmup);
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

static void pool_vm_send_warmup(PoolVm *vm) {
        const char *code = warmup_code[vm->language];

        exec_done(&vm->warmup);
        if (vm_exec(&vm->vm, &vm->warmup, 1, code, strlen(code), POOL_WARMUP_TIMEOUT_MS, NULL, 0) < 0)
                pool_vm_failed(vm, "the warm-up could not be sent");
}

static void on_pool_vm_ready(Vm *v, void *userdata) {
        PoolVm *vm = userdata;
        (void) v;
        vm->state = POOL_VM_WARMING;
        vm->warmups_left = warmup_execs[vm->language];
        pool_vm_send_warmup(vm);
}

/* A warm-up exec ended: the next one, or the VM is ready. */
static void on_warmup_complete(Exec *e, void *userdata) {
        PoolVm *vm = userdata;

        if (e->result.exit_code != 0 || e->result.timed_out) {
                pool_vm_failed(vm, "the interpreter did not start");
                return;
        }
        if (--vm->warmups_left > 0) {
                pool_vm_send_warmup(vm);
                return;
        }
        exec_done(e);
        vm->state = POOL_VM_READY;
        admission_slot_set_idle(&vm->slot, true);
        vm->t_ready = now_usec(CLOCK_MONOTONIC);
        vm->pool->n_failures = 0;
        log_debug("Warm pool: a %s VM is ready (boot %" PRIu64 " ms%s).", sbx_language_to_string(vm->language),
                  vm->vm.info.boot_ms, vm->vm.info.restored ? ", from a snapshot" : "");
        pool_refill(vm->pool);
}

static void on_pool_vm_lost(Vm *v, const char *error_name, const char *message, void *userdata) {
        (void) v;
        (void) error_name;
        pool_vm_failed(userdata, message);
}

static const VmOps pool_vm_ops = {
        .on_ready = on_pool_vm_ready,
        .on_lost = on_pool_vm_lost,
};

/* The warm-up prints nothing; whatever the interpreter says at start is not a run's. */
static const ExecOps warmup_exec_ops = {
        .on_complete = on_warmup_complete,
};

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
        vm_init(&vm->vm);
        exec_init(&vm->warmup, b->event, "Warm pool", &warmup_exec_ops, vm);
        LIST_APPEND(p->head, p->tail, vm);

        r = admission_charge(b->admission, &vm->slot, ADMISSION_SLOT_POOL, (uid_t) -1, false,
                             b->config.default_memory_mb, NULL);
        /* Refills restore the L1 snapshot when there is one: cheap, and the restored VMs share the
         * snapshot's unchanged pages. */
        if (r >= 0)
                r = vm_open(&vm->vm, b, ++b->next_id, language, b->config.default_memory_mb, NULL, true,
                            b->config.snapshots, false, &pool_vm_ops, vm);
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

bool pool_take(Pool *p, SbxLanguage language, uint32_t memory_mb, Vm *dst, AdmissionSlot *dst_slot, uid_t uid,
               const VmOps *ops, void *userdata) {
        PoolVm *vm = pool_find_ready(p, language, memory_mb);

        if (!vm)
                return false;
        log_debug("Warm pool: a run takes a %s VM that waited %" PRIu64 " ms.", sbx_language_to_string(language),
                  (now_usec(CLOCK_MONOTONIC) - vm->t_ready) / 1000u);
        vm_move(dst, &vm->vm, ops, userdata);
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
                                .qemu_pid = vm->vm.info.qemu_pid,
                                .worker_pid = vm_worker_pid(&vm->vm),
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
