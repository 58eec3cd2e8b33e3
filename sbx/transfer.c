/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bus-names.h"
#include "bus-util.h"
#include "macro.h"
#include "network.h"
#include "transfer.h"

int sbx_call_sync(void *userdata, sd_bus_message *m, uint64_t usec, sd_bus_message **ret_reply,
                  sd_bus_error *ret_error) {
        (void) userdata;
        return sd_bus_call(sd_bus_message_get_bus(m), m, usec, ret_error, ret_reply);
}

const char *sbx_language_normalize(const char *s) {
        if (!s)
                return NULL;
        if (strcmp(s, "js") == 0 || strcmp(s, "typescript") == 0 || strcmp(s, "ts") == 0)
                return "javascript";
        if (strcmp(s, "bash") == 0 || strcmp(s, "sh") == 0)
                return "raw";
        return s;
}

int sbx_parse_u32(const char *s, const char *what, uint32_t *ret) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (errno || end == s || *end || v > UINT32_MAX || *s == '-') {
                fprintf(stderr, "sbx: invalid %s: %s\n", what, s);
                return -EINVAL;
        }
        *ret = (uint32_t) v;
        return 0;
}

int sbx_add_env_arg(char **env, size_t *n, size_t max, const char *arg) {
        if (!strchr(arg, '=')) {
                fprintf(stderr, "sbx: --env takes KEY=VALUE, got '%s'\n", arg);
                return -EINVAL;
        }
        if (*n >= max) {
                fprintf(stderr, "sbx: too many --env options\n");
                return -EINVAL;
        }
        env[(*n)++] = (char *) arg;
        return 0;
}

int sbx_append_env(sd_bus_message *m, char **env, size_t n) {
        int r;

        if (n == 0)
                return 0;
        r = sd_bus_message_open_container(m, 'e', "sv");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", "env");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'v', "a{ss}");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{ss}");
        for (size_t i = 0; r >= 0 && i < n; i++) {
                const char *eq = strchr(env[i], '=');
                _cleanup_free_ char *key = eq ? strndup(env[i], (size_t) (eq - env[i])) : NULL;
                if (!key)
                        return eq ? -ENOMEM : -EINVAL;
                r = sd_bus_message_append(m, "{ss}", key, eq + 1);
        }
        for (int k = 0; r >= 0 && k < 3; k++)
                r = sd_bus_message_close_container(m);
        return r;
}

int sbx_open_session_message(sd_bus *bus, const SessionOptions *o, sd_bus_message **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        r = sd_bus_message_new_method_call(bus, &m, SBX_BUS_NAME, SBX_BUS_PATH, SBX_BUS_IFACE, "OpenSession");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r >= 0)
                r = sd_bus_message_append(m, "{sv}", "language", "s", o->language ?: "python");
        if (r >= 0 && o->memory_mb > 0)
                r = sd_bus_message_append(m, "{sv}", "memory_mb", "u", o->memory_mb);
        if (r >= 0 && o->idle_timeout_s > 0)
                r = sd_bus_message_append(m, "{sv}", "idle_timeout_seconds", "u", o->idle_timeout_s);
        if (r >= 0)
                r = sbx_append_env(m, o->env, o->n_env);
        if (r >= 0 && o->net)
                r = sbx_append_network(m, o->net);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(m);
        return 0;
}

int sbx_exec_message(sd_bus *bus, const char *session, const char *code, uint32_t timeout_s, int out_fd,
                     int err_fd, sd_bus_message **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        r = sd_bus_message_new_method_call(bus, &m, SBX_BUS_NAME, session, SBX_SESSION_IFACE, "Exec");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", code);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r >= 0 && timeout_s > 0)
                r = sd_bus_message_append(m, "{sv}", "timeout_seconds", "u", timeout_s);
        if (r >= 0 && out_fd >= 0)
                r = sd_bus_message_append(m, "{sv}", "stdout_fd", "h", out_fd);
        if (r >= 0 && err_fd >= 0)
                r = sd_bus_message_append(m, "{sv}", "stderr_fd", "h", err_fd);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(m);
        return 0;
}

uint64_t sbx_exec_call_timeout(uint32_t timeout_s) {
        /* The broker's default per-exec timeout is not known here: assume the largest. */
        return ((uint64_t) (timeout_s > 0 ? timeout_s : 300u) + 300u) * 1000000u;
}

void sbx_session_close(sd_bus *bus, const char *session) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;

        if (!bus || !session)
                return;
        if (sd_bus_message_new_method_call(bus, &m, SBX_BUS_NAME, session, SBX_SESSION_IFACE, "Close") < 0)
                return;
        (void) sd_bus_call(bus, m, SBX_CLOSE_TIMEOUT_USEC, NULL, &reply);
}

int sbx_session_error_status(const sd_bus_error *e) {
        if (e && e->name &&
            sd_bus_error_has_names(e, SBX_ERROR_INVALID_PATH, SBX_ERROR_NOT_FOUND, SBX_ERROR_FILE_TOO_LARGE))
                return 2;
        return sbx_error_exit_status(e);
}

bool sbx_session_error_is_fatal(const sd_bus_error *e, int r) {
        if (e && e->name)
                return sd_bus_error_has_names(e, SBX_ERROR_SESSION_CLOSED, SD_BUS_ERROR_UNKNOWN_OBJECT,
                                              SD_BUS_ERROR_UNKNOWN_INTERFACE, SD_BUS_ERROR_UNKNOWN_METHOD,
                                              SD_BUS_ERROR_SERVICE_UNKNOWN, SD_BUS_ERROR_NAME_HAS_NO_OWNER,
                                              SD_BUS_ERROR_DISCONNECTED);
        /* No error name: the connection itself failed. */
        return r == -ECONNRESET || r == -ENOTCONN || r == -EPIPE || r == -ESHUTDOWN;
}

char *sbx_path_basename(const char *p) {
        size_t n = strlen(p);

        while (n > 0 && p[n - 1] == '/')
                n--;
        size_t start = n;
        while (start > 0 && p[start - 1] != '/')
                start--;
        if (n == start || (n - start == 1 && p[start] == '.') ||
            (n - start == 2 && p[start] == '.' && p[start + 1] == '.'))
                return NULL;
        return strndup(p + start, n - start);
}

int sbx_transfer_parse(const char *arg, bool upload, char **ret_first, char **ret_second) {
        const char *colon = strrchr(arg, ':');
        _cleanup_free_ char *first = NULL, *second = NULL;

        first = colon ? strndup(arg, (size_t) (colon - arg)) : strdup(arg);
        if (!first)
                return -ENOMEM;
        if (!*first)
                return -EINVAL;
        if (colon && colon[1]) {
                second = strdup(colon + 1);
                if (!second)
                        return -ENOMEM;
        } else if (upload) {
                if (strcmp(first, "-") == 0)
                        return -EINVAL; /* stdin has no name to take */
                second = sbx_path_basename(first);
                if (!second)
                        return -EINVAL;
        }
        *ret_first = TAKE_PTR(first);
        *ret_second = TAKE_PTR(second);
        return 0;
}

static void print_transfer_error(const char *what, const sd_bus_error *e, int r) {
        if (e && e->name && sd_bus_error_has_name(e, SBX_ERROR_NOT_FOUND) && strncmp(what, "upload ", 7) == 0)
                fprintf(stderr, "sbx: %s: the directory does not exist in the sandbox (uploads do not create "
                                "directories)\n", what);
        else if (e && e->name && sd_bus_error_has_name(e, SBX_ERROR_INVALID_PATH))
                fprintf(stderr, "sbx: %s: invalid path in the sandbox (paths are relative to the home directory, "
                                "without '..'): %s\n", what, e->message ?: "");
        else if (e && e->name && sd_bus_error_has_name(e, SBX_ERROR_NOT_FOUND))
                fprintf(stderr, "sbx: %s: no such file or directory in the sandbox%s%s\n", what,
                        e->message ? ": " : "", e->message ?: "");
        else if (e && e->name && sd_bus_error_has_name(e, SBX_ERROR_FILE_TOO_LARGE))
                fprintf(stderr, "sbx: %s: the file is larger than sessions allow (500 MiB)%s%s\n", what,
                        e->message ? ": " : "", e->message ?: "");
        else if (e && e->name && sd_bus_error_has_name(e, SBX_ERROR_FILE_IO))
                fprintf(stderr, "sbx: %s: the sandbox could not write or read the file (disk full?)%s%s\n", what,
                        e->message ? ": " : "", e->message ?: "");
        else if (e && e->name)
                fprintf(stderr, "sbx: %s: %s: %s\n", what, e->name, e->message ?: "(no message)");
        else
                fprintf(stderr, "sbx: %s: %s\n", what, strerror(-r));
}

static int call_and_report(SbxCallFn call, void *userdata, sd_bus_message *m, uint64_t usec, const char *what,
                           sd_bus_message **ret_reply, sd_bus_error *ret_error) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        fflush(stdout);
        r = call(userdata, m, usec, ret_reply, &error);
        if (r >= 0)
                return 0;
        print_transfer_error(what, &error, r);
        if (ret_error && error.name)
                sd_bus_error_copy(ret_error, &error);
        return error.name ? sbx_session_error_status(&error) : 1;
}

int sbx_upload(sd_bus *bus, SbxCallFn call, void *userdata, const char *session, const char *local,
               const char *guest, bool announce, sd_bus_error *ret_error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *what = NULL;
        struct stat st;
        int r;

        if (asprintf(&what, "upload %s → %s", local, guest) < 0)
                return 1;
        if (strcmp(local, "-") == 0)
                fd = fcntl(STDIN_FILENO, F_DUPFD_CLOEXEC, 3);
        else
                fd = open(local, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                fprintf(stderr, "sbx: %s: cannot open %s: %m\n", what, local);
                return 2;
        }
        if (fstat(fd, &st) < 0) {
                fprintf(stderr, "sbx: %s: %m\n", what);
                return 1;
        }
        if (S_ISDIR(st.st_mode)) {
                fprintf(stderr, "sbx: %s: is a directory (upload files one by one)\n", what);
                return 2;
        }
        if (!S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode) && !S_ISSOCK(st.st_mode)) {
                fprintf(stderr, "sbx: %s: not a regular file or a pipe\n", what);
                return 2;
        }

        r = sd_bus_message_new_method_call(bus, &m, SBX_BUS_NAME, session, SBX_SESSION_IFACE, "WriteFile");
        if (r >= 0)
                r = sd_bus_message_append(m, "sh", guest, fd);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r >= 0 && S_ISREG(st.st_mode)) /* keeps a script's executable bit */
                r = sd_bus_message_append(m, "{sv}", "mode", "u", (uint32_t) (st.st_mode & 0777));
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r < 0) {
                fprintf(stderr, "sbx: %s: cannot build the request: %s\n", what, strerror(-r));
                return 1;
        }
        fd = safe_close(fd); /* the message holds its own copy */
        r = call_and_report(call, userdata, m, SBX_TRANSFER_TIMEOUT_USEC, what, &reply, ret_error);
        if (r == 0 && announce) {
                if (S_ISREG(st.st_mode))
                        fprintf(stderr, "[uploaded %s → %s, %llu bytes]\n", local, guest,
                                (unsigned long long) st.st_size);
                else
                        fprintf(stderr, "[uploaded %s → %s]\n", local, guest);
        }
        return r;
}

typedef struct DownloadTarget {
        char *final;    /* where the file goes */
        char *dir;      /* its directory */
        char *tmp_path; /* named temporary file (fallback without O_TMPFILE), else NULL */
        int fd;
} DownloadTarget;

static void download_target_done(DownloadTarget *t) {
        if (t->tmp_path)
                (void) unlink(t->tmp_path);
        free(t->tmp_path);
        free(t->final);
        free(t->dir);
        safe_close(t->fd);
}

static char *temp_name(const DownloadTarget *t) {
        _cleanup_free_ char *base = sbx_path_basename(t->final);
        uint32_t rnd = 0;
        char *s;

        if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != sizeof rnd)
                rnd = (uint32_t) getpid() ^ (uint32_t) (uintptr_t) &rnd;
        if (asprintf(&s, "%s/.%s.sbx-%08x", t->dir, base ?: "download", rnd) < 0)
                return NULL;
        return s;
}

static int download_begin(const char *guest, const char *local, DownloadTarget *t) {
        _cleanup_free_ char *gbase = sbx_path_basename(guest);
        struct stat st;

        *t = (DownloadTarget) { .fd = -EBADF };
        if (!local) {
                if (!gbase) {
                        fprintf(stderr, "sbx: download %s: cannot derive a local file name; give one\n", guest);
                        return -EINVAL;
                }
                t->final = strdup(gbase);
        } else if (stat(local, &st) == 0 && S_ISDIR(st.st_mode)) {
                if (!gbase) {
                        fprintf(stderr, "sbx: download %s: cannot derive a file name inside %s\n", guest, local);
                        return -EINVAL;
                }
                if (asprintf(&t->final, "%s%s%s", local, local[strlen(local) - 1] == '/' ? "" : "/", gbase) < 0)
                        t->final = NULL;
        } else if (local[strlen(local) - 1] == '/') {
                fprintf(stderr, "sbx: download %s: no such directory: %s\n", guest, local);
                return -ENOENT;
        } else
                t->final = strdup(local);
        if (!t->final)
                return -ENOMEM;

        const char *slash = strrchr(t->final, '/');
        t->dir = !slash               ? strdup(".")
                 : slash == t->final ? strdup("/")
                                     : strndup(t->final, (size_t) (slash - t->final));
        if (!t->dir)
                return -ENOMEM;

        t->fd = open(t->dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0666);
        if (t->fd >= 0)
                return 0;
        if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) { /* other than "no O_TMPFILE here" */
                fprintf(stderr, "sbx: download %s: cannot create a file in %s: %m\n", guest, t->dir);
                return -errno;
        }

        /* No O_TMPFILE here: a named temporary file, removed on failure. */
        t->tmp_path = temp_name(t);
        if (!t->tmp_path)
                return -ENOMEM;
        t->fd = open(t->tmp_path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0666);
        if (t->fd < 0) {
                int e = errno;
                free(t->tmp_path);
                t->tmp_path = NULL;
                fprintf(stderr, "sbx: download %s: cannot create a file in %s: %s\n", guest, t->dir, strerror(e));
                return -e;
        }
        return 0;
}

static int download_commit(DownloadTarget *t) {
        char proc[64];

        if (t->tmp_path) {
                if (rename(t->tmp_path, t->final) < 0)
                        return -errno;
                free(t->tmp_path);
                t->tmp_path = NULL;
                return 0;
        }

        /* An unnamed file: link it straight in if the name is free, else beside it and rename over. */
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", t->fd);
        if (linkat(AT_FDCWD, proc, AT_FDCWD, t->final, AT_SYMLINK_FOLLOW) == 0)
                return 0;
        if (errno != EEXIST)
                return -errno;
        for (int attempt = 0; attempt < 16; attempt++) {
                _cleanup_free_ char *tmp = temp_name(t);
                if (!tmp)
                        return -ENOMEM;
                if (linkat(AT_FDCWD, proc, AT_FDCWD, tmp, AT_SYMLINK_FOLLOW) < 0) {
                        if (errno == EEXIST)
                                continue;
                        return -errno;
                }
                if (rename(tmp, t->final) < 0) {
                        int e = errno;
                        (void) unlink(tmp);
                        return -e;
                }
                return 0;
        }
        return -EEXIST;
}

int sbx_download(sd_bus *bus, SbxCallFn call, void *userdata, const char *session, const char *guest,
                 const char *local, bool announce, sd_bus_error *ret_error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_(download_target_done) DownloadTarget t = { .fd = -EBADF };
        _cleanup_free_ char *what = NULL;
        bool to_stdout = local && strcmp(local, "-") == 0;
        int r;

        if (!to_stdout) {
                r = download_begin(guest, local, &t);
                if (r < 0)
                        return r == -ENOMEM ? 1 : 2;
        }
        if (asprintf(&what, "download %s → %s", guest, to_stdout ? "stdout" : t.final) < 0)
                return 1;

        r = sd_bus_message_new_method_call(bus, &m, SBX_BUS_NAME, session, SBX_SESSION_IFACE, "ReadFile");
        if (r >= 0)
                r = sd_bus_message_append(m, "sh", guest, to_stdout ? STDOUT_FILENO : t.fd);
        if (r < 0) {
                fprintf(stderr, "sbx: %s: cannot build the request: %s\n", what, strerror(-r));
                return 1;
        }
        r = call_and_report(call, userdata, m, SBX_TRANSFER_TIMEOUT_USEC, what, &reply, ret_error);
        if (r != 0 || to_stdout)
                return r;
        r = download_commit(&t);
        if (r < 0) {
                fprintf(stderr, "sbx: %s: cannot put the file in place: %s\n", what, strerror(-r));
                return 1;
        }
        if (announce) {
                struct stat st;
                if (fstat(t.fd, &st) >= 0)
                        fprintf(stderr, "[downloaded %s → %s, %llu bytes]\n", guest, t.final,
                                (unsigned long long) st.st_size);
        }
        return 0;
}

typedef struct Entry {
        const char *name;
        int is_dir;
        uint64_t size;
} Entry;

static int entry_cmp(const void *a, const void *b) {
        return strcmp(((const Entry *) a)->name, ((const Entry *) b)->name);
}

int sbx_list_files(sd_bus *bus, SbxCallFn call, void *userdata, const char *session, const char *path,
                   sd_bus_error *ret_error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_free_ Entry *entries = NULL;
        _cleanup_free_ char *what = NULL;
        size_t n = 0, alloc = 0;
        Entry e;
        int r;

        if (asprintf(&what, "ls %s", *path ? path : "~") < 0)
                return 1;
        r = sd_bus_message_new_method_call(bus, &m, SBX_BUS_NAME, session, SBX_SESSION_IFACE, "ListFiles");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", path);
        if (r < 0)
                return 1;
        r = call_and_report(call, userdata, m, SBX_TRANSFER_TIMEOUT_USEC, what, &reply, ret_error);
        if (r != 0)
                return r;

        r = sd_bus_message_enter_container(reply, 'a', "(sbt)");
        while (r >= 0 && (r = sd_bus_message_read(reply, "(sbt)", &e.name, &e.is_dir, &e.size)) > 0) {
                if (n == alloc) {
                        Entry *b = reallocarray(entries, alloc ? alloc * 2 : 64, sizeof *b);
                        if (!b)
                                return 1;
                        entries = b;
                        alloc = alloc ? alloc * 2 : 64;
                }
                entries[n++] = e;
        }
        if (r < 0) {
                fprintf(stderr, "sbx: %s: unexpected reply: %s\n", what, strerror(-r));
                return 1;
        }
        if (n > 1)
                qsort(entries, n, sizeof *entries, entry_cmp);
        for (size_t i = 0; i < n; i++)
                if (entries[i].is_dir)
                        printf("%12s  %s/\n", "-", entries[i].name);
                else
                        printf("%12llu  %s\n", (unsigned long long) entries[i].size, entries[i].name);
        if (n == 0)
                fprintf(stderr, "(empty)\n");
        fflush(stdout);
        return 0;
}
