/* SPDX-License-Identifier: Apache-2.0 */
/* sbx-worker-client: drives one sbx-vmworker directly, the way sbx-broker
 * does, for tests and debugging.
 *
 *   sbx-worker-client [--worker PATH] [--lang L] [--timeout S] [--memory MB]
 *                     [--vcpus N] [--accel A] [--env K=V]... [--run-id N] CODE|-
 *
 * Forks the worker with a socketpair as fd 3 (LISTEN_FDS=1, LISTEN_PID set
 * in the child), sends SBX_B_RUN, copies SBX_W_OUTPUT to our stdout/stderr
 * as it arrives, and prints to stderr:
 *   worker pid=N
 *   status phase=booting|running qemu_pid=N [boot_ms=N]
 *   result exit_code=N exec_ms=N boot_ms=N setup_ms=N cpu_ms=N mem_peak_mb=N cpu_throttled=N
 *          timed_out=0|1 stdout_trunc=0|1 stderr_trunc=0|1 accel=A [message=...]
 *   error kind=N message=...
 * Exit status: 0 after a result, 1 after an error frame, 2 when the worker
 * died or broke the protocol, 64 on usage errors. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fdio.h"
#include "frame.h"
#include "macro.h"
#include "proto.h"

typedef struct Options {
        const char *worker;
        const char *language;
        uint32_t timeout_ms;
        uint32_t memory_mb; /* 0: let the worker use its config */
        uint32_t vcpus;     /* 0: likewise */
        const char *accel;  /* NULL: likewise */
        uint64_t run_id;
        char **env;
        size_t n_env;
        char *code;
        size_t code_len;
} Options;

static void usage(FILE *f) {
        fprintf(f, "Usage: sbx-worker-client [--worker PATH] [--lang python|javascript|raw] [--timeout S]\n"
                   "                         [--memory MB] [--vcpus N] [--accel kvm|tcg|auto] [--env K=V]...\n"
                   "                         [--run-id N] CODE|-\n");
}

static char *read_all(FILE *f, size_t *ret_len) {
        size_t len = 0, alloc = 0;
        char *buf = NULL;

        for (;;) {
                if (alloc - len < 4096) {
                        alloc = alloc ? alloc * 2 : 65536;
                        char *b = realloc(buf, alloc + 1);
                        if (!b) {
                                free(buf);
                                return NULL;
                        }
                        buf = b;
                }
                size_t n = fread(buf + len, 1, alloc - len, f);
                len += n;
                if (n == 0)
                        break;
        }
        buf[len] = 0;
        *ret_len = len;
        return buf;
}

static bool parse_u32(const char *s, uint32_t *ret) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (errno || end == s || *end || v > UINT32_MAX)
                return false;
        *ret = (uint32_t) v;
        return true;
}

/* The worker next to this binary (both live in the build's sbx-vmworker/ directory), else $PATH. */
static const char *default_worker(void) {
        static char path[PATH_MAX];
        char self[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);

        if (n > 0) {
                self[n] = 0;
                snprintf(path, sizeof path, "%s/sbx-vmworker", dirname(self));
                if (access(path, X_OK) == 0)
                        return path;
        }
        return "sbx-vmworker";
}

static int parse_options(int argc, char *argv[], Options *o) {
        static const struct option options[] = {
                { "worker", required_argument, NULL, 'w' }, { "lang", required_argument, NULL, 'l' },
                { "timeout", required_argument, NULL, 't' }, { "memory", required_argument, NULL, 'm' },
                { "vcpus", required_argument, NULL, 'c' },   { "accel", required_argument, NULL, 'a' },
                { "env", required_argument, NULL, 'e' },     { "run-id", required_argument, NULL, 'r' },
                { "help", no_argument, NULL, 'h' },          {},
        };
        int c;

        *o = (Options) { .language = "python", .timeout_ms = 30000, .run_id = 1 };
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case 'w':
                        o->worker = optarg;
                        break;
                case 'l':
                        o->language = optarg;
                        break;
                case 't': {
                        char *end;
                        double s = strtod(optarg, &end);
                        if (end == optarg || *end || s < 0 || s > 100000) {
                                fprintf(stderr, "Bad --timeout: %s\n", optarg);
                                return -EINVAL;
                        }
                        o->timeout_ms = (uint32_t) (s * 1000.0 + 0.5);
                        break;
                }
                case 'm':
                        if (!parse_u32(optarg, &o->memory_mb)) {
                                fprintf(stderr, "Bad --memory: %s\n", optarg);
                                return -EINVAL;
                        }
                        break;
                case 'c':
                        if (!parse_u32(optarg, &o->vcpus)) {
                                fprintf(stderr, "Bad --vcpus: %s\n", optarg);
                                return -EINVAL;
                        }
                        break;
                case 'a':
                        o->accel = optarg;
                        break;
                case 'e': {
                        char **e = reallocarray(o->env, o->n_env + 1, sizeof(char *));
                        if (!e)
                                return -ENOMEM;
                        o->env = e;
                        o->env[o->n_env++] = optarg;
                        break;
                }
                case 'r': {
                        char *end;
                        errno = 0;
                        o->run_id = strtoull(optarg, &end, 10);
                        if (errno || end == optarg || *end) {
                                fprintf(stderr, "Bad --run-id: %s\n", optarg);
                                return -EINVAL;
                        }
                        break;
                }
                case 'h':
                        usage(stdout);
                        exit(0);
                default:
                        return -EINVAL;
                }
        }
        if (optind != argc - 1) {
                usage(stderr);
                return -EINVAL;
        }
        if (strcmp(argv[optind], "-") == 0) {
                o->code = read_all(stdin, &o->code_len);
                if (!o->code)
                        return -ENOMEM;
        } else {
                o->code = strdup(argv[optind]);
                if (!o->code)
                        return -ENOMEM;
                o->code_len = strlen(o->code);
        }
        if (!o->worker)
                o->worker = default_worker();
        return 0;
}

static pid_t spawn_worker(const char *path, int fd) {
        pid_t pid = fork();
        if (pid != 0)
                return pid;

        char buf[32];
        signal(SIGPIPE, SIG_DFL);
        if (fd_move_to(fd, 3) < 0)
                _exit(127);
        snprintf(buf, sizeof buf, "%d", (int) getpid());
        setenv("LISTEN_PID", buf, 1);
        setenv("LISTEN_FDS", "1", 1);
        setenv("LISTEN_FDNAMES", "connection", 1);
        execl(path, "sbx-vmworker", (char *) NULL);
        execlp(path, "sbx-vmworker", (char *) NULL);
        fprintf(stderr, "sbx-worker-client: failed to execute %s: %m\n", path);
        _exit(127);
}

static int send_run(int fd, const Options *o) {
        SbxMsg m;

        sbx_msg_begin(&m, SBX_B_RUN);
        sbx_msg_put_u64(&m, SBX_T_RUN_ID, o->run_id);
        sbx_msg_put_str(&m, SBX_T_LANGUAGE, o->language);
        sbx_msg_put(&m, SBX_T_CODE, o->code, o->code_len);
        sbx_msg_put_u32(&m, SBX_T_TIMEOUT_MS, o->timeout_ms);
        for (size_t i = 0; i < o->n_env; i++)
                sbx_msg_put_str(&m, SBX_T_ENV, o->env[i]);
        if (o->memory_mb)
                sbx_msg_put_u32(&m, SBX_T_MEMORY_MB, o->memory_mb);
        if (o->vcpus)
                sbx_msg_put_u32(&m, SBX_T_VCPUS, o->vcpus);
        if (o->accel)
                sbx_msg_put_str(&m, SBX_T_ACCEL, o->accel);
        int r = sbx_msg_send(&m, fd);
        sbx_msg_done(&m);
        return r;
}

static const char *phase_name(uint32_t p) {
        switch (p) {
        case SBX_PHASE_SETUP:
                return "setup";
        case SBX_PHASE_BOOTING:
                return "booting";
        case SBX_PHASE_RUNNING:
                return "running";
        default:
                return "unknown";
        }
}

/* Prints one value of a result/status frame as key=value. Returns -EBADMSG on a malformed value. */
static int print_field(uint16_t tag, const uint8_t *v, uint32_t n) {
        static const struct {
                uint16_t tag;
                const char *name;
                char type; /* 'u' u64, 'i' i32, 'b' u8, 'w' u32, 's' string */
        } fields[] = {
                { SBX_T_EXIT_CODE, "exit_code", 'i' },   { SBX_T_EXEC_MS, "exec_ms", 'u' },
                { SBX_T_BOOT_MS, "boot_ms", 'u' },       { SBX_T_SETUP_MS, "setup_ms", 'u' },
                { SBX_T_CPU_MS, "cpu_ms", 'u' },         { SBX_T_MEM_PEAK_MB, "mem_peak_mb", 'u' },
                { SBX_T_CPU_THROTTLED, "cpu_throttled", 'u' }, { SBX_T_TIMED_OUT, "timed_out", 'b' },
                { SBX_T_STDOUT_TRUNC, "stdout_trunc", 'b' }, { SBX_T_STDERR_TRUNC, "stderr_trunc", 'b' },
                { SBX_T_ACCEL, "accel", 's' },           { SBX_T_QEMU_PID, "qemu_pid", 'w' },
                { SBX_T_ERROR_KIND, "kind", 'w' },       { SBX_T_MESSAGE, "message", 's' },
        };

        for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
                if (fields[i].tag != tag)
                        continue;
                uint64_t u;
                uint32_t w;
                int32_t x;
                uint8_t b;
                switch (fields[i].type) {
                case 'u':
                        if (sbx_tlv_u64(v, n, &u) < 0)
                                return -EBADMSG;
                        fprintf(stderr, " %s=%" PRIu64, fields[i].name, u);
                        break;
                case 'i':
                        if (sbx_tlv_i32(v, n, &x) < 0)
                                return -EBADMSG;
                        fprintf(stderr, " %s=%" PRIi32, fields[i].name, x);
                        break;
                case 'w':
                        if (sbx_tlv_u32(v, n, &w) < 0)
                                return -EBADMSG;
                        fprintf(stderr, " %s=%" PRIu32, fields[i].name, w);
                        break;
                case 'b':
                        if (sbx_tlv_u8(v, n, &b) < 0)
                                return -EBADMSG;
                        fprintf(stderr, " %s=%u", fields[i].name, b);
                        break;
                case 's':
                        fprintf(stderr, " %s=%.*s", fields[i].name, (int) n, (const char *) v);
                        break;
                }
                return 0;
        }
        return 0;
}

/* 0: keep reading; 1: result; 2: error; <0 protocol error. */
static int handle_frame(uint8_t type, const uint8_t *p, size_t n) {
        SbxTlvIter it;
        uint16_t tag;
        const uint8_t *v;
        uint32_t len;
        int r;

        sbx_tlv_iter_init(&it, p, n);
        switch (type) {
        case SBX_W_OUTPUT: {
                uint8_t stream = 0;
                const uint8_t *data = NULL;
                uint32_t data_len = 0;
                while ((r = sbx_tlv_next(&it, &tag, &v, &len)) > 0) {
                        if (tag == SBX_T_STREAM && sbx_tlv_u8(v, len, &stream) < 0)
                                return -EBADMSG;
                        if (tag == SBX_T_DATA) {
                                data = v;
                                data_len = len;
                        }
                }
                if (r < 0 || (stream != SBX_STREAM_STDOUT && stream != SBX_STREAM_STDERR))
                        return -EBADMSG;
                if (stream == SBX_STREAM_STDERR)
                        fflush(stderr);
                if (data_len > 0 && loop_write(stream == SBX_STREAM_STDOUT ? STDOUT_FILENO : STDERR_FILENO, data,
                                               data_len) < 0)
                        return -EIO;
                return 0;
        }
        case SBX_W_STATUS: {
                uint32_t phase = 0;
                fprintf(stderr, "status");
                while ((r = sbx_tlv_next(&it, &tag, &v, &len)) > 0) {
                        if (tag == SBX_T_PHASE) {
                                if (sbx_tlv_u32(v, len, &phase) < 0)
                                        return -EBADMSG;
                                fprintf(stderr, " phase=%s", phase_name(phase));
                        } else if (print_field(tag, v, len) < 0)
                                return -EBADMSG;
                }
                fprintf(stderr, "\n");
                return r < 0 ? r : 0;
        }
        case SBX_W_RESULT:
        case SBX_W_ERROR:
                fprintf(stderr, "%s", type == SBX_W_RESULT ? "result" : "error");
                while ((r = sbx_tlv_next(&it, &tag, &v, &len)) > 0)
                        if (print_field(tag, v, len) < 0)
                                return -EBADMSG;
                fprintf(stderr, "\n");
                if (r < 0)
                        return r;
                return type == SBX_W_RESULT ? 1 : 2;
        default:
                return -EBADMSG;
        }
}

int main(int argc, char *argv[]) {
        int sv[2], status, final = 0, r;
        SbxFrameReader reader;
        Options o;

        if (parse_options(argc, argv, &o) < 0)
                return 64;
        signal(SIGPIPE, SIG_IGN);

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
                perror("socketpair");
                return 2;
        }
        pid_t pid = spawn_worker(o.worker, sv[1]);
        if (pid < 0) {
                perror("fork");
                return 2;
        }
        close(sv[1]);
        fprintf(stderr, "worker pid=%d\n", (int) pid);

        r = send_run(sv[0], &o);
        if (r < 0)
                fprintf(stderr, "sbx-worker-client: sending the run request failed: %s\n", strerror(-r));

        sbx_frame_reader_init(&reader, SBX_WORKER_FRAME_MAX);
        while (r >= 0) {
                uint8_t type;
                const uint8_t *payload;
                size_t len;

                r = sbx_frame_reader_next(&reader, &type, &payload, &len);
                if (r > 0) {
                        r = handle_frame(type, payload, len);
                        if (r > 0 && final == 0)
                                final = r;
                        else if (r > 0) {
                                fprintf(stderr, "sbx-worker-client: more than one final message\n");
                                final = -1;
                        }
                        continue;
                }
                if (r < 0)
                        break;
                r = sbx_frame_reader_fill(&reader, sv[0]);
                if (r == 0)
                        break; /* the worker closed the connection */
                if (r == -EINTR)
                        r = 0;
        }
        if (r < 0)
                fprintf(stderr, "sbx-worker-client: worker connection: %s\n", strerror(-r));
        sbx_frame_reader_done(&reader);
        close(sv[0]);

        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR) {
                        perror("waitpid");
                        return 2;
                }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                fprintf(stderr, "worker exit=%s%d\n", WIFEXITED(status) ? "" : "signal:",
                        WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));

        free(o.code);
        free(o.env);
        if (final == 1 && r >= 0)
                return 0;
        if (final == 2)
                return 1;
        return 2;
}
