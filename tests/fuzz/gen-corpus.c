/* SPDX-License-Identifier: Apache-2.0 */
/* Writes the committed seed corpus of the frame fuzz targets:
 *
 *   ninja -C build tests/fuzz/gen-corpus
 *   build/tests/fuzz/gen-corpus tests/fuzz/corpus
 *
 * Frames are built with the real encoder (SbxMsg), so the seeds stay valid
 * when the wire format changes: regenerate them then. A few deliberately
 * broken streams are included so the fuzzer starts from the error paths too.
 * The text corpora (config, validate) are plain files, edited by hand. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "frame.h"
#include "proto.h"

typedef struct Buf {
        uint8_t data[4096];
        size_t len;
} Buf;

static void append(Buf *b, SbxMsg *m) {
        if (sbx_msg_finish(m) < 0 || b->len + m->len > sizeof b->data) {
                fprintf(stderr, "seed too large\n");
                exit(EXIT_FAILURE);
        }
        memcpy(b->data + b->len, m->data, m->len);
        b->len += m->len;
        sbx_msg_done(m);
}

static void write_seed(const char *dir, const char *target, const char *name, const void *data, size_t len) {
        char path[512];

        snprintf(path, sizeof path, "%s/%s", dir, target);
        if (mkdir(path, 0755) < 0 && errno != EEXIST) {
                perror(path);
                exit(EXIT_FAILURE);
        }
        snprintf(path, sizeof path, "%s/%s/%s", dir, target, name);
        FILE *f = fopen(path, "we");
        if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
                perror(path);
                exit(EXIT_FAILURE);
        }
        printf("%s (%zu bytes)\n", path, len);
}

static void seed(const char *dir, const char *target, const char *name, Buf *b) {
        write_seed(dir, target, name, b->data, b->len);
        b->len = 0;
}

static void guest_hello(Buf *b) {
        SbxMsg m;
        sbx_msg_begin(&m, SBX_G_HELLO);
        sbx_msg_put_u32(&m, SBX_T_VERSION, SBX_PROTO_VERSION);
        sbx_msg_put_u64(&m, SBX_T_UPTIME_MS, 312);
        append(b, &m);
}

static void guest_output(Buf *b, SbxStream stream, const char *data, size_t n) {
        SbxMsg m;
        sbx_msg_begin(&m, SBX_G_OUTPUT);
        sbx_msg_put_u8(&m, SBX_T_STREAM, stream);
        sbx_msg_put(&m, SBX_T_DATA, data, n);
        append(b, &m);
}

static void guest_exit(Buf *b, int32_t code, uint8_t timed_out) {
        SbxMsg m;
        sbx_msg_begin(&m, SBX_G_EXIT);
        sbx_msg_put_i32(&m, SBX_T_EXIT_CODE, code);
        sbx_msg_put_u64(&m, SBX_T_EXEC_MS, 41);
        sbx_msg_put_u8(&m, SBX_T_TIMED_OUT, timed_out);
        append(b, &m);
}

static void gen_guest(const char *dir) {
        const char *t = "fuzz-guest-frame";
        Buf b = {};
        SbxMsg m;

        guest_hello(&b);
        seed(dir, t, "hello", &b);

        guest_output(&b, SBX_STREAM_STDOUT, "hello\n", 6);
        seed(dir, t, "output-stdout", &b);

        static const char binary[] = "bad \xff\xc3 utf8 \0 nul \xf0\x9f\x98\x80\n";
        guest_output(&b, SBX_STREAM_STDERR, binary, sizeof binary - 1);
        seed(dir, t, "output-stderr-binary", &b);

        guest_exit(&b, 0, 0);
        seed(dir, t, "exit", &b);

        sbx_msg_begin(&m, SBX_G_ERROR);
        sbx_msg_put_str(&m, SBX_T_MESSAGE, "python3: not found");
        append(&b, &m);
        seed(dir, t, "error", &b);

        sbx_msg_begin(&m, SBX_G_PONG);
        sbx_msg_put(&m, SBX_T_DATA, "\x01\x02\x03\x04", 4);
        append(&b, &m);
        seed(dir, t, "pong", &b);

        /* A whole run: hello, output on both streams, a timeout exit. */
        guest_hello(&b);
        guest_output(&b, SBX_STREAM_STDOUT, "1\n2\n", 4);
        guest_output(&b, SBX_STREAM_STDERR, "Traceback\n", 10);
        guest_output(&b, SBX_STREAM_STDOUT, "", 0);
        guest_exit(&b, 137, 1);
        seed(dir, t, "session", &b);

        /* Unknown type and tag, and an empty payload. */
        sbx_msg_begin(&m, 99);
        sbx_msg_put_u64(&m, 0x7777, 1);
        append(&b, &m);
        sbx_msg_begin(&m, SBX_G_HELLO);
        append(&b, &m);
        seed(dir, t, "unknown-type-tag", &b);

        /* A frame cut short, then one with a truncated TLV. */
        guest_output(&b, SBX_STREAM_STDOUT, "truncated", 9);
        b.len -= 4;
        seed(dir, t, "truncated-frame", &b);
        guest_output(&b, SBX_STREAM_STDOUT, "xy", 2);
        b.data[SBX_FRAME_HEADER_SIZE + 7 + 2] = 50; /* DATA length 2 -> 50 */
        seed(dir, t, "truncated-tlv", &b);

        /* Bad magic after a good frame; oversized length. */
        guest_hello(&b);
        size_t second = b.len;
        guest_exit(&b, 1, 0);
        b.data[second] = 'X';
        seed(dir, t, "bad-magic", &b);
        guest_hello(&b);
        b.data[11] = 0x7f;
        seed(dir, t, "oversized", &b);
}

static void gen_worker(const char *dir) {
        const char *t = "fuzz-worker-frame";
        Buf b = {};
        SbxMsg m;

        /* One run: the open, then one exec. */
        sbx_msg_begin(&m, SBX_B_SESSION_OPEN);
        sbx_msg_put_u64(&m, SBX_T_RUN_ID, 7);
        sbx_msg_put_str(&m, SBX_T_LANGUAGE, "python");
        sbx_msg_put_str(&m, SBX_T_ENV, "LANG=C.UTF-8");
        sbx_msg_put_u32(&m, SBX_T_MEMORY_MB, 256);
        sbx_msg_put_u32(&m, SBX_T_VCPUS, 1);
        sbx_msg_put_str(&m, SBX_T_ACCEL, "tcg");
        append(&b, &m);
        sbx_msg_begin(&m, SBX_B_EXEC);
        sbx_msg_put_u64(&m, SBX_T_RUN_ID, 7);
        sbx_msg_put_str(&m, SBX_T_CODE, "import os\nprint(os.environ['A'])\n");
        sbx_msg_put_u32(&m, SBX_T_TIMEOUT_MS, 30000);
        sbx_msg_put_str(&m, SBX_T_ENV, "A=1");
        append(&b, &m);
        seed(dir, t, "run", &b);

        sbx_msg_begin(&m, SBX_B_INTERRUPT);
        append(&b, &m);
        seed(dir, t, "interrupt", &b);

        sbx_msg_begin(&m, SBX_W_SESSION_READY);
        sbx_msg_put_u64(&m, SBX_T_BOOT_MS, 180);
        sbx_msg_put_u64(&m, SBX_T_SETUP_MS, 5);
        sbx_msg_put_str(&m, SBX_T_ACCEL, "tcg");
        sbx_msg_put_u32(&m, SBX_T_QEMU_PID, 4242);
        sbx_msg_put_str(&m, SBX_T_SNAPSHOT_TIER, "cold");
        append(&b, &m);
        sbx_msg_begin(&m, SBX_W_OUTPUT);
        sbx_msg_put_u8(&m, SBX_T_STREAM, SBX_STREAM_STDOUT);
        sbx_msg_put_str(&m, SBX_T_DATA, "1\n");
        append(&b, &m);
        sbx_msg_begin(&m, SBX_W_RESULT);
        sbx_msg_put_i32(&m, SBX_T_EXIT_CODE, 0);
        sbx_msg_put_u64(&m, SBX_T_EXEC_MS, 12);
        sbx_msg_put_u64(&m, SBX_T_CPU_MS, 150);
        sbx_msg_put_u64(&m, SBX_T_MEM_PEAK_MB, 97);
        sbx_msg_put_u64(&m, SBX_T_CPU_THROTTLED, 0);
        sbx_msg_put_u8(&m, SBX_T_TIMED_OUT, 0);
        sbx_msg_put_u8(&m, SBX_T_STDOUT_TRUNC, 0);
        sbx_msg_put_u8(&m, SBX_T_STDERR_TRUNC, 1);
        sbx_msg_put_str(&m, SBX_T_ACCEL, "kvm");
        append(&b, &m);
        seed(dir, t, "session", &b);

        sbx_msg_begin(&m, SBX_W_ERROR);
        sbx_msg_put_u32(&m, SBX_T_ERROR_KIND, SBX_ERR_BOOT_TIMEOUT);
        sbx_msg_put_str(&m, SBX_T_MESSAGE, "guest did not start within 20000 ms");
        append(&b, &m);
        seed(dir, t, "error", &b);

        sbx_msg_begin(&m, SBX_W_RESULT);
        sbx_msg_put_i32(&m, SBX_T_EXIT_CODE, -1);
        sbx_msg_put_u8(&m, SBX_T_TIMED_OUT, 1);
        sbx_msg_put_str(&m, SBX_T_MESSAGE, "timed out after 30 s");
        append(&b, &m);
        b.data[4] = SBX_PROTO_VERSION + 1;
        seed(dir, t, "bad-version", &b);

        /* Wrong-size numbers: a u32 tag carrying 3 bytes, a u64 carrying 9. */
        sbx_msg_begin(&m, SBX_W_SESSION_READY);
        sbx_msg_put(&m, SBX_T_QEMU_PID, "\x01\x00\x00", 3);
        sbx_msg_put(&m, SBX_T_BOOT_MS, "\x01\x02\x03\x04\x05\x06\x07\x08\x09", 9);
        append(&b, &m);
        seed(dir, t, "wrong-sizes", &b);
}

int main(int argc, char *argv[]) {
        if (argc != 2) {
                fprintf(stderr, "usage: %s CORPUS-DIR\n", argv[0]);
                return EXIT_FAILURE;
        }
        if (mkdir(argv[1], 0755) < 0 && errno != EEXIST) {
                perror(argv[1]);
                return EXIT_FAILURE;
        }
        gen_guest(argv[1]);
        gen_worker(argv[1]);
        return EXIT_SUCCESS;
}
