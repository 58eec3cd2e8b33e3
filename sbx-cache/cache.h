/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* sbx-cache: the daemon that owns the L1 snapshot cache (docs/snapshots.md). */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <systemd/sd-event.h>

#include "frame.h"
#include "framed-conn.h"
#include "snapshot-store.h"

#define CACHE_MAX_ALLOW_UIDS 8
#define CACHE_MAX_BUILDS 64
#define CACHE_MAX_CONNECTIONS 512
/* Replies a client may leave unread, and for how long, before it is dropped. */
#define CACHE_CONN_OUT_MAX (4u * 1024u * 1024u)
#define CACHE_CONN_STALL_USEC (10u * 1000000u)

typedef struct Cache Cache;
typedef struct Conn Conn;

/* A key some worker is building: reserved by K_BUILD, then ingested by a child process. */
typedef struct Build {
        char key[SNAPSHOT_KEY_SIZE];
        Conn *owner; /* NULL once the owner disconnected (an ingest goes on) */
        pid_t pid;   /* the ingest child, 0 before INSERT */
        uint32_t memory_mb;
        sd_event_source *child;
} Build;

struct Conn {
        Cache *cache;
        FramedConn conn; /* replies are queued: a client that stops reading never blocks the daemon */
        uid_t uid;
        bool may_use;  /* root or an allowed uid: LOOKUP, INSERT, BAD, LIST */
        bool is_admin; /* root or a member of the admin group: also PURGE, VERIFY */
        Build *build;  /* the key this connection may INSERT */
        Conn *next, *prev;
};

struct Cache {
        sd_event *event;
        SnapshotStore store;
        int lock_fd;
        uint64_t max_bytes;
        uid_t allow_uids[CACHE_MAX_ALLOW_UIDS];
        size_t n_allow_uids;
        gid_t admin_gid;
        bool have_admin_gid;
        int listen_fd;
        sd_event_source *listen_io;
        Conn *conns, *conns_tail;
        size_t n_conns;
        Build builds[CACHE_MAX_BUILDS];
        uint64_t n_hits, n_builds, n_refused;
};

int cache_listen_start(Cache *c);
void cache_done(Cache *c);
