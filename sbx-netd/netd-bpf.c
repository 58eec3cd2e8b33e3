/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "macro.h"
#include "netd-bpf.h"
#include "netd.skel.h"

struct NetdBpf {
        struct netd_bpf *skel;
        struct ring_buffer *rb;
        netd_bpf_event_fn fn;
        void *userdata;
};

int netd_bpf_load(uint16_t proxy_port, NetdBpf **ret) {
        _cleanup_free_ NetdBpf *b = calloc(1, sizeof *b);
        int r;

        if (!b)
                return -ENOMEM;
        b->skel = netd_bpf__open();
        if (!b->skel)
                return -errno ?: -EINVAL;
        b->skel->rodata->proxy_port = proxy_port;
        r = netd_bpf__load(b->skel);
        if (r < 0) {
                netd_bpf__destroy(b->skel);
                return r;
        }
        *ret = TAKE_PTR(b);
        return 0;
}

NetdBpf *netd_bpf_free(NetdBpf *b) {
        if (!b)
                return NULL;
        ring_buffer__free(b->rb);
        netd_bpf__destroy(b->skel);
        free(b);
        return NULL;
}

int netd_bpf_attach(NetdBpf *b, int cgroup_fd, struct bpf_link **links, size_t *n_links) {
        struct bpf_program *progs[NETD_BPF_N_PROGRAMS] = {
                b->skel->progs.netd_connect4, b->skel->progs.netd_connect6, b->skel->progs.netd_sendmsg4,
                b->skel->progs.netd_sendmsg6, b->skel->progs.netd_recvmsg4, b->skel->progs.netd_sockops,
                b->skel->progs.netd_egress,
        };

        *n_links = 0;
        for (size_t i = 0; i < NETD_BPF_N_PROGRAMS; i++) {
                struct bpf_link *l = bpf_program__attach_cgroup(progs[i], cgroup_fd);
                if (!l) {
                        int r = -errno ?: -EINVAL;
                        netd_bpf_detach(links, n_links);
                        return r;
                }
                links[(*n_links)++] = l;
        }
        return 0;
}

void netd_bpf_detach(struct bpf_link **links, size_t *n_links) {
        for (size_t i = 0; i < *n_links; i++) {
                (void) bpf_link__detach(links[i]);
                bpf_link__destroy(links[i]);
                links[i] = NULL;
        }
        *n_links = 0;
}

int netd_bpf_link_fd(struct bpf_link *link) {
        return bpf_link__fd(link);
}

int netd_bpf_vm_set(NetdBpf *b, uint64_t cgroup_id, const struct netd_vm *vm) {
        return bpf_map__update_elem(b->skel->maps.vms, &cgroup_id, sizeof cgroup_id, vm, sizeof *vm, BPF_ANY);
}

/* Deletes every key of map whose value (or key, for by_key) starts with cgroup_id (any, if
 * cgroup_id is 0 and expired_before is set: allow4 entries that expired before it). Keys are
 * collected first: deleting during get_next_key iteration would restart it. */
static void delete_matching(struct bpf_map *map, size_t key_size, size_t value_size, uint64_t cgroup_id, bool by_key,
                            uint64_t expired_before) {
        _cleanup_free_ uint8_t *keys = NULL;
        uint8_t key[32], cursor[32], value[64];
        size_t n = 0, cap = 0;
        void *prev = NULL;

        if (key_size > sizeof key || value_size > sizeof value)
                return;
        while (bpf_map__get_next_key(map, prev, key, key_size) == 0) {
                uint64_t owner = 0;
                bool match;

                if (by_key)
                        memcpy(&owner, key, sizeof owner);
                if ((!by_key || expired_before) && bpf_map__lookup_elem(map, key, key_size, value, value_size, 0) < 0)
                        goto next;
                if (!by_key)
                        memcpy(&owner, value, sizeof owner);
                if (expired_before) {
                        uint64_t expires;
                        memcpy(&expires, value, sizeof expires);
                        match = expires < expired_before;
                } else
                        match = owner == cgroup_id;
                if (match) {
                        if (n == cap) {
                                size_t nc = cap ? cap * 2 : 64;
                                uint8_t *k = realloc(keys, nc * key_size);
                                if (!k)
                                        break;
                                keys = k;
                                cap = nc;
                        }
                        memcpy(keys + n * key_size, key, key_size);
                        n++;
                }
        next:
                memcpy(cursor, key, key_size);
                prev = cursor;
        }
        for (size_t i = 0; i < n; i++)
                (void) bpf_map__delete_elem(map, keys + i * key_size, key_size, 0);
}

void netd_bpf_vm_remove(NetdBpf *b, uint64_t cgroup_id) {
        (void) bpf_map__delete_elem(b->skel->maps.vms, &cgroup_id, sizeof cgroup_id, 0);
        delete_matching(b->skel->maps.allow4, sizeof(struct netd_allow_key), sizeof(struct netd_allow_val), cgroup_id,
                        true, 0);
        delete_matching(b->skel->maps.exposed, sizeof(struct netd_expose_key), sizeof(uint8_t), cgroup_id, true, 0);
        delete_matching(b->skel->maps.sock_orig, sizeof(uint64_t), sizeof(struct netd_orig), cgroup_id, false, 0);
        delete_matching(b->skel->maps.proxy_orig, sizeof(uint32_t), sizeof(struct netd_orig), cgroup_id, false, 0);
}

int netd_bpf_expose(NetdBpf *b, uint64_t cgroup_id, uint16_t port, uint8_t protocol) {
        struct netd_expose_key k = {.cgroup_id = cgroup_id, .port = port, .protocol = protocol};
        uint8_t one = 1;

        return bpf_map__update_elem(b->skel->maps.exposed, &k, sizeof k, &one, sizeof one, BPF_ANY);
}

int netd_bpf_allow(NetdBpf *b, uint64_t cgroup_id, uint32_t addr, uint64_t expires_ns) {
        struct netd_allow_key k = {.cgroup_id = cgroup_id, .addr = addr};
        struct netd_allow_val v = {.expires_ns = expires_ns}, old;

        /* Never shorten what another answer already allowed. */
        if (bpf_map__lookup_elem(b->skel->maps.allow4, &k, sizeof k, &old, sizeof old, 0) == 0 &&
            old.expires_ns > expires_ns)
                return 0;
        return bpf_map__update_elem(b->skel->maps.allow4, &k, sizeof k, &v, sizeof v, BPF_ANY);
}

void netd_bpf_allow_gc(NetdBpf *b, uint64_t before) {
        delete_matching(b->skel->maps.allow4, sizeof(struct netd_allow_key), sizeof(struct netd_allow_val), 0, false,
                        before ?: 1);
}

int netd_bpf_admin_allow(NetdBpf *b, uint32_t addr, uint8_t prefixlen) {
        struct netd_lpm_key k = {.prefixlen = prefixlen, .addr = addr};
        uint8_t one = 1;

        return bpf_map__update_elem(b->skel->maps.admin_allow4, &k, sizeof k, &one, sizeof one, BPF_ANY);
}

int netd_bpf_take_proxy_orig(NetdBpf *b, uint16_t local_port, struct netd_orig *ret) {
        uint32_t k = local_port;
        int r;

        r = bpf_map__lookup_elem(b->skel->maps.proxy_orig, &k, sizeof k, ret, sizeof *ret, 0);
        if (r < 0)
                return r;
        (void) bpf_map__delete_elem(b->skel->maps.proxy_orig, &k, sizeof k, 0);
        return 0;
}

static int on_event(void *ctx, void *data, size_t size) {
        NetdBpf *b = ctx;

        if (size >= sizeof(struct netd_event))
                b->fn(data, b->userdata);
        return 0;
}

int netd_bpf_events_open(NetdBpf *b, netd_bpf_event_fn fn, void *userdata) {
        b->fn = fn;
        b->userdata = userdata;
        b->rb = ring_buffer__new(bpf_map__fd(b->skel->maps.events), on_event, b, NULL);
        return b->rb ? 0 : (-errno ?: -EINVAL);
}

int netd_bpf_events_fd(NetdBpf *b) {
        return ring_buffer__epoll_fd(b->rb);
}

int netd_bpf_events_consume(NetdBpf *b) {
        return ring_buffer__consume(b->rb);
}
