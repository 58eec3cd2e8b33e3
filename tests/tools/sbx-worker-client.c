/* SPDX-License-Identifier: Apache-2.0 */
/* sbx-worker-client: drives one sbx-vmworker directly, the way sbx-broker
 * does, for tests and debugging.
 *
 *   sbx-worker-client [--worker PATH] [--lang L] [--timeout S] [--memory MB]
 *                     [--vcpus N] [--accel A] [--env K=V]... [--run-id N]
 *                     [--network] [--allow-domain D]... [--expose INT[:EXT][/tcp|udp]]... CODE|-
 *
 * --network, --allow-domain and --expose (runs and sessions) send SBX_T_NETWORK = 1,
 * SBX_T_ALLOWED_DOMAIN and SBX_T_EXPOSE ("INT:EXT/proto", EXT 0 when omitted); the
 * worker's SBX_T_PORT_MAPPING values print as port_mapping='tcp INT 127.0.0.1:EXT'.
 *
 * Forks the worker with a socketpair as fd 3 (LISTEN_FDS=1, LISTEN_PID set
 * in the child) and runs CODE as the broker runs one: SBX_B_SESSION_OPEN (the VM
 * settings and the environment), one SBX_B_EXEC on SBX_W_SESSION_READY, then EOF.
 * It copies SBX_W_OUTPUT to our stdout/stderr as it arrives, and prints to stderr:
 *   worker pid=N
 *   status phase=running qemu_pid=N boot_ms=N setup_ms=N accel=A [port_mapping=...]   (at READY)
 *   result exit_code=N exec_ms=N cpu_ms=N mem_peak_mb=N cpu_throttled=N timed_out=0|1
 *          stdout_trunc=0|1 stderr_trunc=0|1 accel=A state_reset=0|1 [message=...] [port_mapping=...]
 *   error kind=N message=...
 * Exit status: 0 after a result, 1 after an error frame, 2 when the worker
 * died or broke the protocol, 64 on usage errors.
 *
 *   sbx-worker-client --session [options] SCRIPT
 *
 * Opens a session (SBX_B_SESSION_OPEN with --lang, --memory, --vcpus,
 * --accel, --env) and runs SCRIPT, one request per line ('#' comments):
 *   exec CODE                 CODE with \n, \t and \\ escapes; --timeout applies
 *   write GUESTPATH LOCAL     LOCAL: a file, or "|COMMAND" whose stdout is piped in
 *   read GUESTPATH LOCAL      LOCAL: a file (created), or "|COMMAND" whose stdin is the pipe
 *   list GUESTPATH            entries go to stdout as NAME<TAB>dir|file<TAB>SIZE
 *   sleep SECONDS
 *   close                     EOF (shutdown), then wait for the worker to exit
 * and prints to stderr "session_ready ...", "result ... state_reset=N",
 * With --snapshot (SBX_T_SNAPSHOT = 1: restore or build the L1 snapshot) and --warm (SBX_T_WARM),
 * session_ready also shows warm=, tier=, restore_ms=, saved=, note=. --timing prints
 * "timing ready_ms=X" and "timing first_output_ms=X", measured from the worker's spawn.
 * "file_result status=N size=N [message=...]". Exit status: 0 when the
 * script ran to its end, 1 after an error frame, 2 as above. */
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
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
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
        bool session;
        bool snapshot, warm; /* session: SBX_T_SNAPSHOT, SBX_T_WARM */
        bool network;        /* SBX_T_NETWORK = 1 */
        char **domains;      /* SBX_T_ALLOWED_DOMAIN */
        size_t n_domains;
        char **expose; /* SBX_T_EXPOSE, normalized to "INT:EXT/proto" */
        size_t n_expose;
        const char *script;
} Options;

/* A run (no --session): READY prints as the running status, and its port mappings also go with the result. */
static bool one_shot;
static char ready_ports[SBX_EXPOSE_MAX * 64 + 1];

/* --timing: milliseconds since B_SESSION_OPEN was sent, to session_ready and to the first output. */
static bool timing, timing_output_seen;
static uint64_t timing_t0;

static void usage(FILE *f) {
        fprintf(f, "Usage: sbx-worker-client [--worker PATH] [--lang python|javascript|raw] [--timeout S]\n"
                   "                         [--memory MB] [--vcpus N] [--accel kvm|tcg|auto] [--env K=V]...\n"
                   "                         [--run-id N] [--network] [--allow-domain D]...\n"
                   "                         [--expose INT[:EXT][/tcp|udp]]... CODE|-\n"
                   "       sbx-worker-client --session [options] SCRIPT\n");
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
                { "help", no_argument, NULL, 'h' },          { "session", no_argument, NULL, 'S' },
                { "snapshot", no_argument, NULL, 'P' },      { "warm", no_argument, NULL, 'W' },
                { "timing", no_argument, NULL, 'T' },
                { "network", no_argument, NULL, 'N' },       { "allow-domain", required_argument, NULL, 'D' },
                { "expose", required_argument, NULL, 'X' },
                {},
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
                case 'S':
                        o->session = true;
                        break;
                case 'N':
                        o->network = true;
                        break;
                case 'D': {
                        char **d = reallocarray(o->domains, o->n_domains + 1, sizeof(char *));
                        if (!d)
                                return -ENOMEM;
                        o->domains = d;
                        o->domains[o->n_domains++] = optarg;
                        break;
                }
                case 'X': {
                        /* INT[:EXT][/tcp|udp] -> INT:EXT/proto; the worker checks the numbers. */
                        char spec[64], *proto, *colon, *x;
                        snprintf(spec, sizeof spec, "%s", optarg);
                        proto = strchr(spec, '/');
                        if (proto)
                                *proto++ = 0;
                        colon = strchr(spec, ':');
                        if (colon)
                                *colon++ = 0;
                        char **e = reallocarray(o->expose, o->n_expose + 1, sizeof(char *));
                        if (!e)
                                return -ENOMEM;
                        o->expose = e;
                        if (asprintf(&x, "%s:%s/%s", spec, colon ?: "0", proto ?: "tcp") < 0)
                                return -ENOMEM;
                        o->expose[o->n_expose++] = x;
                        break;
                }
                case 'P':
                        o->snapshot = true;
                        break;
                case 'W':
                        o->warm = true;
                        break;
                case 'T':
                        timing = true;
                        break;
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
        if (o->session) {
                o->script = argv[optind];
                if (!o->worker)
                        o->worker = default_worker();
                return 0;
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
        if (pid == 0)
                exec_with_listen_fd(path, fd, "connection");
        return pid;
}

static void put_network(SbxMsg *m, const Options *o) {
        if (o->network)
                sbx_msg_put_u8(m, SBX_T_NETWORK, 1);
        for (size_t i = 0; i < o->n_domains; i++)
                sbx_msg_put_str(m, SBX_T_ALLOWED_DOMAIN, o->domains[i]);
        for (size_t i = 0; i < o->n_expose; i++)
                sbx_msg_put_str(m, SBX_T_EXPOSE, o->expose[i]);
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
                { SBX_T_STATE_RESET, "state_reset", 'b' }, { SBX_T_FILE_STATUS, "status", 'w' },
                { SBX_T_SIZE, "size", 'u' },             { SBX_T_NAME, "name", 's' },
                { SBX_T_IS_DIR, "is_dir", 'b' },        { SBX_T_WARM, "warm", 'b' },
                { SBX_T_SNAPSHOT_TIER, "tier", 's' },   { SBX_T_RESTORE_MS, "restore_ms", 'u' },
                { SBX_T_SNAPSHOT_SAVED, "saved", 'b' }, { SBX_T_SNAPSHOT_NOTE, "note", 's' },
                { SBX_T_PORT_MAPPING, "port_mapping", 'q' },
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
                case 'q':
                        fprintf(stderr, " %s='%.*s'", fields[i].name, (int) n, (const char *) v);
                        break;
                }
                return 0;
        }
        return 0;
}


static double timing_ms(void) {
        return (double) (now_usec(CLOCK_MONOTONIC) - timing_t0) / 1000.0;
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
                if (timing && !timing_output_seen) {
                        timing_output_seen = true;
                        fprintf(stderr, "timing first_output_ms=%.1f\n", timing_ms());
                }
                if (stream == SBX_STREAM_STDERR)
                        fflush(stderr);
                if (data_len > 0 && loop_write(stream == SBX_STREAM_STDOUT ? STDOUT_FILENO : STDERR_FILENO, data,
                                               data_len) < 0)
                        return -EIO;
                return 0;
        }
        case SBX_W_RESULT:
        case SBX_W_ERROR:
                fprintf(stderr, "%s", type == SBX_W_RESULT ? "result" : "error");
                while ((r = sbx_tlv_next(&it, &tag, &v, &len)) > 0)
                        if (print_field(tag, v, len) < 0)
                                return -EBADMSG;
                fprintf(stderr, "%s\n", one_shot && type == SBX_W_RESULT ? ready_ports : "");
                if (r < 0)
                        return r;
                return type == SBX_W_RESULT ? 1 : 2;
        case SBX_W_SESSION_READY:
                if (one_shot) {
                        /* As the broker sees it: the VM is up and the run's exec goes out. */
                        fprintf(stderr, "status phase=running");
                        while ((r = sbx_tlv_next(&it, &tag, &v, &len)) > 0)
                                if (tag == SBX_T_QEMU_PID && print_field(tag, v, len) < 0)
                                        return -EBADMSG;
                        sbx_tlv_iter_init(&it, p, n);
                        while ((r = sbx_tlv_next(&it, &tag, &v, &len)) > 0) {
                                if (tag == SBX_T_PORT_MAPPING) {
                                        size_t k = strlen(ready_ports);
                                        snprintf(ready_ports + k, sizeof ready_ports - k, " port_mapping='%.*s'",
                                                 (int) len, (const char *) v);
                                }
                                if (tag != SBX_T_QEMU_PID && print_field(tag, v, len) < 0)
                                        return -EBADMSG;
                        }
                        fprintf(stderr, "\n");
                        return r < 0 ? r : 3;
                }
                __attribute__((fallthrough));
        case SBX_W_FILE_RESULT:
                if (timing && type == SBX_W_SESSION_READY)
                        fprintf(stderr, "timing ready_ms=%.1f\n", timing_ms());
                fprintf(stderr, "%s", type == SBX_W_SESSION_READY ? "session_ready" : "file_result");
                while ((r = sbx_tlv_next(&it, &tag, &v, &len)) > 0)
                        if (print_field(tag, v, len) < 0)
                                return -EBADMSG;
                fprintf(stderr, "\n");
                if (r < 0)
                        return r;
                return type == SBX_W_SESSION_READY ? 3 : 4;
        case SBX_W_LIST_ENTRY: {
                const uint8_t *name = NULL;
                uint32_t name_len = 0;
                uint8_t is_dir = 0;
                uint64_t size = 0;
                while ((r = sbx_tlv_next(&it, &tag, &v, &len)) > 0) {
                        if (tag == SBX_T_NAME) {
                                name = v;
                                name_len = len;
                        } else if ((tag == SBX_T_IS_DIR && sbx_tlv_u8(v, len, &is_dir) < 0) ||
                                   (tag == SBX_T_SIZE && sbx_tlv_u64(v, len, &size) < 0))
                                return -EBADMSG;
                }
                if (r < 0 || !name)
                        return -EBADMSG;
                printf("%.*s\t%s\t%" PRIu64 "\n", (int) name_len, (const char *) name, is_dir ? "dir" : "file", size);
                fflush(stdout);
                return 0;
        }
        default:
                return -EBADMSG;
        }
}

/* ---- session mode ---- */

/* Reads frames until a final one: 1 result, 2 error, 3 session ready, 4 file result; 0 on EOF; <0 errors. */
static int session_wait(int fd, SbxFrameReader *reader) {
        for (;;) {
                uint8_t type;
                const uint8_t *payload;
                size_t len;

                int r = sbx_frame_reader_next(reader, &type, &payload, &len);
                if (r > 0) {
                        r = handle_frame(type, payload, len);
                        if (r != 0)
                                return r;
                        continue;
                }
                if (r < 0)
                        return r;
                r = sbx_frame_reader_fill(reader, fd);
                if (r == 0)
                        return 0;
                if (r < 0 && r != -EINTR)
                        return r;
        }
}

static size_t unescape(char *s) {
        char *o = s;
        for (char *p = s; *p; p++) {
                if (*p == '\\' && p[1]) {
                        p++;
                        *o++ = *p == 'n' ? '\n' : *p == 't' ? '\t' : *p;
                } else
                        *o++ = *p;
        }
        *o = 0;
        return (size_t) (o - s);
}

/* LOCAL as an fd to hand over: a file, or a pipe to/from "|COMMAND" (its pid in *ret_pid). */
static int open_local(const char *local, bool for_write_into_vm, pid_t *ret_pid) {
        *ret_pid = 0;
        if (local[0] != '|') {
                int fd = for_write_into_vm ? open(local, O_RDONLY | O_CLOEXEC)
                                           : open(local, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
                if (fd < 0)
                        fprintf(stderr, "sbx-worker-client: %s: %m\n", local);
                return fd < 0 ? -errno : fd;
        }
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        pid_t pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                signal(SIGPIPE, SIG_DFL);
                if (dup2(for_write_into_vm ? p[1] : p[0], for_write_into_vm ? 1 : 0) < 0)
                        _exit(127);
                execl("/bin/sh", "sh", "-c", local + 1, (char *) NULL);
                _exit(127);
        }
        *ret_pid = pid;
        close(for_write_into_vm ? p[1] : p[0]);
        return for_write_into_vm ? p[0] : p[1];
}

static int send_open(int fd, const Options *o) {
        SbxMsg m;

        sbx_msg_begin(&m, SBX_B_SESSION_OPEN);
        sbx_msg_put_u64(&m, SBX_T_RUN_ID, o->run_id);
        sbx_msg_put_str(&m, SBX_T_LANGUAGE, o->language);
        for (size_t i = 0; i < o->n_env; i++)
                sbx_msg_put_str(&m, SBX_T_ENV, o->env[i]);
        if (o->memory_mb)
                sbx_msg_put_u32(&m, SBX_T_MEMORY_MB, o->memory_mb);
        if (o->vcpus)
                sbx_msg_put_u32(&m, SBX_T_VCPUS, o->vcpus);
        if (o->accel)
                sbx_msg_put_str(&m, SBX_T_ACCEL, o->accel);
        if (o->snapshot)
                sbx_msg_put_u8(&m, SBX_T_SNAPSHOT, 1);
        if (o->warm)
                sbx_msg_put_u8(&m, SBX_T_WARM, 1);
        put_network(&m, o);
        int r = sbx_msg_send(&m, fd);
        sbx_msg_done(&m);
        return r;
}

static int send_exec(int fd, uint64_t id, const char *code, size_t code_len, uint32_t timeout_ms) {
        SbxMsg m;

        sbx_msg_begin(&m, SBX_B_EXEC);
        sbx_msg_put_u64(&m, SBX_T_RUN_ID, id);
        sbx_msg_put(&m, SBX_T_CODE, code, code_len);
        sbx_msg_put_u32(&m, SBX_T_TIMEOUT_MS, timeout_ms);
        int r = sbx_msg_send(&m, fd);
        sbx_msg_done(&m);
        return r;
}

/* One run: open, one exec, EOF. 0 after a result, 1 after an error frame, 2 otherwise. */
static int run_once(int fd, const Options *o) {
        SbxFrameReader reader;
        int r;

        one_shot = true;
        sbx_frame_reader_init(&reader, SBX_WORKER_FRAME_MAX);
        r = send_open(fd, o);
        if (r >= 0)
                r = session_wait(fd, &reader);
        if (r == 3) {
                r = send_exec(fd, o->run_id, o->code, o->code_len, o->timeout_ms);
                /* If the send failed, the worker may have said why before it went away. */
                r = session_wait(fd, &reader);
        }
        if (r < 0)
                fprintf(stderr, "sbx-worker-client: worker connection: %s\n", strerror(-r));
        else if (r != 1 && r != 2)
                fprintf(stderr, "sbx-worker-client: worker connection: %s\n", r == 0 ? "closed" : "unexpected frame");
        sbx_frame_reader_done(&reader);
        return r == 1 ? 0 : r == 2 ? 1 : 2;
}

static int run_session(int fd, const Options *o) {
        SbxFrameReader reader;
        char *line = NULL;
        size_t alloc = 0;
        uint64_t exec_id = 0;
        int r, ret = 0;
        SbxMsg m;

        FILE *f = fopen(o->script, "re");
        if (!f) {
                fprintf(stderr, "sbx-worker-client: %s: %m\n", o->script);
                return 64;
        }
        sbx_frame_reader_init(&reader, SBX_WORKER_FRAME_MAX);

        r = send_open(fd, o);
        if (r >= 0)
                r = session_wait(fd, &reader);
        if (r != 3) {
                ret = r == 2 ? 1 : 2;
                goto out;
        }

        while (getline(&line, &alloc, f) > 0) {
                char *cmd = line, *arg;
                pid_t child = 0;
                int pass = -EBADF;

                line[strcspn(line, "\n")] = 0;
                cmd += strspn(cmd, " \t");
                if (!*cmd || *cmd == '#')
                        continue;
                arg = cmd + strcspn(cmd, " ");
                if (*arg)
                        *arg++ = 0;
                fprintf(stderr, "> %s %s\n", cmd, arg);

                if (strcmp(cmd, "sleep") == 0) {
                        usleep((useconds_t) (atof(arg) * 1e6));
                        continue;
                }
                if (strcmp(cmd, "close") == 0) {
                        r = shutdown(fd, SHUT_WR) < 0 ? -errno : session_wait(fd, &reader);
                        if (r != 0) {
                                fprintf(stderr, "sbx-worker-client: expected EOF after close, got %d\n", r);
                                ret = 2;
                        }
                        goto out;
                }
                if (strcmp(cmd, "exec") == 0) {
                        size_t n = unescape(arg);
                        r = send_exec(fd, ++exec_id, arg, n, o->timeout_ms);
                } else if (strcmp(cmd, "list") == 0) {
                        sbx_msg_begin(&m, SBX_B_LIST);
                        sbx_msg_put_str(&m, SBX_T_PATH, arg);
                        r = sbx_msg_send(&m, fd);
                        sbx_msg_done(&m);
                } else if (strcmp(cmd, "write") == 0 || strcmp(cmd, "read") == 0) {
                        bool w = cmd[0] == 'w';
                        char *local = arg + strcspn(arg, " ");
                        if (*local)
                                *local++ = 0;
                        if (!*local) {
                                fprintf(stderr, "sbx-worker-client: %s needs GUESTPATH LOCAL\n", cmd);
                                ret = 64;
                                goto out;
                        }
                        pass = open_local(local, w, &child);
                        if (pass < 0) {
                                ret = 64;
                                goto out;
                        }
                        sbx_msg_begin(&m, w ? SBX_B_FILE_WRITE : SBX_B_FILE_READ);
                        sbx_msg_put_str(&m, SBX_T_PATH, arg);
                        if (w)
                                sbx_msg_put_u32(&m, SBX_T_MODE, 0644);
                        r = sbx_msg_send_with_fd(&m, fd, pass);
                        sbx_msg_done(&m);
                        close(pass); /* the worker has its own copy now */
                } else {
                        fprintf(stderr, "sbx-worker-client: unknown script command: %s\n", cmd);
                        ret = 64;
                        goto out;
                }
                if (r < 0) {
                        fprintf(stderr, "sbx-worker-client: sending the request failed: %s\n", strerror(-r));
                        /* The worker may have said why before it went away. */
                        r = session_wait(fd, &reader);
                        ret = r == 2 ? 1 : 2;
                        goto out;
                }
                r = session_wait(fd, &reader);
                if (child > 0) {
                        /* Give "|COMMAND" 5 s to finish (e.g. print a checksum), then kill it: a command
                         * that never reads or writes is what the worker just gave up on. */
                        int st;
                        bool reaped = false;
                        for (int i = 0; i < 500 && !reaped; i++) {
                                reaped = waitpid(child, &st, WNOHANG) == child;
                                if (!reaped)
                                        usleep(10000);
                        }
                        if (!reaped) {
                                (void) kill(child, SIGKILL);
                                (void) waitpid(child, &st, 0);
                        }
                }
                if (r == 2) {
                        ret = 1;
                        goto out;
                }
                if (r != 1 && r != 4) {
                        fprintf(stderr, "sbx-worker-client: worker connection: %s\n",
                                r == 0 ? "closed" : r < 0 ? strerror(-r) : "unexpected frame");
                        ret = 2;
                        goto out;
                }
        }
out:
        free(line);
        fclose(f);
        sbx_frame_reader_done(&reader);
        return ret;
}

int main(int argc, char *argv[]) {
        int sv[2], status;
        Options o;

        if (parse_options(argc, argv, &o) < 0)
                return 64;
        signal(SIGPIPE, SIG_IGN);

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
                perror("socketpair");
                return 2;
        }
        timing_t0 = now_usec(CLOCK_MONOTONIC);
        pid_t pid = spawn_worker(o.worker, sv[1]);
        if (pid < 0) {
                perror("fork");
                return 2;
        }
        close(sv[1]);
        fprintf(stderr, "worker pid=%d\n", (int) pid);

        int ret = o.session ? run_session(sv[0], &o) : run_once(sv[0], &o);
        close(sv[0]);
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR) {
                        perror("waitpid");
                        return 2;
                }
        if (o.session || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                fprintf(stderr, "worker exit=%s%d\n", WIFEXITED(status) ? "" : "signal:",
                        WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
        free(o.code);
        free(o.env);
        free(o.domains);
        for (size_t i = 0; i < o.n_expose; i++)
                free(o.expose[i]);
        free(o.expose);
        if (ret == 0 && (!WIFEXITED(status) || WEXITSTATUS(status) != 0))
                ret = 2;
        return ret;
}
