/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bus-names.h"
#include "bus-util.h"
#include "macro.h"
#include "proto.h"
#include "run.h"
#include "network.h"
#include "transfer.h"

#define MAX_SOURCES 64
#define MAX_TRANSFERS 64

typedef struct Source {
        char *code;
        const char *language; /* NULL: python */
        const char *label;
        /* concurrent mode */
        int out_pipe[2], err_pipe[2];
        char *out_line, *err_line; /* partial line carried between reads */
        size_t out_line_len, err_line_len;
        sd_bus_slot *slot;
        sd_bus_message *reply;
        sd_bus_error error;
        bool done;
} Source;

typedef struct RunOptions {
        const char *language;
        uint32_t timeout_s, memory_mb;
        char **env;
        size_t n_env;
        bool json, quiet;
        bool cold; /* --cold: no warm pool VM, no snapshot */
        SbxNetworkOptions net;
} RunOptions;

static const char *language_from_path(const char *path) {
        const char *dot = strrchr(path, '.');
        if (!dot)
                return NULL;
        if (strcmp(dot, ".py") == 0)
                return "python";
        if (strcmp(dot, ".js") == 0 || strcmp(dot, ".ts") == 0 || strcmp(dot, ".mjs") == 0 ||
            strcmp(dot, ".cjs") == 0 || strcmp(dot, ".tsx") == 0 || strcmp(dot, ".jsx") == 0)
                return "javascript";
        if (strcmp(dot, ".sh") == 0 || strcmp(dot, ".bash") == 0)
                return "raw";
        return NULL;
}

static int read_all(int fd, char **ret) {
        size_t len = 0, alloc = 0;
        char *buf = NULL;

        for (;;) {
                if (alloc - len < 65536) {
                        if (alloc > SBX_CODE_MAX + 65536u) {
                                free(buf);
                                return -E2BIG;
                        }
                        char *b = realloc(buf, alloc + 65536 + 1);
                        if (!b) {
                                free(buf);
                                return -ENOMEM;
                        }
                        buf = b;
                        alloc += 65536;
                }
                ssize_t n = read(fd, buf + len, alloc - len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        free(buf);
                        return -errno;
                }
                if (n == 0)
                        break;
                len += (size_t) n;
        }
        buf[len] = 0;
        if (strlen(buf) != len) {
                free(buf);
                return -EILSEQ; /* the broker would refuse a NUL byte anyway; say so early */
        }
        *ret = buf;
        return 0;
}

static int source_from_arg(const char *arg, Source *s) {
        struct stat st;
        int r;

        *s = (Source) { .out_pipe = { -EBADF, -EBADF }, .err_pipe = { -EBADF, -EBADF }, .label = arg };
        if (strcmp(arg, "-") == 0) {
                r = read_all(STDIN_FILENO, &s->code);
                s->label = "stdin";
                return r;
        }
        if (stat(arg, &st) == 0 && S_ISREG(st.st_mode)) {
                _cleanup_close_ int fd = open(arg, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        return -errno;
                s->language = language_from_path(arg);
                return read_all(fd, &s->code);
        }
        s->code = strdup(arg);
        s->label = "code";
        return s->code ? 0 : -ENOMEM;
}

static int build_request(sd_bus *bus, const RunOptions *o, const Source *s, int out_fd, int err_fd,
                         sd_bus_message **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        const char *lang = o->language ?: s->language ?: "python";
        int r;

        r = sd_bus_message_new_method_call(bus, &m, SBX_BUS_NAME, SBX_BUS_PATH, SBX_BUS_IFACE, "Run");
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "{sv}{sv}{sv}", "code", "s", s->code, "language", "s", lang,
                                  "timeout_seconds", "u", o->timeout_s);
        if (r >= 0 && o->memory_mb)
                r = sd_bus_message_append(m, "{sv}", "memory_mb", "u", o->memory_mb);
        if (r >= 0 && o->cold)
                r = sd_bus_message_append(m, "{sv}{sv}", "warm_pool", "b", 0, "snapshot", "b", 0);
        if (r >= 0 && out_fd >= 0)
                r = sd_bus_message_append(m, "{sv}{sv}", "stdout_fd", "h", out_fd, "stderr_fd", "h", err_fd);
        if (r >= 0)
                r = sbx_append_env(m, o->env, o->n_env);
        if (r >= 0)
                r = sbx_append_network(m, &o->net);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(m);
        return 0;
}

static int32_t result_exit_code(sd_bus_message *reply) {
        int32_t code = 1;
        if (sbx_dict_find(reply, "exit_code", "i") > 0)
                (void) sd_bus_message_read(reply, "i", &code);
        return code;
}

static uint64_t result_u64(sd_bus_message *reply, const char *key) {
        uint64_t v = 0;
        if (sbx_dict_find(reply, key, "t") > 0)
                (void) sd_bus_message_read(reply, "t", &v);
        return v;
}

static bool result_bool(sd_bus_message *reply, const char *key) {
        int v = 0;
        if (sbx_dict_find(reply, key, "b") > 0)
                (void) sd_bus_message_read(reply, "b", &v);
        return v;
}

static const char *result_str(sd_bus_message *reply, const char *key) {
        const char *v = NULL;
        if (sbx_dict_find(reply, key, "s") > 0)
                (void) sd_bus_message_read(reply, "s", &v);
        return v;
}

static int exit_status_of(int32_t code) {
        if (code == -1)
                return 124; /* like timeout(1) */
        if (code < 0 || code > 255)
                return 1;
        return code;
}

static void print_summary(sd_bus_message *reply, const char *prefix) {
        int32_t code = result_exit_code(reply);
        char boot[64] = "", total[64] = "", tier[32] = "";
        const char *t = result_str(reply, "snapshot_tier");
        if (t && strcmp(t, "cold") != 0)
                snprintf(tier, sizeof tier, " · %s", strcmp(t, "warm") == 0 ? "warm pool" : "L1 snapshot");
        /* A session's Exec has no boot of its own (and reports 0 for it and for the total). */
        if (result_u64(reply, "timing_boot_ms") > 0)
                snprintf(boot, sizeof boot, " · boot %llu ms",
                         (unsigned long long) result_u64(reply, "timing_boot_ms"));
        if (result_u64(reply, "timing_total_ms") > 0)
                snprintf(total, sizeof total, " · total %llu ms",
                         (unsigned long long) result_u64(reply, "timing_total_ms"));
        fprintf(stderr, "%ssbx: exit %d%s%s · exec %llu ms%s · %s%s%s%s\n", prefix, code, tier, boot,
                (unsigned long long) result_u64(reply, "execution_time_ms"), total, result_str(reply, "accel") ?: "?",
                result_bool(reply, "stdout_truncated") ? " · stdout truncated" : "",
                result_bool(reply, "stderr_truncated") ? " · stderr truncated" : "",
                result_bool(reply, "state_reset") ? " · state reset" : "");
}

static void print_json(sd_bus_message *reply) {
        (void) sd_bus_message_rewind(reply, true);
        if (sbx_json_write_value(reply, stdout) < 0)
                fputs("null", stdout);
}

static void print_json_error(const char *name, const char *message) {
        printf("{\"error\":\"%s\",\"error_message\":", name ?: "error");
        fputc('"', stdout);
        for (const char *p = message ?: ""; *p; p++)
                if (*p == '"' || *p == '\\')
                        printf("\\%c", *p);
                else if ((unsigned char) *p >= 0x20)
                        fputc(*p, stdout);
        puts("\"}");
}

static void print_error(const sd_bus_error *e, const char *prefix) {
        fprintf(stderr, "%ssbx: %s: %s\n", prefix, e->name ?: "error", e->message ?: "(no message)");
}

static uint64_t call_timeout_usec(const RunOptions *o) {
        /* Queueing and boot come on top of the code's own timeout. */
        return ((uint64_t) o->timeout_s + 300u) * 1000000u;
}

static int run_single(sd_bus *bus, const RunOptions *o, Source *s) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        /* Output streams straight from the broker into our own stdout and stderr. */
        r = build_request(bus, o, s, o->json ? -1 : STDOUT_FILENO, STDERR_FILENO, &m);
        if (r < 0) {
                fprintf(stderr, "sbx: failed to build the request: %s\n", strerror(-r));
                return 1;
        }
        fflush(stdout);
        r = sd_bus_call(bus, m, call_timeout_usec(o), &error, &reply);
        if (r < 0) {
                if (o->json)
                        print_json_error(error.name, error.message);
                print_error(&error, "");
                return sbx_error_exit_status(&error);
        }
        if (o->json) {
                print_json(reply);
                fputc('\n', stdout);
        } else if (!o->quiet && isatty(STDERR_FILENO))
                print_summary(reply, "");
        return exit_status_of(result_exit_code(reply));
}

static int on_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Source *s = userdata;
        (void) ret_error;
        s->done = true;
        if (sd_bus_message_is_method_error(reply, NULL))
                sd_bus_error_copy(&s->error, sd_bus_message_get_error(reply));
        else
                s->reply = sd_bus_message_ref(reply);
        return 0;
}

/* Prints complete lines with a [N] prefix; keeps the partial last line for later. */
static void emit_lines(FILE *f, int idx, char **carry, size_t *carry_len, const char *data, size_t n, bool flush) {
        char *b = realloc(*carry, *carry_len + n + 1);
        if (!b)
                return;
        memcpy(b + *carry_len, data, n);
        *carry_len += n;
        b[*carry_len] = 0;
        *carry = b;

        size_t start = 0;
        for (size_t i = 0; i < *carry_len; i++)
                if (b[i] == '\n') {
                        fprintf(f, "[%d] %.*s\n", idx, (int) (i - start), b + start);
                        start = i + 1;
                }
        if (flush && start < *carry_len) {
                fprintf(f, "[%d] %.*s\n", idx, (int) (*carry_len - start), b + start);
                start = *carry_len;
        }
        memmove(b, b + start, *carry_len - start);
        *carry_len -= start;
        fflush(f);
}

static void drain_pipe(Source *s, int idx, bool is_err, bool flush) {
        int fd = is_err ? s->err_pipe[0] : s->out_pipe[0];
        char buf[65536];

        for (;;) {
                ssize_t n = read(fd, buf, sizeof buf);
                if (n <= 0)
                        break;
                if (is_err)
                        emit_lines(stderr, idx, &s->err_line, &s->err_line_len, buf, (size_t) n, false);
                else
                        emit_lines(stdout, idx, &s->out_line, &s->out_line_len, buf, (size_t) n, false);
        }
        if (flush) {
                if (is_err)
                        emit_lines(stderr, idx, &s->err_line, &s->err_line_len, "", 0, true);
                else
                        emit_lines(stdout, idx, &s->out_line, &s->out_line_len, "", 0, true);
        }
}

static int run_concurrent(sd_bus *bus, const RunOptions *o, Source *src, size_t n) {
        int status = 0, r;

        for (size_t i = 0; i < n; i++) {
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
                if (!o->json) {
                        if (pipe2(src[i].out_pipe, O_CLOEXEC | O_NONBLOCK) < 0 ||
                            pipe2(src[i].err_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
                                perror("sbx: pipe");
                                return 1;
                        }
                }
                r = build_request(bus, o, &src[i], o->json ? -1 : src[i].out_pipe[1], src[i].err_pipe[1], &m);
                if (r >= 0)
                        r = sd_bus_call_async(bus, &src[i].slot, m, on_reply, &src[i], call_timeout_usec(o));
                if (r < 0) {
                        fprintf(stderr, "sbx: failed to send request %zu: %s\n", i + 1, strerror(-r));
                        return 1;
                }
                /* sd-bus holds its own copy until the message is sent. */
                src[i].out_pipe[1] = safe_close(src[i].out_pipe[1]);
                src[i].err_pipe[1] = safe_close(src[i].err_pipe[1]);
        }

        for (;;) {
                size_t pending = 0;
                for (size_t i = 0; i < n; i++)
                        pending += !src[i].done;
                if (pending == 0)
                        break;

                r = sd_bus_process(bus, NULL);
                if (r < 0) {
                        fprintf(stderr, "sbx: lost the bus connection: %s\n", strerror(-r));
                        return 1;
                }
                if (r > 0)
                        continue;

                struct pollfd p[1 + 2 * MAX_SOURCES];
                size_t k = 0;
                p[k++] = (struct pollfd) { .fd = sd_bus_get_fd(bus), .events = (short) sd_bus_get_events(bus) };
                for (size_t i = 0; i < n && !o->json; i++) {
                        p[k++] = (struct pollfd) { .fd = src[i].out_pipe[0], .events = POLLIN };
                        p[k++] = (struct pollfd) { .fd = src[i].err_pipe[0], .events = POLLIN };
                }
                if (poll(p, k, 1000) < 0 && errno != EINTR)
                        return 1;
                for (size_t i = 0; i < n && !o->json; i++) {
                        drain_pipe(&src[i], (int) i + 1, false, false);
                        drain_pipe(&src[i], (int) i + 1, true, false);
                }
        }

        if (o->json)
                fputc('[', stdout);
        for (size_t i = 0; i < n; i++) {
                int st;
                if (!o->json) {
                        /* The broker wrote everything before replying. */
                        drain_pipe(&src[i], (int) i + 1, false, true);
                        drain_pipe(&src[i], (int) i + 1, true, true);
                }
                if (src[i].reply) {
                        st = exit_status_of(result_exit_code(src[i].reply));
                        if (o->json) {
                                if (i > 0)
                                        fputc(',', stdout);
                                print_json(src[i].reply);
                        } else if (!o->quiet && isatty(STDERR_FILENO)) {
                                char prefix[32];
                                snprintf(prefix, sizeof prefix, "[%zu] ", i + 1);
                                print_summary(src[i].reply, prefix);
                        }
                } else {
                        char prefix[32];
                        snprintf(prefix, sizeof prefix, "[%zu] ", i + 1);
                        print_error(&src[i].error, prefix);
                        if (o->json) {
                                if (i > 0)
                                        fputc(',', stdout);
                                printf("{\"error\":\"%s\"}", src[i].error.name ?: "error");
                        }
                        st = sbx_error_exit_status(&src[i].error);
                }
                if (status == 0)
                        status = st;
        }
        if (o->json)
                puts("]");
        return status;
}

typedef struct Transfers {
        char *first[MAX_TRANSFERS], *second[MAX_TRANSFERS]; /* upload: local, guest; download: guest, local */
        size_t n;
} Transfers;

static void transfers_done(Transfers *t) {
        for (size_t i = 0; i < t->n; i++) {
                free(t->first[i]);
                free(t->second[i]);
        }
        t->n = 0;
}

static int transfers_add(Transfers *t, const char *arg, bool upload) {
        int r;

        if (t->n >= MAX_TRANSFERS) {
                fprintf(stderr, "sbx: at most %d --%s options\n", MAX_TRANSFERS, upload ? "upload" : "download");
                return -E2BIG;
        }
        r = sbx_transfer_parse(arg, upload, &t->first[t->n], &t->second[t->n]);
        if (r == -EINVAL)
                fprintf(stderr, upload ? "sbx: --upload takes LOCAL[:GUEST] (LOCAL names a file), got '%s'\n"
                                       : "sbx: --download takes GUEST[:LOCAL], got '%s'\n",
                        arg);
        if (r < 0)
                return r;
        t->n++;
        return 0;
}

/* --upload/--download: OpenSession, WriteFile each upload, Exec, ReadFile each download, Close. */
static int run_in_session(sd_bus *bus, const RunOptions *o, Source *s, const Transfers *up, const Transfers *down) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL, *result = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        SessionOptions so = {
                .language = o->language ?: s->language ?: "python",
                .memory_mb = o->memory_mb,
                .env = o->env,
                .n_env = o->n_env,
                .net = &o->net,
        };
        _cleanup_free_ char *session = NULL;
        const char *path;
        int r, status;

        r = sbx_open_session_message(bus, &so, &m);
        if (r < 0) {
                fprintf(stderr, "sbx: failed to build the request: %s\n", strerror(-r));
                return 1;
        }
        r = sd_bus_call(bus, m, SBX_OPEN_SESSION_TIMEOUT_USEC, &error, &reply);
        if (r < 0) {
                if (o->json)
                        print_json_error(error.name, error.message);
                if (error.name && sd_bus_error_has_name(&error, SD_BUS_ERROR_UNKNOWN_METHOD))
                        fprintf(stderr, "sbx: this broker has no sessions, needed for --upload/--download (%s)\n",
                                error.message ?: "");
                else
                        print_error(&error, "");
                return error.name ? sbx_session_error_status(&error) : 1;
        }
        if (sd_bus_message_read(reply, "o", &path) < 0 || !(session = strdup(path))) {
                fprintf(stderr, "sbx: unexpected reply to OpenSession\n");
                return 1;
        }
        m = sd_bus_message_unref(m);

        for (size_t i = 0; i < up->n; i++) {
                status = sbx_upload(bus, sbx_call_sync, NULL, session, up->first[i], up->second[i], false, &error);
                if (status != 0) {
                        if (o->json)
                                print_json_error(error.name ?: "upload", error.message ?: "the upload failed");
                        goto finish;
                }
        }

        r = sbx_exec_message(bus, session, s->code, o->timeout_s, o->json ? -1 : STDOUT_FILENO,
                             o->json ? -1 : STDERR_FILENO, &m);
        if (r < 0) {
                fprintf(stderr, "sbx: failed to build the request: %s\n", strerror(-r));
                status = 1;
                goto finish;
        }
        fflush(stdout);
        r = sd_bus_call(bus, m, sbx_exec_call_timeout(o->timeout_s), &error, &result);
        if (r < 0) {
                if (o->json)
                        print_json_error(error.name, error.message);
                print_error(&error, "");
                status = error.name ? sbx_session_error_status(&error) : 1;
                goto finish;
        }
        status = exit_status_of(result_exit_code(result));
        if (o->json) {
                print_json(result);
                fputc('\n', stdout);
        } else if (!o->quiet && isatty(STDERR_FILENO))
                print_summary(result, "");

        /* Downloads run whatever the code's exit status: a failed job's logs are worth having. The
         * code's own failure stays the exit status; else the first failed download's. */
        for (size_t i = 0; i < down->n; i++) {
                int st = sbx_download(bus, sbx_call_sync, NULL, session, down->first[i], down->second[i], false,
                                      NULL);
                if (status == 0)
                        status = st;
        }
finish:
        sbx_session_close(bus, session);
        return status;
}

static void source_done(Source *s) {
        free(s->code);
        free(s->out_line);
        free(s->err_line);
        safe_close(s->out_pipe[0]);
        safe_close(s->out_pipe[1]);
        safe_close(s->err_pipe[0]);
        safe_close(s->err_pipe[1]);
        sd_bus_slot_unref(s->slot);
        sd_bus_message_unref(s->reply);
        sd_bus_error_free(&s->error);
}

int sbx_run(SbxBusKind kind, const char *address, int argc, char **argv) {
        static const struct option options[] = {
                { "code", required_argument, NULL, 'c' },     { "language", required_argument, NULL, 'l' },
                { "timeout", required_argument, NULL, 't' },  { "memory", required_argument, NULL, 'm' },
                { "env", required_argument, NULL, 'e' },      { "json", no_argument, NULL, 'J' },
                { "quiet", no_argument, NULL, 'q' },          { "help", no_argument, NULL, 'h' },
                { "upload", required_argument, NULL, 'U' },   { "download", required_argument, NULL, 'D' },
                { "cold", no_argument, NULL, 'C' },
                { "network", no_argument, NULL, 'N' },     { "allow-domain", required_argument, NULL, 'W' },
                { "expose", required_argument, NULL, 'X' },
                {},
        };
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        RunOptions o = { .timeout_s = SBX_TIMEOUT_DEFAULT_S };
        Source src[MAX_SOURCES];
        size_t n = 0;
        const char *inline_codes[MAX_SOURCES];
        size_t n_inline = 0;
        char *env_store[SBX_ENV_COUNT_MAX + 1];
        _cleanup_(transfers_done) Transfers uploads = {}, downloads = {};
        int c, r, status = 1;

        o.env = env_store;
        while ((c = getopt_long(argc, argv, "c:l:t:m:e:qh", options, NULL)) >= 0)
                switch (c) {
                case 'c':
                        if (n_inline >= MAX_SOURCES) {
                                fprintf(stderr, "sbx: at most %d sources\n", MAX_SOURCES);
                                return 2;
                        }
                        inline_codes[n_inline++] = optarg;
                        break;
                case 'l':
                        o.language = sbx_language_normalize(optarg);
                        break;
                case 't':
                        if (sbx_parse_u32(optarg, "timeout", &o.timeout_s) < 0)
                                return 2;
                        break;
                case 'm':
                        if (sbx_parse_u32(optarg, "memory", &o.memory_mb) < 0)
                                return 2;
                        break;
                case 'e':
                        if (sbx_add_env_arg(o.env, &o.n_env, SBX_ENV_COUNT_MAX + 1, optarg) < 0)
                                return 2;
                        break;
                case 'J':
                        o.json = true;
                        break;
                case 'q':
                        o.quiet = true;
                        break;
                case 'C':
                        o.cold = true;
                        break;
                case 'N':
                        o.net.network = true;
                        break;
                case 'W':
                        if (sbx_network_add_domain(&o.net, optarg) < 0)
                                return 2;
                        break;
                case 'X':
                        if (sbx_network_add_expose(&o.net, optarg) < 0)
                                return 2;
                        break;
                case 'U':
                case 'D':
                        if (transfers_add(c == 'U' ? &uploads : &downloads, optarg, c == 'U') < 0)
                                return 2;
                        break;
                case 'h':
                        printf("Usage: sbx run [-l LANG] [-t SECONDS] [-m MB] [-e KEY=VALUE]... [--json] [-q] [--cold]\n"
                               "               [--upload LOCAL[:GUEST]]... [--download GUEST[:LOCAL]]...\n"
                               "               [-c CODE]... [SOURCE...]\n"
                               "--upload and --download split on the last colon (a trailing colon takes the\n"
                               "default for the second path: GUEST = LOCAL's file name, LOCAL = ./NAME); LOCAL\n"
                               "may be - for stdin (upload) or stdout (download). They need exactly one SOURCE.\n");
                        return 0;
                default:
                        return 2;
                }

        for (size_t i = 0; i < n_inline; i++) {
                src[n] = (Source) { .out_pipe = { -EBADF, -EBADF }, .err_pipe = { -EBADF, -EBADF },
                                    .code = strdup(inline_codes[i]), .label = "code" };
                if (!src[n].code)
                        return 1;
                n++;
        }
        for (int i = optind; i < argc; i++) {
                if (n >= MAX_SOURCES) {
                        fprintf(stderr, "sbx: at most %d sources\n", MAX_SOURCES);
                        goto finish;
                }
                r = source_from_arg(argv[i], &src[n]);
                if (r < 0) {
                        fprintf(stderr, "sbx: cannot read %s: %s\n", argv[i],
                                r == -E2BIG ? "larger than 1 MiB" : strerror(-r));
                        status = 2;
                        goto finish;
                }
                n++;
        }
        if (n == 0) {
                fprintf(stderr, "sbx run: no code given (pass code, a file, - for stdin, or -c CODE)\n");
                return 2;
        }
        if ((uploads.n > 0 || downloads.n > 0) && n > 1) {
                fprintf(stderr, "sbx run: --upload and --download take exactly one source, got %zu\n", n);
                status = 2;
                goto finish;
        }
        if (o.net.n_expose > 0 && n > 1) {
                fprintf(stderr, "sbx run: --expose takes exactly one source (each source is its own VM), got %zu\n",
                        n);
                status = 2;
                goto finish;
        }
        for (size_t i = 0; i < uploads.n; i++)
                if (strcmp(uploads.first[i], "-") == 0 && optind < argc && strcmp(argv[optind], "-") == 0) {
                        fprintf(stderr, "sbx run: stdin cannot be both the code and an upload\n");
                        status = 2;
                        goto finish;
                }

        r = sbx_bus_connect(kind, address, &bus);
        if (r < 0) {
                fprintf(stderr, "sbx: cannot connect to the bus: %s\n"
                                "     (start the suite with scripts/sbx-up.sh, or set SBX_BUS_ADDRESS)\n",
                        strerror(-r));
                status = 1;
                goto finish;
        }
        sbx_network_announce(&o.net);
        if (uploads.n > 0 || downloads.n > 0)
                status = run_in_session(bus, &o, &src[0], &uploads, &downloads);
        else
                status = n == 1 ? run_single(bus, &o, &src[0]) : run_concurrent(bus, &o, src, n);
finish:
        for (size_t i = 0; i < n; i++)
                source_done(&src[i]);
        return status;
}
