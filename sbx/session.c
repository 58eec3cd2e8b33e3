/* SPDX-License-Identifier: Apache-2.0 */
/* `sbx session`: a read-eval-print loop on one sandbox session. Output of the code streams straight
 * into our stdout and stderr (the broker writes into the fds we pass); prompts, the banner and the
 * [exit N] markers go to stderr, so stdout carries only what the code printed. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bus-names.h"
#include "bus-util.h"
#include "macro.h"
#include "proto.h"
#include "session.h"
#include "transfer.h"

typedef struct Repl {
        sd_bus *bus;
        char *path; /* the session object */
        const char *language;
        uint32_t timeout_s; /* per exec; 0: the broker's default */
        bool interactive;   /* stdin is a terminal: banner and prompts */
        int status;         /* exit status of the last exec */

        bool closed; /* the broker closed the session or went away */
        const char *closed_reason;
        bool abort_on_first_interrupt; /* while opening: Ctrl-C gives up at once */
        bool aborted;                  /* a call was given up after Ctrl-C */

        char *ibuf; /* input not yet consumed */
        size_t ilen, ialloc;
        bool eof;
} Repl;

typedef struct Pending {
        bool done;
        sd_bus_message *reply;
        sd_bus_error error;
} Pending;

static volatile sig_atomic_t got_sigint = 0, got_term = 0;
static sigset_t wait_mask; /* the signal mask during ppoll(): SIGINT, SIGTERM, SIGHUP unblocked */
static const int handled_signals[] = { SIGINT, SIGTERM, SIGHUP };

static void on_signal(int sig) {
        if (sig == SIGINT)
                got_sigint = got_sigint + 1;
        else
                got_term = sig;
}

/* The signals stay blocked except inside ppoll(), so one that comes between checking the flags and
 * waiting cannot be missed, and no other call sees EINTR. */
static int install_signals(void) {
        struct sigaction sa = { .sa_handler = on_signal };
        sigset_t block;

        sigemptyset(&sa.sa_mask);
        for (size_t i = 0; i < ELEMENTSOF(handled_signals); i++) {
                int sig = handled_signals[i];
                struct sigaction old;
                /* A signal ignored by whoever started us (nohup, a background job) stays ignored. */
                if (sigaction(sig, NULL, &old) < 0)
                        return -errno;
                if (old.sa_handler != SIG_IGN && sigaction(sig, &sa, NULL) < 0)
                        return -errno;
        }
        sigemptyset(&block);
        sigaddset(&block, SIGINT);
        sigaddset(&block, SIGTERM);
        sigaddset(&block, SIGHUP);
        if (sigprocmask(SIG_BLOCK, &block, &wait_mask) < 0)
                return -errno;
        sigdelset(&wait_mask, SIGINT);
        sigdelset(&wait_mask, SIGTERM);
        sigdelset(&wait_mask, SIGHUP);
        return 0;
}

/* ---- input rules ---- */

static bool ends_with_word(const char *s, size_t end, const char *word) {
        size_t n = strlen(word);
        if (end < n || strncmp(s + end - n, word, n) != 0)
                return false;
        return end == n || isspace((unsigned char) s[end - n - 1]) || s[end - n - 1] == ';';
}

bool sbx_line_opens_block(const char *line, const char *language) {
        bool python = strcmp(language, "python") == 0, js = strcmp(language, "javascript") == 0;
        bool raw = !python && !js;
        size_t n = strlen(line), end = n;
        bool triple = false, heredoc = false;
        char quote = 0;
        int depth = 0;

        if (python && line[strspn(line, " \t")] == '@')
                return true; /* a decorator: the definition follows */

        for (size_t i = 0; i < n; i++) {
                char c = line[i];
                if (quote) {
                        if (c == '\\' && !(raw && quote == '\'')) {
                                if (i + 1 < n)
                                        i++;
                                continue;
                        }
                        if (c != quote)
                                continue;
                        if (!triple)
                                quote = 0;
                        else if (line[i + 1] == quote && line[i + 2] == quote) {
                                quote = 0;
                                triple = false;
                                i += 2;
                        }
                        continue;
                }
                if (c == '\'' || c == '"' || (js && c == '`')) {
                        quote = c;
                        if (python && line[i + 1] == c && line[i + 2] == c) {
                                triple = true;
                                i += 2;
                        }
                        continue;
                }
                if ((python && c == '#') || (js && c == '/' && line[i + 1] == '/') ||
                    (raw && c == '#' && (i == 0 || isspace((unsigned char) line[i - 1]) || line[i - 1] == ';'))) {
                        end = i; /* a comment runs to the end of the line */
                        break;
                }
                if (raw && c == '<' && line[i + 1] == '<' && line[i + 2] != '<' && (i == 0 || line[i - 1] != '<'))
                        heredoc = true;
                if (c == '(' || c == '[' || c == '{')
                        depth++;
                else if (c == ')' || c == ']' || c == '}')
                        depth--;
        }
        /* A string still open: multi-line strings continue; a one-line string ended by \ too (below). */
        if (quote && (triple || raw || quote == '`'))
                return true;
        if (depth > 0 || heredoc)
                return true;

        while (end > 0 && isspace((unsigned char) line[end - 1]))
                end--;
        if (end == 0)
                return false;
        if (line[end - 1] == ':' || line[end - 1] == '\\')
                return true;
        if (raw) {
                if (line[end - 1] == '|' || (end >= 2 && line[end - 1] == '&' && line[end - 2] == '&'))
                        return true;
                if (ends_with_word(line, end, "then") || ends_with_word(line, end, "do") ||
                    ends_with_word(line, end, "else") || ends_with_word(line, end, "in"))
                        return true;
        }
        return false;
}

int sbx_split_words(char *buf, char **words, size_t max) {
        char *in = buf, *out = buf;
        size_t n = 0;

        for (;;) {
                while (*in == ' ' || *in == '\t')
                        in++;
                if (!*in)
                        return (int) n;
                if (n >= max)
                        return -E2BIG;
                words[n++] = out;
                char quote = 0;
                for (; *in; in++) {
                        if (quote == '\'') {
                                if (*in == '\'')
                                        quote = 0;
                                else
                                        *out++ = *in;
                        } else if (*in == '\\' && in[1] && (!quote || in[1] == '"' || in[1] == '\\')) {
                                *out++ = *++in;
                        } else if (quote == '"') {
                                if (*in == '"')
                                        quote = 0;
                                else
                                        *out++ = *in;
                        } else if (*in == '\'' || *in == '"') {
                                quote = *in;
                        } else if (*in == ' ' || *in == '\t') {
                                break;
                        } else
                                *out++ = *in;
                }
                if (quote)
                        return -EINVAL;
                bool more = *in != 0;
                *out++ = 0; /* may overwrite the separator just consumed, never unread input */
                if (!more)
                        return (int) n;
                in++;
        }
}

/* ---- bus calls that keep an eye on signals ---- */

static int on_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Pending *p = userdata;
        (void) ret_error;
        p->done = true;
        if (sd_bus_message_is_method_error(reply, NULL))
                sd_bus_error_copy(&p->error, sd_bus_message_get_error(reply));
        else
                p->reply = sd_bus_message_ref(reply);
        return 0;
}

static int bus_poll_once(sd_bus *bus, int extra_fd, bool *ret_extra_ready) {
        struct pollfd p[2];
        struct timespec ts, *timeout = NULL;
        uint64_t until, now;
        size_t k = 0;
        int r;

        r = sd_bus_get_events(bus);
        if (r < 0)
                return r;
        p[k++] = (struct pollfd) { .fd = sd_bus_get_fd(bus), .events = (short) r };
        if (extra_fd >= 0)
                p[k++] = (struct pollfd) { .fd = extra_fd, .events = POLLIN };
        if (sd_bus_get_timeout(bus, &until) > 0 && until != UINT64_MAX) {
                clock_gettime(CLOCK_MONOTONIC, &ts);
                now = (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
                until = until <= now ? 0 : until - now;
                ts = (struct timespec) { .tv_sec = (time_t) (until / 1000000u),
                                         .tv_nsec = (long) (until % 1000000u * 1000u) };
                timeout = &ts;
        }
        if (ppoll(p, k, timeout, &wait_mask) < 0)
                return -errno;
        if (ret_extra_ready)
                *ret_extra_ready = k > 1 && p[1].revents != 0;
        return 0;
}

/* SbxCallFn: an async call and a loop that notices Ctrl-C (once: interrupt a running Exec, or
 * explain; twice: give up). */
static int repl_call(void *userdata, sd_bus_message *m, uint64_t usec, sd_bus_message **ret_reply,
                     sd_bus_error *ret_error) {
        Repl *repl = userdata;
        _cleanup_(sd_bus_slot_unrefp) sd_bus_slot *slot = NULL;
        Pending p = { .error = SD_BUS_ERROR_NULL };
        sig_atomic_t seen = 0;
        int r;

        const char *member = sd_bus_message_get_member(m);
        bool is_exec = member && strcmp(member, "Exec") == 0;

        got_sigint = 0;
        r = sd_bus_call_async(repl->bus, &slot, m, on_reply, &p, usec);
        if (r < 0)
                return r;
        while (!p.done) {
                r = sd_bus_process(repl->bus, NULL);
                if (r < 0)
                        goto fail;
                if (r > 0)
                        continue;
                if (got_term || (got_sigint > 0 && (repl->abort_on_first_interrupt || !repl->interactive)) ||
                    got_sigint >= 2) {
                        repl->aborted = true;
                        r = -ECANCELED;
                        goto fail;
                }
                if (got_sigint != seen) {
                        seen = got_sigint;
                        if (is_exec) {
                                /* The Exec's own reply still comes, with the code's output and exit code. */
                                r = sd_bus_call_method_async(repl->bus, NULL, SBX_BUS_NAME, repl->path,
                                                             SBX_SESSION_IFACE, "Interrupt", NULL, NULL, "");
                                fputs(r < 0 ? "\n[cannot interrupt it; Ctrl-C again closes the session and quits]\n"
                                            : "\n[interrupting; Ctrl-C again closes the session, losing its state, "
                                              "and quits]\n",
                                      stderr);
                        } else
                                fputs("\n[still running: a file transfer cannot be interrupted, only waited for;\n"
                                      " Ctrl-C again closes the session, losing its state, and quits]\n",
                                      stderr);
                }
                r = bus_poll_once(repl->bus, -1, NULL);
                if (r < 0 && r != -EINTR)
                        goto fail;
        }
        got_sigint = 0; /* a Ctrl-C that only got the hint is spent */
        if (p.reply) {
                *ret_reply = p.reply;
                return 0;
        }
        sd_bus_error_move(ret_error, &p.error);
        return -sd_bus_error_get_errno(ret_error) ?: -EIO;
fail:
        sd_bus_message_unref(p.reply);
        sd_bus_error_free(&p.error);
        return r;
}

/* ---- watching the session ---- */

static int on_properties_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Repl *repl = userdata;
        const char *iface;
        int r;
        (void) ret_error;

        r = sd_bus_message_read(m, "s", &iface);
        if (r < 0 || strcmp(iface, SBX_SESSION_IFACE) != 0)
                return 0;
        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        while (r > 0 && (r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *name;
                int closed;
                r = sd_bus_message_read(m, "s", &name);
                if (r < 0)
                        break;
                if (strcmp(name, "Closed") == 0 && sd_bus_message_read(m, "v", "b", &closed) > 0) {
                        if (closed && !repl->closed) {
                                repl->closed = true;
                                repl->closed_reason = "the session was closed (idle timeout, its VM died, or sbxctl "
                                                      "close)";
                        }
                } else if (sd_bus_message_skip(m, "v") < 0)
                        break;
                if (sd_bus_message_exit_container(m) < 0)
                        break;
        }
        return 0;
}

static int on_name_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Repl *repl = userdata;
        const char *name, *old_owner, *new_owner;
        (void) ret_error;

        if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) < 0)
                return 0;
        if (strcmp(name, SBX_BUS_NAME) == 0 && *old_owner && !repl->closed) {
                repl->closed = true;
                repl->closed_reason = "the broker went away, and the session with it";
        }
        return 0;
}

static int watch_session(Repl *repl) {
        _cleanup_free_ char *rule = NULL;
        int r;

        r = sd_bus_match_signal(repl->bus, NULL, SBX_BUS_NAME, repl->path, "org.freedesktop.DBus.Properties",
                                "PropertiesChanged", on_properties_changed, repl);
        if (r < 0)
                return r;
        if (asprintf(&rule, "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',"
                            "interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='%s'",
                     SBX_BUS_NAME) < 0)
                return -ENOMEM;
        return sd_bus_add_match(repl->bus, NULL, rule, on_name_owner_changed, repl);
}

/* ---- input ---- */

/* Returns 1 with a line (without its newline), 0 at the end of input, -EINTR on a signal, -ESHUTDOWN
 * when the session went away while we waited. */
static int repl_read_line(Repl *repl, char **ret) {
        int r;

        for (;;) {
                char *nl = repl->ilen > 0 ? memchr(repl->ibuf, '\n', repl->ilen) : NULL;
                if (nl || (repl->eof && repl->ilen > 0)) {
                        size_t len = nl ? (size_t) (nl - repl->ibuf) : repl->ilen;
                        char *line = strndup(repl->ibuf, len);
                        if (!line)
                                return -ENOMEM;
                        size_t used = nl ? len + 1 : len;
                        memmove(repl->ibuf, repl->ibuf + used, repl->ilen - used);
                        repl->ilen -= used;
                        /* A carriage return from a DOS file is not code. */
                        size_t l = strlen(line); /* stops at a NUL byte, which D-Bus strings cannot hold */
                        if (l > 0 && line[l - 1] == '\r')
                                line[l - 1] = 0;
                        *ret = line;
                        return 1;
                }
                if (repl->eof)
                        return 0;

                while ((r = sd_bus_process(repl->bus, NULL)) > 0)
                        ;
                if (r < 0 && !repl->closed) {
                        repl->closed = true;
                        repl->closed_reason = "lost the bus connection";
                }
                if (repl->closed) {
                        if (repl->interactive)
                                fputs("\n", stderr); /* off the prompt's line */
                        return -ESHUTDOWN;
                }
                if (got_term || got_sigint)
                        return -EINTR;

                bool ready = false;
                r = bus_poll_once(repl->bus, STDIN_FILENO, &ready);
                if (r < 0 && r != -EINTR)
                        return r;
                if (r < 0 || !ready)
                        continue;

                if (repl->ialloc - repl->ilen < 4096) {
                        if (repl->ialloc > 2 * SBX_CODE_MAX) {
                                /* A line longer than any code can be: drop it. */
                                fprintf(stderr, "sbx: input line too long, discarded\n");
                                repl->ilen = 0;
                        } else {
                                char *b = realloc(repl->ibuf, repl->ialloc + 65536);
                                if (!b)
                                        return -ENOMEM;
                                repl->ibuf = b;
                                repl->ialloc += 65536;
                        }
                }
                ssize_t n = read(STDIN_FILENO, repl->ibuf + repl->ilen, repl->ialloc - repl->ilen);
                if (n < 0 && (errno == EINTR || errno == EAGAIN))
                        continue;
                if (n <= 0) /* EOF, or EIO when the terminal went away */
                        repl->eof = true;
                else
                        repl->ilen += (size_t) n;
        }
}

/* ---- commands ---- */

static void print_help(void) {
        fputs("Commands (at the start of an input):\n"
              "  .help                    this text\n"
              "  .exit, .quit             close the session and quit (also Ctrl-D)\n"
              "  .upload LOCAL [GUEST]    copy a local file into the sandbox (GUEST: LOCAL's file name)\n"
              "  .download GUEST [LOCAL]  copy a file out of the sandbox (LOCAL: ./NAME, or - for stdout)\n"
              "  .ls [PATH]               list a directory in the sandbox (default: the home directory)\n"
              "  .info                    the session's object path, language, exec count, idle timeout\n"
              "Sandbox paths are relative to the home directory. Quote words with '...' or \"...\".\n\n"
              "Input: a line runs when you press Enter. A line that ends in ':' or '\\', or leaves a bracket,\n"
              "brace or parenthesis (or a multi-line string) open, starts a block: more lines follow at\n"
              "'... ' and the block runs at the first empty line. For raw (bash), a line ending in then, do,\n"
              "else, in, |, && or ||, or starting a here-document, starts a block too.\n"
              "Variables, imports and files persist from one input to the next.\n\n"
              "Ctrl-C at the prompt discards the input. While code runs, Ctrl-C once only says so (a running\n"
              "call cannot be cancelled; it ends by itself or at its timeout); Ctrl-C twice closes the\n"
              "session (its state is lost) and quits.\n",
              stderr);
}

static void print_info(Repl *repl) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *lang = NULL;
        uint32_t count = 0, idle = 0;
        int r;

        fprintf(stderr, "session:      %s\n", repl->path);
        r = sd_bus_get_property_string(repl->bus, SBX_BUS_NAME, repl->path, SBX_SESSION_IFACE, "Language", &error,
                                       &lang);
        if (r < 0) {
                fprintf(stderr, "sbx: cannot read the session's properties: %s\n", error.message ?: strerror(-r));
                return;
        }
        fprintf(stderr, "language:     %s\n", lang);
        if (sd_bus_get_property_trivial(repl->bus, SBX_BUS_NAME, repl->path, SBX_SESSION_IFACE, "ExecCount", NULL,
                                        'u', &count) >= 0)
                fprintf(stderr, "execs:        %u\n", count);
        if (sd_bus_get_property_trivial(repl->bus, SBX_BUS_NAME, repl->path, SBX_SESSION_IFACE,
                                        "IdleTimeoutSeconds", NULL, 'u', &idle) >= 0)
                fprintf(stderr, "idle timeout: %u s\n", idle);
        if (repl->timeout_s)
                fprintf(stderr, "exec timeout: %u s\n", repl->timeout_s);
}

/* After a failed call whose error was printed: true when the session cannot go on. */
static bool repl_lost(Repl *repl, const sd_bus_error *e, int r) {
        if (repl->aborted)
                return true;
        if (sbx_session_error_is_fatal(e, r) || sd_bus_is_open(repl->bus) <= 0) {
                repl->closed = true;
                repl->closed_reason = NULL; /* the error said it */
                return true;
        }
        return false;
}

/* Returns > 0 to quit, 0 to go on. */
static int repl_command(Repl *repl, const char *line) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *buf = strdup(line);
        char *w[4];
        int n, st;

        if (!buf)
                return 1;
        n = sbx_split_words(buf, w, ELEMENTSOF(w));
        if (n == -EINVAL) {
                fprintf(stderr, "sbx: unterminated quote\n");
                return 0;
        }
        if (n <= 0) {
                fprintf(stderr, "sbx: too many words (try .help)\n");
                return 0;
        }
        if (strcmp(w[0], ".exit") == 0 || strcmp(w[0], ".quit") == 0)
                return 1;
        if (strcmp(w[0], ".help") == 0) {
                print_help();
                return 0;
        }
        if (strcmp(w[0], ".info") == 0) {
                print_info(repl);
                return 0;
        }
        if (strcmp(w[0], ".upload") == 0) {
                _cleanup_free_ char *guest = NULL;
                if (n < 2 || n > 3) {
                        fprintf(stderr, "usage: .upload LOCAL [GUEST]\n");
                        return 0;
                }
                if (strcmp(w[1], "-") == 0) {
                        fprintf(stderr, "sbx: .upload cannot read stdin (it carries the session's input)\n");
                        return 0;
                }
                guest = n == 3 ? strdup(w[2]) : sbx_path_basename(w[1]);
                if (!guest) {
                        fprintf(stderr, "sbx: cannot derive a file name from '%s'; give GUEST\n", w[1]);
                        return 0;
                }
                st = sbx_upload(repl->bus, repl_call, repl, repl->path, w[1], guest, repl->interactive, &error);
        } else if (strcmp(w[0], ".download") == 0) {
                if (n < 2 || n > 3) {
                        fprintf(stderr, "usage: .download GUEST [LOCAL]\n");
                        return 0;
                }
                st = sbx_download(repl->bus, repl_call, repl, repl->path, w[1], n == 3 ? w[2] : NULL,
                                  repl->interactive, &error);
        } else if (strcmp(w[0], ".ls") == 0) {
                if (n > 2) {
                        fprintf(stderr, "usage: .ls [PATH]\n");
                        return 0;
                }
                st = sbx_list_files(repl->bus, repl_call, repl, repl->path, n == 2 ? w[1] : "", &error);
        } else
                return -ENOENT; /* not ours: it is code */

        if (st != 0 && repl_lost(repl, &error, -EIO))
                return 1;
        return 0;
}

static bool is_command(const char *line) {
        static const char *const names[] = { ".exit", ".quit", ".help", ".info", ".upload", ".download", ".ls" };
        const char *p = line + strspn(line, " \t");
        size_t len = strcspn(p, " \t");

        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (strlen(names[i]) == len && strncmp(p, names[i], len) == 0)
                        return true;
        return false;
}

static int exit_status_of(int32_t code) {
        if (code == -1)
                return 124;
        if (code < 0 || code > 255)
                return 1;
        return code;
}

static bool result_bool(sd_bus_message *reply, const char *key) {
        int v = 0;
        if (sbx_dict_find(reply, key, "b") > 0)
                (void) sd_bus_message_read(reply, "b", &v);
        return v;
}

/* Returns > 0 to quit, 0 to go on. */
static int repl_exec(Repl *repl, const char *code) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int32_t exit_code = 1;
        int r;

        if (strlen(code) > SBX_CODE_MAX) {
                fprintf(stderr, "sbx: input larger than 1 MiB, not run\n");
                return 0;
        }
        r = sbx_exec_message(repl->bus, repl->path, code, repl->timeout_s, STDOUT_FILENO, STDERR_FILENO, &m);
        if (r < 0) {
                fprintf(stderr, "sbx: cannot build the request: %s\n", strerror(-r));
                return 1;
        }
        fflush(stdout);
        r = repl_call(repl, m, sbx_exec_call_timeout(repl->timeout_s), &reply, &error);
        if (r < 0) {
                if (repl->aborted)
                        return 1;
                if (error.name)
                        fprintf(stderr, "sbx: %s: %s\n", error.name, error.message ?: "(no message)");
                else
                        fprintf(stderr, "sbx: exec failed: %s\n", strerror(-r));
                repl->status = error.name ? sbx_session_error_status(&error) : 1;
                return repl_lost(repl, &error, r) ? 1 : 0;
        }

        if (sbx_dict_find(reply, "exit_code", "i") > 0)
                (void) sd_bus_message_read(reply, "i", &exit_code);
        bool timed_out = result_bool(reply, "timed_out");
        repl->status = timed_out ? 124 : exit_status_of(exit_code);
        if (timed_out)
                fputs("[timed out]\n", stderr);
        else if (exit_code != 0)
                fprintf(stderr, "[exit %d]\n", exit_code);
        if (result_bool(reply, "stdout_truncated"))
                fputs("[stdout truncated]\n", stderr);
        if (result_bool(reply, "stderr_truncated"))
                fputs("[stderr truncated]\n", stderr);
        if (result_bool(reply, "state_reset"))
                fputs("[state reset]\n", stderr);
        return 0;
}

static const char *primary_prompt(const char *language) {
        if (strcmp(language, "python") == 0)
                return ">>> ";
        if (strcmp(language, "javascript") == 0)
                return "js> ";
        return "$ ";
}

static int append_line(char **block, size_t *len, const char *line) {
        size_t n = strlen(line);
        char *b = realloc(*block, *len + n + 2);
        if (!b)
                return -ENOMEM;
        memcpy(b + *len, line, n);
        b[*len + n] = '\n';
        b[*len + n + 1] = 0;
        *block = b;
        *len += n + 1;
        return 0;
}

static int repl_loop(Repl *repl) {
        _cleanup_free_ char *block = NULL;
        size_t block_len = 0;
        bool in_block = false;
        int r;

        for (;;) {
                _cleanup_free_ char *line = NULL;

                if (repl->interactive) {
                        fputs(in_block ? "... " : primary_prompt(repl->language), stderr);
                        fflush(stderr);
                }
                r = repl_read_line(repl, &line);
                if (r == -EINTR) {
                        if (got_term || !repl->interactive)
                                return -EINTR;
                        /* Ctrl-C at the prompt: drop what was typed so far. */
                        got_sigint = 0;
                        fputs("\n", stderr);
                        in_block = false;
                        block_len = 0;
                        continue;
                }
                if (r < 0)
                        return r;
                if (r == 0) {
                        if (repl->interactive)
                                fputs("\n", stderr);
                        if (in_block && block_len > 0)
                                (void) repl_exec(repl, block);
                        return 0;
                }

                bool blank = line[strspn(line, " \t\r\f\v")] == 0;
                if (in_block) {
                        if (!blank) {
                                if (append_line(&block, &block_len, line) < 0)
                                        return -ENOMEM;
                                continue;
                        }
                        in_block = false;
                        if (repl_exec(repl, block) > 0)
                                return 0;
                        block_len = 0;
                        continue;
                }
                if (blank)
                        continue;
                if (is_command(line)) {
                        r = repl_command(repl, line);
                        if (r > 0)
                                return 0;
                        if (r == 0)
                                continue;
                }
                block_len = 0;
                if (append_line(&block, &block_len, line) < 0)
                        return -ENOMEM;
                if (sbx_line_opens_block(line, repl->language)) {
                        in_block = true;
                        continue;
                }
                if (repl_exec(repl, block) > 0)
                        return 0;
                block_len = 0;
        }
}

static void session_usage(FILE *f) {
        fputs("Usage: sbx session [-l LANG] [-m MB] [-e KEY=VALUE]... [-t SECONDS] [--idle-timeout SECONDS] [-q]\n"
              "  -l, --language LANG     python (default), javascript or raw\n"
              "  -m, --memory MB         guest memory, at least 128\n"
              "  -e, --env KEY=VALUE     environment variable for the whole session (repeatable)\n"
              "  -t, --timeout SECONDS   per input, 1-300 (default: the broker's)\n"
              "      --idle-timeout S    close the session after S idle seconds, 10-3600 (default 300)\n"
              "  -q, --quiet             no banner\n"
              "Reads code from stdin: with a terminal, interactively (type .help); otherwise the same rules\n"
              "apply without banner or prompts.\n",
              f);
}

int sbx_session(SbxBusKind kind, const char *address, int argc, char **argv) {
        static const struct option options[] = {
                { "language", required_argument, NULL, 'l' }, { "memory", required_argument, NULL, 'm' },
                { "env", required_argument, NULL, 'e' },      { "timeout", required_argument, NULL, 't' },
                { "idle-timeout", required_argument, NULL, 'I' }, { "quiet", no_argument, NULL, 'q' },
                { "help", no_argument, NULL, 'h' },           {},
        };
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        char *env_store[SBX_ENV_COUNT_MAX + 1];
        SessionOptions so = { .env = env_store };
        Repl repl = { .status = 0 };
        bool quiet = false;
        const char *path;
        int c, r;

        while ((c = getopt_long(argc, argv, "l:m:e:t:qh", options, NULL)) >= 0)
                switch (c) {
                case 'l':
                        so.language = sbx_language_normalize(optarg);
                        if (strcmp(so.language, "python") != 0 && strcmp(so.language, "javascript") != 0 &&
                            strcmp(so.language, "raw") != 0) {
                                fprintf(stderr, "sbx: unknown language '%s' (python, javascript or raw)\n", optarg);
                                return 2;
                        }
                        break;
                case 'm':
                        if (sbx_parse_u32(optarg, "memory", &so.memory_mb) < 0)
                                return 2;
                        break;
                case 'e':
                        if (sbx_add_env_arg(so.env, &so.n_env, SBX_ENV_COUNT_MAX + 1, optarg) < 0)
                                return 2;
                        break;
                case 't':
                        if (sbx_parse_u32(optarg, "timeout", &repl.timeout_s) < 0)
                                return 2;
                        if (repl.timeout_s < SBX_TIMEOUT_MIN_S || repl.timeout_s > SBX_TIMEOUT_MAX_S) {
                                fprintf(stderr, "sbx: --timeout must be %u-%u seconds\n", SBX_TIMEOUT_MIN_S,
                                        SBX_TIMEOUT_MAX_S);
                                return 2;
                        }
                        break;
                case 'I':
                        if (sbx_parse_u32(optarg, "idle timeout", &so.idle_timeout_s) < 0)
                                return 2;
                        if (so.idle_timeout_s < SBX_IDLE_TIMEOUT_MIN_S || so.idle_timeout_s > SBX_IDLE_TIMEOUT_MAX_S) {
                                fprintf(stderr, "sbx: --idle-timeout must be %u-%u seconds\n", SBX_IDLE_TIMEOUT_MIN_S,
                                        SBX_IDLE_TIMEOUT_MAX_S);
                                return 2;
                        }
                        break;
                case 'q':
                        quiet = true;
                        break;
                case 'h':
                        session_usage(stdout);
                        return 0;
                default:
                        return 2;
                }
        if (optind < argc) {
                fprintf(stderr, "sbx session: unexpected argument '%s' (code comes from stdin)\n", argv[optind]);
                return 2;
        }
        repl.language = so.language ?: "python";
        repl.interactive = isatty(STDIN_FILENO);

        r = sbx_bus_connect(kind, address, &bus);
        if (r < 0) {
                fprintf(stderr, "sbx: cannot connect to the bus: %s\n"
                                "     (start the suite with scripts/sbx-up.sh, or set SBX_BUS_ADDRESS)\n",
                        strerror(-r));
                return 1;
        }
        repl.bus = bus;
        r = install_signals();
        if (r < 0) {
                fprintf(stderr, "sbx: sigaction: %s\n", strerror(-r));
                return 1;
        }

        if (repl.interactive && !quiet)
                fprintf(stderr, "sbx: starting a %s session…\n", repl.language);
        r = sbx_open_session_message(bus, &so, &m);
        if (r < 0) {
                fprintf(stderr, "sbx: failed to build the request: %s\n", strerror(-r));
                return 1;
        }
        repl.abort_on_first_interrupt = true;
        r = repl_call(&repl, m, SBX_OPEN_SESSION_TIMEOUT_USEC, &reply, &error);
        repl.abort_on_first_interrupt = false;
        if (r < 0) {
                if (repl.aborted)
                        return got_term ? 128 + got_term : 130;
                if (error.name && sd_bus_error_has_name(&error, SD_BUS_ERROR_UNKNOWN_METHOD))
                        fprintf(stderr, "sbx: this broker has no sessions (%s)\n", error.message ?: "");
                else
                        fprintf(stderr, "sbx: %s: %s\n", error.name ?: "error", error.message ?: strerror(-r));
                return error.name ? sbx_session_error_status(&error) : 1;
        }
        r = sd_bus_message_read(reply, "o", &path);
        if (r < 0 || !(repl.path = strdup(path))) {
                fprintf(stderr, "sbx: unexpected reply to OpenSession\n");
                return 1;
        }
        r = watch_session(&repl);
        if (r < 0)
                fprintf(stderr, "sbx: warning: cannot watch the session for closing: %s\n", strerror(-r));

        if (repl.interactive && !quiet) {
                uint32_t idle = so.idle_timeout_s;
                if (idle == 0)
                        (void) sd_bus_get_property_trivial(bus, SBX_BUS_NAME, repl.path, SBX_SESSION_IFACE,
                                                           "IdleTimeoutSeconds", NULL, 'u', &idle);
                fprintf(stderr, "sbx session · %s · %s\n", repl.language, repl.path);
                fputs("Enter runs a line; a line ending in ':' or '\\' or with an open bracket starts a block\n"
                      "that runs at an empty line. State persists between inputs.\n",
                      stderr);
                fprintf(stderr, ".help for commands · .exit or Ctrl-D to quit");
                if (idle > 0)
                        fprintf(stderr, " · closes after %u s idle", idle);
                fputs("\n", stderr);
        }

        r = repl_loop(&repl);
        if (r == -ESHUTDOWN || (r >= 0 && repl.closed)) {
                if (repl.closed_reason)
                        fprintf(stderr, "sbx: %s\n", repl.closed_reason);
                repl.status = 1;
        } else if (repl.aborted || r == -EINTR) {
                if (repl.interactive || got_term)
                        fprintf(stderr, "%ssbx: interrupted, closing the session\n", repl.interactive ? "\n" : "");
                repl.status = got_term ? 128 + got_term : 130;
        } else if (r < 0) {
                fprintf(stderr, "sbx: %s\n", strerror(-r));
                repl.status = 1;
        }
        if (!repl.closed)
                sbx_session_close(bus, repl.path);
        free(repl.path);
        free(repl.ibuf);
        return repl.status;
}
