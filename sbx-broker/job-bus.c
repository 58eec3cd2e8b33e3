/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus-names.h"
#include "fdio.h"
#include "job.h"
#include "log.h"
#include "macro.h"
#include "validate.h"

static Job *job_from_path(Broker *b, const char *path) {
        const char *p;
        char *end;

        if (strncmp(path, SBX_JOB_PREFIX "/_", strlen(SBX_JOB_PREFIX "/_")) != 0)
                return NULL;
        p = path + strlen(SBX_JOB_PREFIX "/_");
        if (*p < '0' || *p > '9')
                return NULL;
        errno = 0;
        unsigned long long id = strtoull(p, &end, 10);
        if (errno || *end)
                return NULL;
        return broker_find_job(b, id);
}

static int job_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata, void **found,
                           sd_bus_error *error) {
        (void) bus;
        (void) interface;
        (void) error;
        Job *j = job_from_path(userdata, path);
        if (!j)
                return 0;
        *found = j;
        return 1;
}

static int job_node_enumerator(sd_bus *bus, const char *path, void *userdata, char ***nodes, sd_bus_error *error) {
        Broker *b = userdata;
        size_t n = 0, i = 0;
        char **l;
        (void) bus;
        (void) path;
        (void) error;

        for (Job *j = b->jobs_head; j; j = j->next)
                n++;
        l = calloc(n + 1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        for (Job *j = b->jobs_head; j; j = j->next) {
                l[i] = strdup(j->path);
                if (!l[i]) {
                        for (size_t k = 0; k < i; k++)
                                free(l[k]);
                        free(l);
                        return -ENOMEM;
                }
                i++;
        }
        *nodes = l;
        return 1;
}

/* Owners manage their own jobs; root manages all. */
static int job_check_owner(Job *j, sd_bus_message *m, sd_bus_error *error) {
        uid_t uid = bus_sender_uid(m);

        if ((uid != (uid_t) -1 && uid == j->owner_uid) || bus_sender_is_admin(j->broker, m))
                return 0;
        return sd_bus_error_setf(error, SBX_ERROR_ACCESS_DENIED, "Job %" PRIu64 " belongs to another user.", j->id);
}

static int method_cancel(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Job *j = userdata;
        int r = job_check_owner(j, m, error);
        if (r < 0)
                return r;
        job_cancel(j, "cancelled by request");
        return sd_bus_reply_method_return(m, NULL);
}

static int property_state(sd_bus *bus, const char *path, const char *interface, const char *property,
                          sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Job *j = userdata;
        (void) bus;
        (void) path;
        (void) interface;
        (void) property;
        (void) error;
        return sd_bus_message_append(reply, "s", job_state_to_string(j->state));
}

static int property_language(sd_bus *bus, const char *path, const char *interface, const char *property,
                             sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Job *j = userdata;
        (void) bus;
        (void) path;
        (void) interface;
        (void) property;
        (void) error;
        return sd_bus_message_append(reply, "s", sbx_language_to_string(j->req.language) ?: "");
}

static int property_ports(sd_bus *bus, const char *path, const char *interface, const char *property,
                          sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Job *j = userdata;
        (void) bus;
        (void) path;
        (void) interface;
        (void) property;
        (void) error;
        return port_mappings_append(reply, &j->exec.result.ports);
}

static const sd_bus_vtable job_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Id", "t", NULL, offsetof(Job, id), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("State", "s", property_state, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Language", "s", property_language, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        /* protocol, port in the VM, port on the host's 127.0.0.1, URL; known once the VM runs */
        SD_BUS_PROPERTY("Ports", "a(sqqs)", property_ports, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_METHOD("Cancel", "", "", method_cancel, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_NAMES("Output", "say", SD_BUS_PARAM(stream) SD_BUS_PARAM(data), 0),
        SD_BUS_SIGNAL_WITH_NAMES("Finished", "a{sv}", SD_BUS_PARAM(result), 0),
        SD_BUS_VTABLE_END,
};

int job_bus_setup(Broker *b) {
        int r;

        r = sd_bus_add_fallback_vtable(b->bus, NULL, SBX_JOB_PREFIX, SBX_JOB_IFACE, job_vtable, job_object_find, b);
        if (r < 0)
                return r;
        return sd_bus_add_node_enumerator(b->bus, NULL, SBX_JOB_PREFIX, job_node_enumerator, b);
}

/* Output and Finished carry the caller's data, so they go only to the caller (unicast). */
static int job_new_signal(Job *j, const char *member, sd_bus_message **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        r = sd_bus_message_new_signal(j->broker->bus, &m, j->path, SBX_JOB_IFACE, member);
        if (r < 0)
                return r;
        if (j->owner && *j->owner) {
                r = sd_bus_message_set_destination(m, j->owner);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(m);
        return 0;
}

int job_emit_output(Job *j, SbxStream stream, const void *data, size_t n) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        r = job_new_signal(j, "Output", &m);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "s", stream == SBX_STREAM_STDOUT ? "stdout" : "stderr");
        if (r < 0)
                return r;
        r = sd_bus_message_append_array(m, 'y', data, n);
        if (r < 0)
                return r;
        return sd_bus_send(j->broker->bus, m, NULL);
}

int job_emit_finished(Job *j) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        r = job_new_signal(j, "Finished", &m);
        if (r < 0)
                return r;
        r = job_append_result(j, m);
        if (r < 0)
                return r;
        return sd_bus_send(j->broker->bus, m, NULL);
}

void job_emit_state_changed(Job *j) {
        int r = sd_bus_emit_properties_changed(j->broker->bus, j->path, SBX_JOB_IFACE, "State", NULL);
        if (r < 0)
                log_debug_errno(r, "Failed to emit PropertiesChanged for job %" PRIu64 ": %m", j->id);
}

static int append_str(sd_bus_message *m, const char *key, const char *v) {
        return sd_bus_message_append(m, "{sv}", key, "s", v);
}

static int append_u64(sd_bus_message *m, const char *key, uint64_t v) {
        return sd_bus_message_append(m, "{sv}", key, "t", v);
}

#define MS(usec) ((usec) / 1000u)

int job_append_result(Job *j, sd_bus_message *m) {
        uint64_t total = (j->t_done ?: now_usec(CLOCK_MONOTONIC)) - j->t_created;
        uint64_t queued = j->t_started ? j->t_started - j->t_created : 0;
        int r;

        r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        if (j->error_name) {
                if ((r = append_str(m, "error", j->error_name)) < 0 ||
                    (r = append_str(m, "error_message", j->error_message ?: "")) < 0)
                        return r;
        } else {
                r = exec_append_result(&j->exec, m, sbx_accel_to_string(j->broker->accel));
                if (r < 0)
                        return r;
        }
        if ((r = append_u64(m, "timing_total_ms", MS(total))) < 0 ||
            (r = append_u64(m, "timing_queue_ms", MS(queued))) < 0 || (r = append_u64(m, "job_id", j->id)) < 0)
                return r;
        return sd_bus_message_close_container(m);
}
