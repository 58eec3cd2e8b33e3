/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "bus-names.h"
#include "log.h"
#include "macro.h"
#include "session.h"
#include "validate.h"

/* A session belongs to the uid that opened it; root may touch any. */
int session_check_owner(Session *s, sd_bus_message *m, sd_bus_error *error) {
        uid_t uid = bus_sender_uid(m);
        if ((uid != (uid_t) -1 && uid == s->owner_uid) || bus_sender_is_admin(s->broker, m))
                return 0;
        log_notice("Refused uid %d access to session %s (owner uid %d).", (int) uid, s->path, (int) s->owner_uid);
        return sd_bus_error_setf(error, SBX_ERROR_ACCESS_DENIED, "Session %s belongs to another user.", s->path);
}

void session_emit_changed(Session *s, const char *property) {
        (void) sd_bus_emit_properties_changed(s->broker->bus, s->path, SBX_SESSION_IFACE, property, NULL);
}

void session_emit_output(Session *s, const char *destination, SbxStream stream, const void *data, size_t n) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        if (!destination)
                return;
        r = sd_bus_message_new_signal(s->broker->bus, &m, s->path, SBX_SESSION_IFACE, "Output");
        if (r >= 0)
                r = sd_bus_message_set_destination(m, destination);
        if (r >= 0)
                r = sd_bus_message_append(m, "s", stream == SBX_STREAM_STDOUT ? "stdout" : "stderr");
        if (r >= 0)
                r = sd_bus_message_append_array(m, 'y', data, n);
        if (r >= 0)
                r = sd_bus_send(s->broker->bus, m, NULL);
        if (r < 0)
                log_debug_errno(r, "Failed to emit Output for %s: %m", s->path);
}

static int session_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata, void **found,
                               sd_bus_error *error) {
        (void) bus;
        (void) interface;
        (void) error;
        Session *s = broker_find_session(userdata, path);
        if (!s)
                return 0;
        *found = s;
        return 1;
}

static int session_node_enumerator(sd_bus *bus, const char *path, void *userdata, char ***nodes,
                                   sd_bus_error *error) {
        Broker *b = userdata;
        size_t n = 0, i = 0;
        char **l;
        (void) bus;
        (void) path;
        (void) error;

        for (Session *s = b->sessions_head; s; s = s->next)
                n++;
        l = calloc(n + 1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        for (Session *s = b->sessions_head; s; s = s->next)
                if (!(l[i++] = strdup(s->path))) {
                        for (size_t k = 0; k < i; k++)
                                free(l[k]);
                        free(l);
                        return -ENOMEM;
                }
        *nodes = l;
        return 1;
}

/* Common checks; returns 0 when the call may proceed. */
static int session_precheck(Session *s, sd_bus_message *m, sd_bus_error *error) {
        int r = session_check_owner(s, m, error);
        if (r < 0)
                return r;
        if (s->closed)
                return sd_bus_error_set(error, SBX_ERROR_SESSION_CLOSED, "The session is closed.");
        return 0;
}

static SessionOp *session_op_new(SessionOpKind kind, sd_bus_message *m) {
        SessionOp *op = calloc(1, sizeof(SessionOp));
        if (!op)
                return NULL;
        op->kind = kind;
        op->fd = -EBADF;
        op->mode = 0644;
        request_init(&op->req, 0);
        op->call = sd_bus_message_ref(m);
        return op;
}

static int enqueue_or_free(Session *s, SessionOp *op, sd_bus_error *error) {
        int r = session_enqueue(s, op, error);
        if (r < 0) {
                session_op_free(op);
                return r;
        }
        return 1; /* replied when it ran */
}

static int method_exec(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Session *s = userdata;
        const char *code;
        SessionOp *op;
        int r;

        r = session_precheck(s, m, error);
        if (r < 0)
                return r;
        r = sd_bus_message_read(m, "s", &code);
        if (r < 0)
                return r;
        op = session_op_new(SESSION_OP_EXEC, m);
        if (!op)
                return -ENOMEM;
        r = request_apply_string(&op->req, "code", code, error);
        if (r >= 0)
                r = request_read(m, &op->req, REQ_KEYS_EXEC | REQ_CODE, 0, error);
        if (r < 0) {
                session_op_free(op);
                return r;
        }
        return enqueue_or_free(s, op, error);
}

static int read_path(sd_bus_message *m, bool allow_empty, char **ret, sd_bus_error *error) {
        const char *path, *reason = NULL;
        int r = sd_bus_message_read(m, "s", &path);
        if (r < 0)
                return r;
        if (sbx_validate_path(path, allow_empty, &reason) < 0)
                return sd_bus_error_setf(error, SBX_ERROR_INVALID_PATH, "Invalid path: %s.", reason);
        *ret = strdup(path);
        return *ret ? 0 : -ENOMEM;
}

static int file_op(sd_bus_message *m, Session *s, SessionOpKind kind, sd_bus_error *error) {
        SessionOp *op;
        int fd, r;

        r = session_precheck(s, m, error);
        if (r < 0)
                return r;
        op = session_op_new(kind, m);
        if (!op)
                return -ENOMEM;
        r = read_path(m, kind == SESSION_OP_LIST, &op->path, error);
        if (r >= 0 && kind != SESSION_OP_LIST) {
                r = sd_bus_message_read(m, "h", &fd);
                if (r >= 0) {
                        op->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
                        if (op->fd < 0)
                                r = sd_bus_error_set_errnof(error, errno, "Failed to take the fd: %m");
                }
        }
        if (r >= 0 && kind == SESSION_OP_WRITE) {
                /* options: mode (u) */
                r = sd_bus_message_enter_container(m, 'a', "{sv}");
                while (r >= 0) {
                        const char *key;
                        r = sd_bus_message_enter_container(m, 'e', "sv");
                        if (r <= 0)
                                break;
                        r = sd_bus_message_read(m, "s", &key);
                        if (r >= 0 && strcmp(key, "mode") == 0) {
                                r = sd_bus_message_read(m, "v", "u", &op->mode);
                                if (r >= 0 && (op->mode & ~0777u))
                                        r = sd_bus_error_setf(error, SBX_ERROR_INVALID_INPUT,
                                                              "mode must be permission bits (0-0777).");
                        } else if (r >= 0)
                                r = sd_bus_error_setf(error, SBX_ERROR_INVALID_INPUT,
                                                      "Unknown WriteFile option '%.64s' (known: mode).", key);
                        if (r >= 0)
                                r = sd_bus_message_exit_container(m);
                }
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
        }
        if (r < 0) {
                session_op_free(op);
                return r;
        }
        return enqueue_or_free(s, op, error);
}

static int method_write_file(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return file_op(m, userdata, SESSION_OP_WRITE, error);
}

static int method_read_file(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return file_op(m, userdata, SESSION_OP_READ, error);
}

static int method_list_files(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return file_op(m, userdata, SESSION_OP_LIST, error);
}

/* Ctrl-C for the running Exec: its reply still comes, with what the code printed and its exit code
 * (Python keeps the session's state: the code gets KeyboardInterrupt). True if one was running. */
static int method_interrupt(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Session *s = userdata;
        int r;

        r = session_precheck(s, m, error);
        if (r < 0)
                return r;
        r = vm_interrupt(&s->vm);
        if (r < 0)
                return sd_bus_error_set_errnof(error, -r, "Failed to reach the session's VM: %m");
        return sd_bus_reply_method_return(m, "b", r > 0);
}

static int method_close(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Session *s = userdata;
        int r = session_check_owner(s, m, error);
        if (r < 0)
                return r;
        session_close(s, "closed by its owner");
        return sd_bus_reply_method_return(m, NULL);
}

static int property_language(sd_bus *bus, const char *path, const char *interface, const char *property,
                             sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Session *s = userdata;
        (void) bus;
        (void) path;
        (void) interface;
        (void) property;
        (void) error;
        return sd_bus_message_append(reply, "s", sbx_language_to_string(s->options.language) ?: "");
}

static int property_closed(sd_bus *bus, const char *path, const char *interface, const char *property,
                           sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Session *s = userdata;
        (void) bus;
        (void) path;
        (void) interface;
        (void) property;
        (void) error;
        return sd_bus_message_append(reply, "b", (int) s->closed);
}

static int property_ports(sd_bus *bus, const char *path, const char *interface, const char *property,
                          sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Session *s = userdata;
        (void) bus;
        (void) path;
        (void) interface;
        (void) property;
        (void) error;
        return port_mappings_append(reply, &s->vm.info.ports);
}

static const sd_bus_vtable session_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Language", "s", property_language, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("ExecCount", "u", NULL, offsetof(Session, exec_count), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("IdleTimeoutSeconds", "u", NULL, offsetof(Session, options.idle_timeout_s),
                        SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Closed", "b", property_closed, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        /* protocol, port in the VM, port on the host's 127.0.0.1, URL (expose_ports) */
        SD_BUS_PROPERTY("Ports", "a(sqqs)", property_ports, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_METHOD_WITH_NAMES("Exec", "sa{sv}", SD_BUS_PARAM(code) SD_BUS_PARAM(options), "a{sv}",
                                 SD_BUS_PARAM(result), method_exec, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("WriteFile", "sha{sv}", SD_BUS_PARAM(path) SD_BUS_PARAM(fd) SD_BUS_PARAM(options),
                                 "", , method_write_file, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("ReadFile", "sh", SD_BUS_PARAM(path) SD_BUS_PARAM(fd), "", , method_read_file,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("ListFiles", "s", SD_BUS_PARAM(path), "a(sbt)", SD_BUS_PARAM(entries),
                                 method_list_files, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("Interrupt", "", , "b", SD_BUS_PARAM(was_running), method_interrupt,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Close", "", "", method_close, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_NAMES("Output", "say", SD_BUS_PARAM(stream) SD_BUS_PARAM(data), 0),
        SD_BUS_VTABLE_END,
};

int session_bus_setup(Broker *b) {
        int r = sd_bus_add_fallback_vtable(b->bus, NULL, SBX_SESSION_PREFIX, SBX_SESSION_IFACE, session_vtable,
                                           session_object_find, b);
        if (r < 0)
                return r;
        return sd_bus_add_node_enumerator(b->bus, NULL, SBX_SESSION_PREFIX, session_node_enumerator, b);
}

/* org.sbx.Broker1 methods about sessions */

int method_open_session(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return session_open(userdata, m, error);
}

int method_list_sessions(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Broker *b = userdata;
        uid_t uid;
        int r;
        (void) error;

        uid = bus_sender_uid(m);
        bool admin = bus_sender_is_admin(b, m);
        r = sd_bus_message_new_method_return(m, &reply);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "(ossuutb)");
        /* Users see their own sessions; administrators see all. */
        for (Session *s = b->sessions_head; r >= 0 && s; s = s->next)
                if (admin || uid == s->owner_uid)
                        r = sd_bus_message_append(reply, "(ossuutb)", s->path,
                                                  sbx_language_to_string(s->options.language) ?: "", s->owner,
                                                  (uint32_t) s->owner_uid, s->exec_count, s->created_realtime_usec,
                                                  (int) s->closed);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

int method_close_session(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Broker *b = userdata;
        const char *path;
        Session *s;
        int r;

        r = sd_bus_message_read(m, "o", &path);
        if (r < 0)
                return r;
        s = broker_find_session(b, path);
        if (!s)
                return sd_bus_error_setf(error, SBX_ERROR_NOT_FOUND, "No session %s.", path);
        r = session_check_owner(s, m, error);
        if (r < 0)
                return r;
        session_close(s, "closed by an administrator");
        return sd_bus_reply_method_return(m, NULL);
}
