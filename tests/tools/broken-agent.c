/* SPDX-License-Identifier: Apache-2.0 */
/* broken-agent: a deliberately misbehaving guest agent, for the fault suite
 * only (tests/integration/test-broken-agent.sh). It replaces /init in a
 * test-only initramfs (BUILDDIR/tests/tools/initramfs-broken.cpio): it mounts
 * proc, sysfs and devtmpfs and opens the virtio-serial port org.sbx.agent.0
 * as the real agent does (guest/agent/init.c),
 * says a valid HELLO, reads the first H_EXEC and then misbehaves as the code
 * text of that exec says (one mode per run; surrounding blanks are ignored):
 *
 *   ok                 a valid OUTPUT and EXIT 0 (the control: the harness works)
 *   garbage            random bytes
 *   bad-magic          a frame whose magic is not "SBX1"
 *   oversized          a header announcing 16 MiB (the host takes 64 KiB), then data
 *   truncated          half a frame, then power off (EOF on the channel)
 *   flood              valid OUTPUT frames on both streams, without end
 *   bad-tlv            a valid header whose TLV item runs past the payload
 *   unknown-type       a well-formed frame of a type that does not exist
 *   double-exit        OUTPUT, EXIT 42, EXIT 43
 *   exit-then-garbage  OUTPUT, EXIT 42, then random bytes
 *   silent             nothing at all
 *   hello-again        a second HELLO
 *
 * Anything else is answered with a G_ERROR. After its mode it keeps reading
 * the port (so the host never blocks on it) and powers off on EOF. Never
 * built into anything but that test initramfs. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "fdio.h"
#include "frame.h"
#include "init.h"
#include "macro.h"
#include "proto.h"

#define PORT_TIMEOUT_USEC (10u * 1000000u)
#define MODE_MAX 64u

static bool streq(const char *a, const char *b) {
        return strcmp(a, b) == 0;
}

static void say(const char *fmt, const char *arg) {
        fprintf(stderr, "broken-agent: ");
        fprintf(stderr, fmt, arg);
        fputc('\n', stderr);
}

static void sleep_msec(unsigned ms) {
        struct timespec ts = { .tv_sec = ms / 1000u, .tv_nsec = (long) (ms % 1000u) * 1000000L };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static int send_msg(int fd, SbxMsg *m) {
        int r = sbx_msg_send(m, fd);
        sbx_msg_done(m);
        return r;
}

static int send_hello(int fd) {
        SbxMsg m;

        sbx_msg_begin(&m, SBX_G_HELLO);
        sbx_msg_put_u32(&m, SBX_T_VERSION, SBX_PROTO_VERSION);
        sbx_msg_put_u64(&m, SBX_T_UPTIME_MS, now_usec(CLOCK_BOOTTIME) / 1000u);
        return send_msg(fd, &m);
}

static int send_output(int fd, SbxStream stream, const void *data, size_t n) {
        SbxMsg m;

        sbx_msg_begin(&m, SBX_G_OUTPUT);
        sbx_msg_put_u8(&m, SBX_T_STREAM, (uint8_t) stream);
        sbx_msg_put(&m, SBX_T_DATA, data, n);
        return send_msg(fd, &m);
}

static int send_exit(int fd, int32_t code) {
        SbxMsg m;

        sbx_msg_begin(&m, SBX_G_EXIT);
        sbx_msg_put_i32(&m, SBX_T_EXIT_CODE, code);
        sbx_msg_put_u64(&m, SBX_T_EXEC_MS, 1);
        sbx_msg_put_u8(&m, SBX_T_TIMED_OUT, 0);
        return send_msg(fd, &m);
}

static int send_error(int fd, const char *message) {
        SbxMsg m;

        sbx_msg_begin(&m, SBX_G_ERROR);
        sbx_msg_put_str(&m, SBX_T_MESSAGE, message);
        return send_msg(fd, &m);
}

/* Random bytes that do not start with the frame magic. */
static int send_garbage(int fd, size_t n) {
        _cleanup_free_ uint8_t *buf = malloc(n);

        if (!buf)
                return -ENOMEM;
        for (size_t i = 0; i < n;) {
                ssize_t k = getrandom(buf + i, n - i, 0);
                if (k < 0)
                        return -errno;
                i += (size_t) k;
        }
        if (n >= 4 && memcmp(buf, "SBX1", 4) == 0)
                buf[0] = 'X';
        return loop_write(fd, buf, n);
}

/* A finished, valid OUTPUT frame for the caller to damage: m->data holds header + payload. */
static int build_output(SbxMsg *m, const char *text) {
        sbx_msg_begin(m, SBX_G_OUTPUT);
        sbx_msg_put_u8(m, SBX_T_STREAM, SBX_STREAM_STDOUT);
        sbx_msg_put(m, SBX_T_DATA, text, strlen(text));
        int r = sbx_msg_finish(m);
        if (r < 0)
                sbx_msg_done(m);
        return r;
}

static void put_le32(uint8_t *p, uint32_t v) {
        for (unsigned i = 0; i < 4; i++)
                p[i] = (uint8_t) (v >> (8 * i));
}

static int mode_flood(int fd) {
        static char chunk[SBX_OUTPUT_CHUNK_MAX];
        int r;

        memset(chunk, 'x', sizeof chunk);
        for (size_t i = 63; i < sizeof chunk; i += 64)
                chunk[i] = '\n';
        for (;;) {
                r = send_output(fd, SBX_STREAM_STDOUT, chunk, sizeof chunk);
                if (r < 0)
                        return r;
                r = send_output(fd, SBX_STREAM_STDERR, chunk, 1024);
                if (r < 0)
                        return r;
        }
}

static int misbehave(int fd, const char *mode) {
        SbxMsg m;
        int r;

        if (streq(mode, "ok")) {
                r = send_output(fd, SBX_STREAM_STDOUT, "broken-agent ok\n", 16);
                return r < 0 ? r : send_exit(fd, 0);
        }
        if (streq(mode, "garbage"))
                return send_garbage(fd, 64 * 1024);
        if (streq(mode, "bad-magic")) {
                r = build_output(&m, "bad magic\n");
                if (r < 0)
                        return r;
                memcpy(m.data, "XBS1", 4);
                r = loop_write(fd, m.data, m.len);
                sbx_msg_done(&m);
                return r;
        }
        if (streq(mode, "oversized")) {
                static uint8_t zeros[64 * 1024];
                uint8_t h[SBX_FRAME_HEADER_SIZE] = { 0 };

                put_le32(h, SBX_FRAME_MAGIC);
                h[4] = SBX_PROTO_VERSION;
                h[5] = SBX_G_OUTPUT;
                put_le32(h + 8, 16u * 1024u * 1024u);
                r = loop_write(fd, h, sizeof h);
                /* The host should have given up at the header; keep pushing as if it had not. */
                for (unsigned i = 0; r >= 0 && i < 256; i++)
                        r = loop_write(fd, zeros, sizeof zeros);
                return r;
        }
        if (streq(mode, "truncated")) {
                r = build_output(&m, "this frame is cut short\n");
                if (r < 0)
                        return r;
                r = loop_write(fd, m.data, SBX_FRAME_HEADER_SIZE + 4);
                sbx_msg_done(&m);
                if (r < 0)
                        return r;
                sleep_msec(500);
                say("%s: powering off mid-frame", mode);
                guest_poweroff();
        }
        if (streq(mode, "flood"))
                return mode_flood(fd);
        if (streq(mode, "bad-tlv")) {
                r = build_output(&m, "bad tlv\n");
                if (r < 0)
                        return r;
                /* The first item (STREAM) claims 1000 bytes; the payload is far shorter. */
                put_le32(m.data + SBX_FRAME_HEADER_SIZE + 2, 1000);
                r = loop_write(fd, m.data, m.len);
                sbx_msg_done(&m);
                return r;
        }
        if (streq(mode, "unknown-type")) {
                sbx_msg_begin(&m, 200);
                sbx_msg_put_str(&m, SBX_T_MESSAGE, "no such type");
                return send_msg(fd, &m);
        }
        if (streq(mode, "double-exit") || streq(mode, "exit-then-garbage")) {
                r = send_output(fd, SBX_STREAM_STDOUT, "first\n", 6);
                if (r >= 0)
                        r = send_exit(fd, 42);
                if (r < 0)
                        return r;
                if (streq(mode, "double-exit"))
                        return send_exit(fd, 43);
                return send_garbage(fd, 4096);
        }
        if (streq(mode, "silent"))
                return 0;
        if (streq(mode, "hello-again"))
                return send_hello(fd);

        say("unknown mode '%s'", mode);
        return send_error(fd, "broken-agent: unknown mode");
}

/* Reads frames until the first H_EXEC and copies its code, trimmed, into mode. */
static int read_mode(int fd, char mode[static MODE_MAX]) {
        SbxFrameReader reader;
        int r;

        sbx_frame_reader_init(&reader, SBX_HOST_FRAME_MAX);
        for (;;) {
                const uint8_t *p;
                size_t n;
                uint8_t type;

                r = sbx_frame_reader_next(&reader, &type, &p, &n);
                if (r < 0)
                        break;
                if (r == 0) {
                        r = sbx_frame_reader_fill(&reader, fd);
                        if (r == -EAGAIN || r == -EINTR)
                                continue;
                        if (r <= 0) {
                                r = r ?: -EPIPE;
                                break;
                        }
                        continue;
                }
                if (type != SBX_H_EXEC)
                        continue;

                SbxTlvIter it;
                uint16_t tag;
                const uint8_t *v;
                uint32_t len;

                mode[0] = 0;
                sbx_tlv_iter_init(&it, p, n);
                while ((r = sbx_tlv_next(&it, &tag, &v, &len)) > 0) {
                        if (tag != SBX_T_CODE)
                                continue;
                        while (len > 0 && strchr(" \t\r\n", v[0])) {
                                v++;
                                len--;
                        }
                        while (len > 0 && strchr(" \t\r\n", v[len - 1]))
                                len--;
                        len = MIN(len, MODE_MAX - 1);
                        memcpy(mode, v, len);
                        mode[len] = 0;
                }
                break;
        }
        sbx_frame_reader_done(&reader);
        return r < 0 ? r : 0;
}

int main(void) {
        char mode[MODE_MAX] = "";
        char buf[4096];
        int fd, r;

        if (getpid() != 1) {
                fprintf(stderr, "broken-agent: a test guest's init; it only runs as PID 1.\n");
                return 1;
        }
        /* The real agent's early setup and port lookup (guest/agent/init.c): only the protocol is broken. */
        GuestOptions opts;
        if (guest_early_setup(&opts) < 0) {
                say("%s", "early setup failed");
                guest_poweroff();
        }
        fd = guest_open_port(SBX_AGENT_PORT_NAME, PORT_TIMEOUT_USEC);
        if (fd < 0) {
                say("no port %s", SBX_AGENT_PORT_NAME);
                guest_poweroff();
        }
        if (send_hello(fd) < 0) {
                say("%s", "sending HELLO failed");
                guest_poweroff();
        }
        if (opts.probe)
                guest_poweroff();

        r = read_mode(fd, mode);
        if (r < 0) {
                say("%s", "the host went away before an exec");
                guest_poweroff();
        }
        say("mode '%s'", mode);
        r = misbehave(fd, mode);
        say(r < 0 ? "%s: the host stopped listening" : "%s: done; waiting for the host to go away", mode);

        /* Never exit (PID 1): drain whatever the host still sends, power off on EOF. */
        for (;;) {
                ssize_t k = read(fd, buf, sizeof buf);
                if (k == 0 || (k < 0 && errno != EINTR && errno != EAGAIN))
                        break;
        }
        guest_poweroff();
}
