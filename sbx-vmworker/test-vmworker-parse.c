/* SPDX-License-Identifier: Apache-2.0 */
/* Unit test of the worker's parsers: the broker's B_RUN and the guest's frames (which are hostile). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "frame.h"
#include "guest-channel.h"
#include "proto.h"
#include "run-request.h"
#include "text-util.h"

static unsigned n_passed, n_failed;

/* Setup steps that cannot fail unless the test itself is broken. */
static void must(int r) {
        if (r != 0) {
                fprintf(stderr, "test setup failed: %d\n", r);
                abort();
        }
}

#define CHECK(expr)                                                                   \
        do {                                                                          \
                if (expr)                                                             \
                        n_passed++;                                                   \
                else {                                                                \
                        n_failed++;                                                   \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #expr); \
                }                                                                     \
        } while (0)

/* Payload of a finished message (after the 12-byte header). */
#define PAYLOAD(m) ((m).data + SBX_FRAME_HEADER_SIZE)
#define PAYLOAD_LEN(m) ((m).len - SBX_FRAME_HEADER_SIZE)

static SbxConfig test_config(void) {
        return (SbxConfig) { .default_memory_mb = 256, .vcpus = 1, .accel = SBX_ACCEL_TCG };
}

static void build_run(SbxMsg *m, const char *lang, const char *code, uint32_t timeout_ms) {
        sbx_msg_begin(m, SBX_B_RUN);
        sbx_msg_put_u64(m, SBX_T_RUN_ID, 42);
        if (lang)
                sbx_msg_put_str(m, SBX_T_LANGUAGE, lang);
        if (code)
                sbx_msg_put_str(m, SBX_T_CODE, code);
        sbx_msg_put_u32(m, SBX_T_TIMEOUT_MS, timeout_ms);
}

static void test_run_request(void) {
        SbxConfig config = test_config();
        RunRequest req;
        const char *reason;
        SbxMsg m;

        build_run(&m, "python", "print(1)", 5000);
        sbx_msg_put_str(&m, SBX_T_ENV, "A=b");
        sbx_msg_put_u32(&m, SBX_T_MEMORY_MB, 512);
        sbx_msg_put_str(&m, SBX_T_ACCEL, "kvm");
        sbx_msg_put_u32(&m, 999, 7); /* unknown tag: skipped */
        must(sbx_msg_finish(&m));
        CHECK(run_request_parse(PAYLOAD(m), PAYLOAD_LEN(m), &config, &req, &reason) == 0);
        CHECK(req.run_id == 42 && req.language == SBX_LANG_PYTHON && req.code_len == 8 && req.timeout_ms == 5000);
        CHECK(req.n_env == 1 && strcmp(req.env[0], "A=b") == 0);
        CHECK(req.memory_mb == 512 && req.vcpus == 1 && req.accel == SBX_ACCEL_KVM);
        run_request_done(&req);
        sbx_msg_done(&m);

        /* Defaults from the config. */
        build_run(&m, "javascript", "1", 1000);
        must(sbx_msg_finish(&m));
        CHECK(run_request_parse(PAYLOAD(m), PAYLOAD_LEN(m), &config, &req, &reason) == 0);
        CHECK(req.memory_mb == 256 && req.accel == SBX_ACCEL_TCG);
        run_request_done(&req);
        sbx_msg_done(&m);

        struct {
                const char *lang, *code;
                uint32_t timeout;
                const char *env;
        } bad[] = {
                { NULL, "x", 1000, NULL },          { "cobol", "x", 1000, NULL }, { "python", NULL, 1000, NULL },
                { "python", "   \n", 1000, NULL },  { "python", "x", 999, NULL }, { "python", "x", 300001, NULL },
                { "python", "x", 1000, "NOEQUALS" }, { "python", "x", 1000, "1A=x" }, { "python", "x", 1000, "A=\x01" },
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                build_run(&m, bad[i].lang, bad[i].code, bad[i].timeout);
                if (bad[i].env)
                        sbx_msg_put_str(&m, SBX_T_ENV, bad[i].env);
                must(sbx_msg_finish(&m));
                reason = NULL;
                CHECK(run_request_parse(PAYLOAD(m), PAYLOAD_LEN(m), &config, &req, &reason) < 0 && reason);
                sbx_msg_done(&m);
        }

        /* Duplicate fields, wrong sizes, truncated TLVs. */
        build_run(&m, "python", "x", 1000);
        sbx_msg_put_u32(&m, SBX_T_TIMEOUT_MS, 2000);
        must(sbx_msg_finish(&m));
        CHECK(run_request_parse(PAYLOAD(m), PAYLOAD_LEN(m), &config, &req, &reason) < 0);
        sbx_msg_done(&m);

        build_run(&m, "python", "x", 1000);
        sbx_msg_put_u8(&m, SBX_T_MEMORY_MB, 1);
        must(sbx_msg_finish(&m));
        CHECK(run_request_parse(PAYLOAD(m), PAYLOAD_LEN(m), &config, &req, &reason) < 0);
        CHECK(run_request_parse(PAYLOAD(m), PAYLOAD_LEN(m) - 1, &config, &req, &reason) < 0);
        sbx_msg_done(&m);

        /* Too many environment variables. */
        build_run(&m, "python", "x", 1000);
        for (unsigned i = 0; i <= SBX_ENV_COUNT_MAX; i++)
                sbx_msg_put_str(&m, SBX_T_ENV, "A=1");
        must(sbx_msg_finish(&m));
        CHECK(run_request_parse(PAYLOAD(m), PAYLOAD_LEN(m), &config, &req, &reason) < 0);
        sbx_msg_done(&m);
}

static void test_guest_frames(void) {
        const char *reason;
        SbxMsg m;

        GuestHello h;
        sbx_msg_begin(&m, SBX_G_HELLO);
        sbx_msg_put_u32(&m, SBX_T_VERSION, SBX_PROTO_VERSION);
        sbx_msg_put_u64(&m, SBX_T_UPTIME_MS, 10);
        must(sbx_msg_finish(&m));
        CHECK(guest_parse_hello(PAYLOAD(m), PAYLOAD_LEN(m), &h, &reason) == 0 && h.uptime_ms == 10);
        sbx_msg_done(&m);

        sbx_msg_begin(&m, SBX_G_HELLO);
        sbx_msg_put_u32(&m, SBX_T_VERSION, SBX_PROTO_VERSION + 1);
        must(sbx_msg_finish(&m));
        CHECK(guest_parse_hello(PAYLOAD(m), PAYLOAD_LEN(m), &h, &reason) < 0);
        sbx_msg_done(&m);

        sbx_msg_begin(&m, SBX_G_HELLO);
        sbx_msg_put_u64(&m, SBX_T_VERSION, SBX_PROTO_VERSION);
        must(sbx_msg_finish(&m));
        CHECK(guest_parse_hello(PAYLOAD(m), PAYLOAD_LEN(m), &h, &reason) < 0);
        sbx_msg_done(&m);

        GuestOutput o;
        sbx_msg_begin(&m, SBX_G_OUTPUT);
        sbx_msg_put_u8(&m, SBX_T_STREAM, SBX_STREAM_STDERR);
        sbx_msg_put(&m, SBX_T_DATA, "hi\0x", 4);
        must(sbx_msg_finish(&m));
        CHECK(guest_parse_output(PAYLOAD(m), PAYLOAD_LEN(m), &o, &reason) == 0 && o.stream == SBX_STREAM_STDERR &&
              o.len == 4 && memcmp(o.data, "hi\0x", 4) == 0);
        /* Every truncation of a valid frame is refused. */
        for (size_t cut = 1; cut < PAYLOAD_LEN(m); cut++)
                CHECK(guest_parse_output(PAYLOAD(m), PAYLOAD_LEN(m) - cut, &o, &reason) < 0);
        sbx_msg_done(&m);

        static char big[SBX_OUTPUT_CHUNK_MAX + 1];
        sbx_msg_begin(&m, SBX_G_OUTPUT);
        sbx_msg_put_u8(&m, SBX_T_STREAM, SBX_STREAM_STDOUT);
        sbx_msg_put(&m, SBX_T_DATA, big, sizeof big);
        must(sbx_msg_finish(&m));
        CHECK(guest_parse_output(PAYLOAD(m), PAYLOAD_LEN(m), &o, &reason) < 0);
        sbx_msg_done(&m);

        sbx_msg_begin(&m, SBX_G_OUTPUT);
        sbx_msg_put_u8(&m, SBX_T_STREAM, 3);
        sbx_msg_put(&m, SBX_T_DATA, "x", 1);
        must(sbx_msg_finish(&m));
        CHECK(guest_parse_output(PAYLOAD(m), PAYLOAD_LEN(m), &o, &reason) < 0);
        sbx_msg_done(&m);

        sbx_msg_begin(&m, SBX_G_OUTPUT);
        sbx_msg_put_u8(&m, SBX_T_STREAM, 1);
        sbx_msg_put(&m, SBX_T_DATA, "x", 1);
        sbx_msg_put(&m, SBX_T_DATA, "y", 1);
        must(sbx_msg_finish(&m));
        CHECK(guest_parse_output(PAYLOAD(m), PAYLOAD_LEN(m), &o, &reason) < 0);
        sbx_msg_done(&m);

        GuestExit e;
        sbx_msg_begin(&m, SBX_G_EXIT);
        sbx_msg_put_i32(&m, SBX_T_EXIT_CODE, -1);
        sbx_msg_put_u64(&m, SBX_T_EXEC_MS, 99);
        sbx_msg_put_u8(&m, SBX_T_TIMED_OUT, 1);
        must(sbx_msg_finish(&m));
        CHECK(guest_parse_exit(PAYLOAD(m), PAYLOAD_LEN(m), &e, &reason) == 0 && e.exit_code == -1 &&
              e.exec_ms == 99 && e.timed_out);
        sbx_msg_done(&m);

        sbx_msg_begin(&m, SBX_G_EXIT);
        sbx_msg_put_u8(&m, SBX_T_TIMED_OUT, 2);
        sbx_msg_put_i32(&m, SBX_T_EXIT_CODE, 0);
        must(sbx_msg_finish(&m));
        CHECK(guest_parse_exit(PAYLOAD(m), PAYLOAD_LEN(m), &e, &reason) < 0);
        sbx_msg_done(&m);

        sbx_msg_begin(&m, SBX_G_EXIT);
        sbx_msg_put_u64(&m, SBX_T_EXEC_MS, 99);
        must(sbx_msg_finish(&m));
        CHECK(guest_parse_exit(PAYLOAD(m), PAYLOAD_LEN(m), &e, &reason) < 0);
        sbx_msg_done(&m);

        char *msg = NULL;
        sbx_msg_begin(&m, SBX_G_ERROR);
        sbx_msg_put_str(&m, SBX_T_MESSAGE, "bad\x01\xff\xfe ok \xc3\xa9");
        must(sbx_msg_finish(&m));
        CHECK(guest_parse_error(PAYLOAD(m), PAYLOAD_LEN(m), &msg, &reason) == 0 && msg &&
              strcmp(msg, "bad?\xef\xbf\xbd\xef\xbf\xbd ok \xc3\xa9") == 0);
        free(msg);
        sbx_msg_done(&m);
}

static void test_text(void) {
        char *s = text_sanitize("\xc3\xa9\xc3\xa9", 4, 3);
        CHECK(s && strcmp(s, "\xc3\xa9") == 0);
        free(s);
        s = text_printf_bounded(5, "%s", "abcdefgh");
        CHECK(s && strcmp(s, "abcde") == 0);
        free(s);
}

static void test_exec(void) {
        SbxConfig config = test_config();
        RunRequest req;
        const char *reason;
        SbxMsg run, exec;

        build_run(&run, "raw", "echo hi", 2000);
        sbx_msg_put_str(&run, SBX_T_ENV, "K=V");
        must(sbx_msg_finish(&run));
        must(run_request_parse(PAYLOAD(run), PAYLOAD_LEN(run), &config, &req, &reason));
        CHECK(guest_build_exec(&req, &exec) == 0);

        SbxTlvIter it;
        uint16_t tag;
        const uint8_t *v;
        uint32_t n;
        unsigned seen = 0;
        CHECK(exec.data[5] == SBX_H_EXEC);
        sbx_tlv_iter_init(&it, PAYLOAD(exec), PAYLOAD_LEN(exec));
        while (sbx_tlv_next(&it, &tag, &v, &n) > 0) {
                if (tag == SBX_T_SEED)
                        CHECK(n == 32);
                if (tag == SBX_T_CODE)
                        CHECK(n == 7 && memcmp(v, "echo hi", 7) == 0);
                seen |= 1u << tag;
        }
        CHECK(seen == (1u << SBX_T_LANGUAGE | 1u << SBX_T_CODE | 1u << SBX_T_TIMEOUT_MS | 1u << SBX_T_ENV |
                       1u << SBX_T_CLOCK_NS | 1u << SBX_T_SEED));
        sbx_msg_done(&exec);
        sbx_msg_done(&run);
        run_request_done(&req);
}

int main(void) {
        test_run_request();
        test_guest_frames();
        test_text();
        test_exec();
        printf("%u passed, %u failed\n", n_passed, n_failed);
        return n_failed == 0 ? 0 : 1;
}
