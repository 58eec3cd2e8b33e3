/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "admission.h"
#include "config.h"

typedef struct Job Job;
typedef struct Session Session;
typedef struct Pool Pool;

typedef struct Broker {
        sd_event *event;
        sd_bus *bus;
        SbxConfig config;
        char *config_path;     /* handed to spawned workers as SBX_CONFIG */
        SbxAccel accel;        /* resolved: kvm or tcg */
        uint32_t max_memory_mb; /* the most one request may ask for */
        Admission *admission;  /* the memory and CPU budget, per-uid limits, the queue */
        Pool *pool;
        Job *jobs_head, *jobs_tail; /* every live job, oldest first */
        Session *sessions_head, *sessions_tail;
        uint64_t next_id;
        uint64_t n_total, n_failed;
        uint64_t start_usec;
        gid_t admin_gid; /* (gid_t) -1: root only */
        /* Embedded mode: our sbx-cache child and its listening socket (cache-child.h). */
        pid_t cache_pid;
        int cache_listen_fd;
        sd_event_source *cache_restart;
        uint64_t cache_restarts;
} Broker;

int broker_new(const char *config_path, bool system_bus, Broker **ret);
Broker *broker_free(Broker *b);
int broker_run(Broker *b);

/* The uid of a method call's sender ((uid_t) -1 when the bus cannot tell). */
uid_t bus_sender_uid(sd_bus_message *m);
/* Root, or a member of the configured admin_group. */
bool bus_sender_is_admin(Broker *b, sd_bus_message *m);

/* broker-bus.c */
int broker_bus_setup(Broker *b);
/* session-bus.c: the session methods of org.sbx.Broker1 */
int method_open_session(sd_bus_message *m, void *userdata, sd_bus_error *error);
int method_list_sessions(sd_bus_message *m, void *userdata, sd_bus_error *error);
int method_close_session(sd_bus_message *m, void *userdata, sd_bus_error *error);
int session_bus_setup(Broker *b);
/* pool-bus.c: the warm pool methods of org.sbx.Broker1 */
int method_get_pool(sd_bus_message *m, void *userdata, sd_bus_error *error);
int method_set_pool_size(sd_bus_message *m, void *userdata, sd_bus_error *error);
/* accel.c: resolves config.accel (auto runs the worker's KVM probe, cached). */
int broker_resolve_accel(Broker *b);
