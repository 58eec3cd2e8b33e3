/* SPDX-License-Identifier: Apache-2.0 */
/* Unit test of the worker's parsers: the broker's requests and the guest's frames (which are hostile). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "frame.h"
#include "guest-channel.h"
#include "proto.h"
#include "run-request.h"
#include "macro.h"
#include "tests.h"
#include "text-util.h"

/* Setup steps that cannot fail unless the test itself is broken. */
static void must(int r) {
        if (r != 0) {
                fprintf(stderr, "test setup failed: %d\n", r);
                abort();
        }
}

/* Payload of a finished message (after the 12-byte header). */
#define PAYLOAD(m) ((m).data + SBX_FRAME_HEADER_SIZE)
#define PAYLOAD_LEN(m) ((m).len - SBX_FRAME_HEADER_SIZE)

static SbxConfig test_config(void) {
        return (SbxConfig) { .default_memory_mb = 256, .vcpus = 1, .accel = SBX_ACCEL_TCG };
}

/* A run is an open and one exec: this payload carries the fields of both, and each parse takes its own. */
static void build_run(SbxMsg *m, const char *lang, const char *code, uint32_t timeout_ms) {
        sbx_msg_begin(m, SBX_B_SESSION_OPEN);
        sbx_msg_put_u64(m, SBX_T_RUN_ID, 42);
        if (lang)
                sbx_msg_put_str(m, SBX_T_LANGUAGE, lang);
        if (code)
                sbx_msg_put_str(m, SBX_T_CODE, code);
        sbx_msg_put_u32(m, SBX_T_TIMEOUT_MS, timeout_ms);
}

/* Parses the payload as an open and as an exec; fails if either fails. Fills req with the open's VM
 * settings and the exec's code and timeout. */
static int run_request_parse_run(const uint8_t *p, size_t n, const SbxConfig *config, RunRequest *req,
                                 const char **reason) {
        RunRequest exec;
        int r = run_request_parse(RUN_REQUEST_SESSION_OPEN, p, n, config, req, reason);
        if (r < 0)
                return r;
        r = run_request_parse(RUN_REQUEST_EXEC, p, n, config, &exec, reason);
        if (r < 0) {
                run_request_done(req);
                return r;
        }
        req->code = TAKE_PTR(exec.code);
        req->code_len = exec.code_len;
        req->timeout_ms = exec.timeout_ms;
        run_request_done(&exec);
        return 0;
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
        CHECK(run_request_parse_run(PAYLOAD(m), PAYLOAD_LEN(m), &config, &req, &reason) == 0);
        CHECK(req.run_id == 42 && req.language == SBX_LANG_PYTHON && req.code_len == 8 && req.timeout_ms == 5000);
        CHECK(req.n_env == 1 && strcmp(req.env[0], "A=b") == 0);
        CHECK(req.memory_mb == 512 && req.vcpus == 1 && req.accel == SBX_ACCEL_KVM);
        run_request_done(&req);
        sbx_msg_done(&m);

        /* Defaults from the config. */
        build_run(&m, "javascript", "1", 1000);
        must(sbx_msg_finish(&m));
        CHECK(run_request_parse_run(PAYLOAD(m), PAYLOAD_LEN(m), &config, &req, &reason) == 0);
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
                CHECK(run_request_parse_run(PAYLOAD(m), PAYLOAD_LEN(m), &config, &req, &reason) < 0 && reason);
                sbx_msg_done(&m);
        }

        /* Duplicate fields, wrong sizes, truncated TLVs. */
        build_run(&m, "python", "x", 1000);
        sbx_msg_put_u32(&m, SBX_T_TIMEOUT_MS, 2000);
        must(sbx_msg_finish(&m));
        CHECK(run_request_parse_run(PAYLOAD(m), PAYLOAD_LEN(m), &config, &req, &reason) < 0);
        sbx_msg_done(&m);

        build_run(&m, "python", "x", 1000);
        sbx_msg_put_u8(&m, SBX_T_MEMORY_MB, 1);
        must(sbx_msg_finish(&m));
        CHECK(run_request_parse_run(PAYLOAD(m), PAYLOAD_LEN(m), &config, &req, &reason) < 0);
        CHECK(run_request_parse_run(PAYLOAD(m), PAYLOAD_LEN(m) - 1, &config, &req, &reason) < 0);
        sbx_msg_done(&m);

        /* Too many environment variables. */
        build_run(&m, "python", "x", 1000);
        for (unsigned i = 0; i <= SBX_ENV_COUNT_MAX; i++)
                sbx_msg_put_str(&m, SBX_T_ENV, "A=1");
        must(sbx_msg_finish(&m));
        CHECK(run_request_parse_run(PAYLOAD(m), PAYLOAD_LEN(m), &config, &req, &reason) < 0);
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
        RunRequest open, exec_req;
        const char *reason;
        SbxMsg run, exec;

        build_run(&run, "raw", "echo hi", 2000);
        sbx_msg_put_str(&run, SBX_T_ENV, "K=V");
        must(sbx_msg_finish(&run));
        must(run_request_parse(RUN_REQUEST_SESSION_OPEN, PAYLOAD(run), PAYLOAD_LEN(run), &config, &open, &reason));
        must(run_request_parse(RUN_REQUEST_EXEC, PAYLOAD(run), PAYLOAD_LEN(run), &config, &exec_req, &reason));
        CHECK(guest_build_exec(&open, &exec_req, &exec) == 0);

        SbxTlvIter it;
        uint16_t tag;
        const uint8_t *v;
        uint32_t n;
        uint64_t seen = 0;
        unsigned n_env = 0;
        CHECK(exec.data[5] == SBX_H_EXEC);
        sbx_tlv_iter_init(&it, PAYLOAD(exec), PAYLOAD_LEN(exec));
        while (sbx_tlv_next(&it, &tag, &v, &n) > 0) {
                if (tag == SBX_T_SEED)
                        CHECK(n == 32);
                if (tag == SBX_T_CODE)
                        CHECK(n == 7 && memcmp(v, "echo hi", 7) == 0);
                if (tag == SBX_T_ENV)
                        n_env++;
                seen |= 1ull << tag;
        }
        /* K=V came with both parses: the exec's replaces the open's. */
        CHECK(n_env == 1);
        CHECK(seen == (1ull << SBX_T_LANGUAGE | 1ull << SBX_T_CODE | 1ull << SBX_T_TIMEOUT_MS | 1ull << SBX_T_ENV |
                       1ull << SBX_T_SESSION | 1ull << SBX_T_CLOCK_NS | 1ull << SBX_T_SEED));
        sbx_msg_done(&exec);
        sbx_msg_done(&run);
        run_request_done(&open);
        run_request_done(&exec_req);
}

/* A cold one-shot run's open (ONESHOT): its exec goes to the guest without SESSION. */
static void test_exec_oneshot(void) {
        SbxConfig config = test_config();
        RunRequest open, exec_req;
        const char *reason;
        SbxMsg run, exec;

        build_run(&run, "python", "print(1)", 2000);
        sbx_msg_put_u8(&run, SBX_T_ONESHOT, 1);
        must(sbx_msg_finish(&run));
        must(run_request_parse(RUN_REQUEST_SESSION_OPEN, PAYLOAD(run), PAYLOAD_LEN(run), &config, &open, &reason));
        must(run_request_parse(RUN_REQUEST_EXEC, PAYLOAD(run), PAYLOAD_LEN(run), &config, &exec_req, &reason));
        CHECK(open.oneshot);
        CHECK(!exec_req.oneshot); /* a VM setting: an exec cannot set it */
        CHECK(guest_build_exec(&open, &exec_req, &exec) == 0);

        SbxTlvIter it;
        uint16_t tag;
        const uint8_t *v;
        uint32_t n;
        bool session = false;
        sbx_tlv_iter_init(&it, PAYLOAD(exec), PAYLOAD_LEN(exec));
        while (sbx_tlv_next(&it, &tag, &v, &n) > 0)
                session |= tag == SBX_T_SESSION;
        CHECK(!session);
        sbx_msg_done(&exec);
        sbx_msg_done(&run);
        run_request_done(&open);
        run_request_done(&exec_req);

        /* Anything but 0 or 1 is refused. */
        build_run(&run, "python", "print(1)", 2000);
        sbx_msg_put_u8(&run, SBX_T_ONESHOT, 2);
        must(sbx_msg_finish(&run));
        CHECK(run_request_parse(RUN_REQUEST_SESSION_OPEN, PAYLOAD(run), PAYLOAD_LEN(run), &config, &open, &reason) < 0);
        sbx_msg_done(&run);
}

static void test_session_requests(void) {
        SbxConfig config = test_config();
        RunRequest open_req, exec_req;
        FileRequest f;
        const char *reason;
        SbxMsg m, out;

        /* SESSION_OPEN: no code or timeout needed; CODE would be skipped. */
        sbx_msg_begin(&m, SBX_B_SESSION_OPEN);
        sbx_msg_put_u64(&m, SBX_T_RUN_ID, 9);
        sbx_msg_put_str(&m, SBX_T_LANGUAGE, "python");
        sbx_msg_put_str(&m, SBX_T_ENV, "A=session");
        sbx_msg_put_str(&m, SBX_T_ENV, "B=session");
        sbx_msg_put_str(&m, SBX_T_CODE, "ignored");
        must(sbx_msg_finish(&m));
        CHECK(run_request_parse(RUN_REQUEST_SESSION_OPEN, PAYLOAD(m), PAYLOAD_LEN(m), &config, &open_req,
                                     &reason) == 0);
        CHECK(open_req.run_id == 9 && open_req.language == SBX_LANG_PYTHON && !open_req.code && open_req.n_env == 2);
        sbx_msg_done(&m);

        /* An open needs a language. */
        sbx_msg_begin(&m, SBX_B_SESSION_OPEN);
        sbx_msg_put_u64(&m, SBX_T_RUN_ID, 9);
        must(sbx_msg_finish(&m));
        CHECK(run_request_parse(RUN_REQUEST_SESSION_OPEN, PAYLOAD(m), PAYLOAD_LEN(m), &config, &exec_req,
                                     &reason) == -EINVAL); /* no language */
        sbx_msg_done(&m);

        /* EXEC: code and timeout required; LANGUAGE is not the exec's to choose and is skipped. */
        sbx_msg_begin(&m, SBX_B_EXEC);
        sbx_msg_put_u64(&m, SBX_T_RUN_ID, 3);
        sbx_msg_put_str(&m, SBX_T_LANGUAGE, "no-such-language");
        sbx_msg_put_str(&m, SBX_T_CODE, "print(1)");
        sbx_msg_put_u32(&m, SBX_T_TIMEOUT_MS, 2000);
        sbx_msg_put_str(&m, SBX_T_ENV, "B=exec");
        must(sbx_msg_finish(&m));
        CHECK(run_request_parse(RUN_REQUEST_EXEC, PAYLOAD(m), PAYLOAD_LEN(m), &config, &exec_req, &reason) ==
              0);
        CHECK(exec_req.run_id == 3 && exec_req.code_len == 8 && exec_req.timeout_ms == 2000 && exec_req.n_env == 1);
        sbx_msg_done(&m);

        /* H_EXEC of a session exec: session env first, minus what the exec replaces; SESSION = 1. */
        CHECK(guest_build_exec(&open_req, &exec_req, &out) == 0);
        {
                SbxTlvIter it;
                uint16_t tag;
                const uint8_t *v;
                uint32_t len;
                const char *want[] = { "A=session", "B=exec" };
                size_t n_env = 0;
                bool session = false, lang_ok = false;
                sbx_tlv_iter_init(&it, PAYLOAD(out), PAYLOAD_LEN(out));
                while (sbx_tlv_next(&it, &tag, &v, &len) > 0) {
                        if (tag == SBX_T_ENV) {
                                CHECK(n_env < 2 && len == strlen(want[n_env]) && memcmp(v, want[n_env], len) == 0);
                                n_env++;
                        } else if (tag == SBX_T_SESSION)
                                session = len == 1 && v[0] == 1;
                        else if (tag == SBX_T_LANGUAGE)
                                lang_ok = len == 6 && memcmp(v, "python", 6) == 0;
                }
                CHECK(n_env == 2 && session && lang_ok);
        }
        sbx_msg_done(&out);
        run_request_done(&exec_req);

        /* EXEC without a timeout. */
        sbx_msg_begin(&m, SBX_B_EXEC);
        sbx_msg_put_u64(&m, SBX_T_RUN_ID, 3);
        sbx_msg_put_str(&m, SBX_T_CODE, "x");
        must(sbx_msg_finish(&m));
        CHECK(run_request_parse(RUN_REQUEST_EXEC, PAYLOAD(m), PAYLOAD_LEN(m), &config, &exec_req, &reason) ==
              -EINVAL);
        sbx_msg_done(&m);
        run_request_done(&open_req);

        /* File requests. */
        sbx_msg_begin(&m, SBX_B_FILE_WRITE);
        sbx_msg_put_str(&m, SBX_T_PATH, "a/b.txt");
        sbx_msg_put_u32(&m, SBX_T_MODE, 0600);
        must(sbx_msg_finish(&m));
        CHECK(file_request_parse(PAYLOAD(m), PAYLOAD_LEN(m), &f, &reason) == 0);
        CHECK(strcmp(f.path, "a/b.txt") == 0 && f.mode == 0600);
        file_request_done(&f);
        sbx_msg_done(&m);

        sbx_msg_begin(&m, SBX_B_FILE_WRITE);
        sbx_msg_put_str(&m, SBX_T_PATH, "x");
        sbx_msg_put_u32(&m, SBX_T_MODE, 010000);
        must(sbx_msg_finish(&m));
        CHECK(file_request_parse(PAYLOAD(m), PAYLOAD_LEN(m), &f, &reason) == -EINVAL);
        sbx_msg_done(&m);

        sbx_msg_begin(&m, SBX_B_LIST);
        sbx_msg_put_u32(&m, SBX_T_MODE, 0644);
        must(sbx_msg_finish(&m));
        CHECK(file_request_parse(PAYLOAD(m), PAYLOAD_LEN(m), &f, &reason) == -EINVAL); /* no path */
        sbx_msg_done(&m);

        sbx_msg_begin(&m, SBX_B_LIST);
        sbx_msg_put(&m, SBX_T_PATH, "a\0b", 3);
        must(sbx_msg_finish(&m));
        CHECK(file_request_parse(PAYLOAD(m), PAYLOAD_LEN(m), &f, &reason) == -EBADMSG);
        sbx_msg_done(&m);
}

static void test_guest_file_frames(void) {
        GuestFileResult res;
        GuestFileData d;
        GuestListEntry e;
        GuestExit x;
        const char *reason;
        static uint8_t big[SBX_OUTPUT_CHUNK_MAX + 1];
        SbxMsg m;

        sbx_msg_begin(&m, SBX_G_FILE_RESULT);
        sbx_msg_put_u32(&m, SBX_T_FILE_STATUS, SBX_FILE_NOT_FOUND);
        sbx_msg_put_u64(&m, SBX_T_SIZE, 0);
        sbx_msg_put_str(&m, SBX_T_MESSAGE, "gone\x01");
        must(sbx_msg_finish(&m));
        CHECK(guest_parse_file_result(PAYLOAD(m), PAYLOAD_LEN(m), &res, &reason) == 0);
        CHECK(res.status == SBX_FILE_NOT_FOUND && res.message && strcmp(res.message, "gone?") == 0);
        guest_file_result_done(&res);
        sbx_msg_done(&m);

        sbx_msg_begin(&m, SBX_G_FILE_RESULT);
        sbx_msg_put_u32(&m, SBX_T_FILE_STATUS, 5); /* out of range */
        must(sbx_msg_finish(&m));
        CHECK(guest_parse_file_result(PAYLOAD(m), PAYLOAD_LEN(m), &res, &reason) == -EBADMSG);
        sbx_msg_done(&m);

        sbx_msg_begin(&m, SBX_G_FILE_RESULT);
        sbx_msg_put_u64(&m, SBX_T_SIZE, 1); /* no status */
        must(sbx_msg_finish(&m));
        CHECK(guest_parse_file_result(PAYLOAD(m), PAYLOAD_LEN(m), &res, &reason) == -EBADMSG);
        sbx_msg_done(&m);

        sbx_msg_begin(&m, SBX_G_FILE_RESULT);
        sbx_msg_put_u32(&m, SBX_T_FILE_STATUS, 0);
        sbx_msg_put_u32(&m, SBX_T_FILE_STATUS, 0); /* twice */
        must(sbx_msg_finish(&m));
        CHECK(guest_parse_file_result(PAYLOAD(m), PAYLOAD_LEN(m), &res, &reason) == -EBADMSG);
        sbx_msg_done(&m);

        sbx_msg_begin(&m, SBX_G_FILE_DATA);
        sbx_msg_put(&m, SBX_T_DATA, big, sizeof big - 1);
        must(sbx_msg_finish(&m));
        CHECK(guest_parse_file_data(PAYLOAD(m), PAYLOAD_LEN(m), &d, &reason) == 0 && d.len == sizeof big - 1);
        sbx_msg_done(&m);

        sbx_msg_begin(&m, SBX_G_FILE_DATA);
        sbx_msg_put(&m, SBX_T_DATA, big, sizeof big);
        must(sbx_msg_finish(&m));
        CHECK(guest_parse_file_data(PAYLOAD(m), PAYLOAD_LEN(m), &d, &reason) == -EBADMSG);
        sbx_msg_done(&m);

        sbx_msg_begin(&m, SBX_G_FILE_DATA);
        must(sbx_msg_finish(&m));
        CHECK(guest_parse_file_data(PAYLOAD(m), PAYLOAD_LEN(m), &d, &reason) == -EBADMSG);
        sbx_msg_done(&m);

        struct {
                const char *name;
                size_t len;
                int want;
                bool printable;
        } names[] = {
                { "ok.txt", 6, 0, true },
                { "caf\xc3\xa9", 5, 0, true },
                { "bad\xff", 4, 0, false },
                { "tab\there", 8, 0, true }, /* tab and newline pass text_sanitize() */
                { "ctl\x01", 4, 0, false },
                { "a/b", 3, -EBADMSG, false },
                { "a\0b", 3, -EBADMSG, false },
                { "", 0, -EBADMSG, false },
                { ".", 1, -EBADMSG, false },
                { "..", 2, -EBADMSG, false },
        };
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                sbx_msg_begin(&m, SBX_G_LIST_ENTRY);
                sbx_msg_put(&m, SBX_T_NAME, names[i].name, names[i].len);
                sbx_msg_put_u8(&m, SBX_T_IS_DIR, 1);
                sbx_msg_put_u64(&m, SBX_T_SIZE, 7);
                must(sbx_msg_finish(&m));
                int r = guest_parse_list_entry(PAYLOAD(m), PAYLOAD_LEN(m), &e, &reason);
                CHECK(r == names[i].want);
                if (r == 0)
                        CHECK(e.printable == names[i].printable && e.is_dir && e.size == 7);
                sbx_msg_done(&m);
        }
        memset(big, 'a', SBX_PATH_COMPONENT_MAX + 1);
        sbx_msg_begin(&m, SBX_G_LIST_ENTRY);
        sbx_msg_put(&m, SBX_T_NAME, big, SBX_PATH_COMPONENT_MAX + 1);
        must(sbx_msg_finish(&m));
        CHECK(guest_parse_list_entry(PAYLOAD(m), PAYLOAD_LEN(m), &e, &reason) == -EBADMSG);
        sbx_msg_done(&m);
        sbx_msg_begin(&m, SBX_G_LIST_ENTRY);
        sbx_msg_put(&m, SBX_T_NAME, big, SBX_PATH_COMPONENT_MAX);
        sbx_msg_put_u8(&m, SBX_T_IS_DIR, 2);
        must(sbx_msg_finish(&m));
        CHECK(guest_parse_list_entry(PAYLOAD(m), PAYLOAD_LEN(m), &e, &reason) == -EBADMSG);
        sbx_msg_done(&m);

        sbx_msg_begin(&m, SBX_G_EXIT);
        sbx_msg_put_i32(&m, SBX_T_EXIT_CODE, 0);
        sbx_msg_put_u8(&m, SBX_T_STATE_RESET, 1);
        must(sbx_msg_finish(&m));
        CHECK(guest_parse_exit(PAYLOAD(m), PAYLOAD_LEN(m), &x, &reason) == 0 && x.state_reset);
        sbx_msg_done(&m);
        sbx_msg_begin(&m, SBX_G_EXIT);
        sbx_msg_put_i32(&m, SBX_T_EXIT_CODE, 0);
        sbx_msg_put_u8(&m, SBX_T_STATE_RESET, 2);
        must(sbx_msg_finish(&m));
        CHECK(guest_parse_exit(PAYLOAD(m), PAYLOAD_LEN(m), &x, &reason) == -EBADMSG);
        sbx_msg_done(&m);
}

static void test_network_request(void) {
        SbxConfig config = test_config();
        RunRequest req;
        RunExpose e;
        const char *reason;
        SbxMsg m;

        CHECK(run_expose_parse("8000:0/tcp", &e) == 0 && e.internal == 8000 && e.external == 0 && !e.udp);
        CHECK(run_expose_parse("53:5353/udp", &e) == 0 && e.internal == 53 && e.external == 5353 && e.udp);
        CHECK(run_expose_parse("65535:65535/tcp", &e) == 0);
        static const char *const bad[] = { "",           "8000",       "8000/tcp",   "8000:0",      "0:80/tcp",
                                           "65536:1/tcp", "1:65536/tcp", "80:80/sctp", "-1:80/tcp",  "80:+1/tcp",
                                           "080:1/tcp",  "80:1/tcp ",  "80:1/TCP",   "99999999999:1/tcp" };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                CHECK(run_expose_parse(bad[i], &e) < 0);

        /* Network on, two domains, two ports: all kept. */
        build_run(&m, "raw", "true", 1000);
        sbx_msg_put_u8(&m, SBX_T_NETWORK, 1);
        sbx_msg_put_str(&m, SBX_T_ALLOWED_DOMAIN, "example.com");
        sbx_msg_put_str(&m, SBX_T_ALLOWED_DOMAIN, "*.example.org");
        sbx_msg_put_str(&m, SBX_T_EXPOSE, "8000:0/tcp");
        sbx_msg_put_str(&m, SBX_T_EXPOSE, "53:5353/udp");
        must(sbx_msg_finish(&m));
        CHECK(run_request_parse_run(PAYLOAD(m), PAYLOAD_LEN(m), &config, &req, &reason) == 0);
        CHECK(req.network && req.n_domains == 2 && strcmp(req.domains[1], "*.example.org") == 0);
        CHECK(req.n_expose == 2 && req.expose[1].udp && req.expose[1].external == 5353);
        CHECK(run_request_wants_nic(&req));
        run_request_done(&req);
        sbx_msg_done(&m);

        /* Nothing: no NIC. Ports only: a NIC without network. */
        build_run(&m, "raw", "true", 1000);
        must(sbx_msg_finish(&m));
        CHECK(run_request_parse_run(PAYLOAD(m), PAYLOAD_LEN(m), &config, &req, &reason) == 0);
        CHECK(!req.network && !run_request_wants_nic(&req));
        run_request_done(&req);
        sbx_msg_done(&m);
        build_run(&m, "raw", "true", 1000);
        sbx_msg_put_u8(&m, SBX_T_NETWORK, 0);
        sbx_msg_put_str(&m, SBX_T_EXPOSE, "8000:0/tcp");
        must(sbx_msg_finish(&m));
        CHECK(run_request_parse_run(PAYLOAD(m), PAYLOAD_LEN(m), &config, &req, &reason) == 0);
        CHECK(!req.network && run_request_wants_nic(&req));
        run_request_done(&req);
        sbx_msg_done(&m);

        /* Refused: NETWORK 2, twice, domains without NETWORK, a bad port, the same external port twice,
         * more than SBX_EXPOSE_MAX ports, a domain with white space. */
        for (int t = 0; t < 7; t++) {
                build_run(&m, "raw", "true", 1000);
                switch (t) {
                case 0:
                        sbx_msg_put_u8(&m, SBX_T_NETWORK, 2);
                        break;
                case 1:
                        sbx_msg_put_u8(&m, SBX_T_NETWORK, 1);
                        sbx_msg_put_u8(&m, SBX_T_NETWORK, 1);
                        break;
                case 2:
                        sbx_msg_put_str(&m, SBX_T_ALLOWED_DOMAIN, "example.com");
                        break;
                case 3:
                        sbx_msg_put_str(&m, SBX_T_EXPOSE, "0:80/tcp");
                        break;
                case 4:
                        sbx_msg_put_str(&m, SBX_T_EXPOSE, "80:9000/tcp");
                        sbx_msg_put_str(&m, SBX_T_EXPOSE, "81:9000/tcp");
                        break;
                case 5:
                        for (unsigned i = 0; i <= SBX_EXPOSE_MAX; i++)
                                sbx_msg_put_str(&m, SBX_T_EXPOSE, "80:0/tcp");
                        break;
                case 6:
                        sbx_msg_put_u8(&m, SBX_T_NETWORK, 1);
                        sbx_msg_put_str(&m, SBX_T_ALLOWED_DOMAIN, "a.com b.com");
                        break;
                }
                must(sbx_msg_finish(&m));
                CHECK(run_request_parse_run(PAYLOAD(m), PAYLOAD_LEN(m), &config, &req, &reason) < 0);
                sbx_msg_done(&m);
        }

        /* Session open takes them too; an exec skips them. */
        sbx_msg_begin(&m, SBX_B_SESSION_OPEN);
        sbx_msg_put_u64(&m, SBX_T_RUN_ID, 7);
        sbx_msg_put_str(&m, SBX_T_LANGUAGE, "raw");
        sbx_msg_put_str(&m, SBX_T_EXPOSE, "8000:0/tcp");
        must(sbx_msg_finish(&m));
        CHECK(run_request_parse(RUN_REQUEST_SESSION_OPEN, PAYLOAD(m), PAYLOAD_LEN(m), &config, &req, &reason) ==
              0);
        CHECK(req.n_expose == 1);
        run_request_done(&req);
        sbx_msg_done(&m);
        sbx_msg_begin(&m, SBX_B_EXEC);
        sbx_msg_put_u64(&m, SBX_T_RUN_ID, 8);
        sbx_msg_put_str(&m, SBX_T_CODE, "true");
        sbx_msg_put_u32(&m, SBX_T_TIMEOUT_MS, 1000);
        sbx_msg_put_u8(&m, SBX_T_NETWORK, 1);
        must(sbx_msg_finish(&m));
        CHECK(run_request_parse(RUN_REQUEST_EXEC, PAYLOAD(m), PAYLOAD_LEN(m), &config, &req, &reason) == 0);
        CHECK(!req.network);
        run_request_done(&req);
        sbx_msg_done(&m);
}

int main(void) {
        test_run_request();
        test_network_request();
        test_session_requests();
        test_guest_file_frames();
        test_guest_frames();
        test_text();
        test_exec();
        test_exec_oneshot();
        return CHECK_SUMMARY();
}
