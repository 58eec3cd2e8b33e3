/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the worker's L1 snapshot helpers: SHA-256 (libsbx), the QMP reply parser, and the
 * boot plan's decision and its cold plan. The cache directory and its formats are tested in
 * sbx-cache/test-cache.c. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "boot-plan.h"
#include "fdio.h"
#include "tests.h"
#include "macro.h"
#include "qmp.h"
#include "sha256.h"

static void test_sha256(void) {
        char h[SHA256_HEX_SIZE];

        sha256_buf_hex("", 0, h);
        CHECK(strcmp(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0);
        sha256_buf_hex("abc", 3, h);
        CHECK(strcmp(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
        const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        sha256_buf_hex(two, strlen(two), h);
        CHECK(strcmp(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1") == 0);
        /* One million 'a', fed in odd pieces. */
        static char a[1000000];
        memset(a, 'a', sizeof a);
        uint8_t d[SHA256_DIGEST_SIZE];
        Sha256 s;
        sha256_init(&s);
        for (size_t off = 0; off < sizeof a;) {
                size_t n = MIN((size_t) 997, sizeof a - off);
                sha256_update(&s, a + off, n);
                off += n;
        }
        sha256_final(&s, d);
        sha256_hex(d, h);
        CHECK(strcmp(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0);
}

static int parse(const char *s, QmpReply *r) {
        return qmp_parse(s, strlen(s), r);
}

static void test_qmp(void) {
        QmpReply r;

        CHECK(parse("{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 2, \"minor\": 0, \"major\": 10}, \"package\": "
                    "\"x\"}, \"capabilities\": [\"oob\"]}}",
                    &r) == 0);
        CHECK(r.kind == QMP_KIND_GREETING && r.version[0] == 10 && r.version[1] == 0 && r.version[2] == 2);
        CHECK(parse("{\"return\": {}}", &r) == 0 && r.kind == QMP_KIND_RETURN && r.status[0] == 0);
        CHECK(parse("{\"return\": {\"status\": \"completed\", \"ram\": {\"total\": 1, \"status\": \"no\"}}}", &r) == 0);
        CHECK(r.kind == QMP_KIND_RETURN && strcmp(r.status, "completed") == 0);
        CHECK(parse("{\"return\": {\"status\": \"failed\", \"error-desc\": \"a\\\"b\\u0041\\u00e9\"}}", &r) == 0);
        CHECK(strcmp(r.status, "failed") == 0 && strcmp(r.desc, "a\"bA?") == 0);
        CHECK(parse("{\"error\": {\"class\": \"GenericError\", \"desc\": \"nope\"}}", &r) == 0);
        CHECK(r.kind == QMP_KIND_ERROR && strcmp(r.desc, "nope") == 0);
        CHECK(parse("{\"timestamp\": {\"seconds\": 1, \"microseconds\": -2.5e3}, \"event\": \"STOP\"}", &r) == 0);
        CHECK(r.kind == QMP_KIND_EVENT && strcmp(r.event, "STOP") == 0);
        CHECK(parse("{\"return\": [1, true, false, null, \"x\", [], {}]}", &r) == 0);
        /* A long status is truncated, not overflowed. */
        char big[400];
        snprintf(big, sizeof big, "{\"return\": {\"status\": \"%0300d\"}}", 0);
        CHECK(parse(big, &r) == 0 && strlen(r.status) == sizeof r.status - 1);

        const char *bad[] = {
                "",
                "{",
                "}",
                "[]",
                "\"x\"",
                "{\"return\": {}",
                "{\"return\": {}} x",
                "{\"foo\": 1}",
                "{\"return\": {}, \"error\": {}}",
                "{\"return\": tru}",
                "{\"return\": \"\\x\"}",
                "{\"return\": \"\x01\"}",
                "{\"return\": 1.}",
                "{\"return\": -}",
                "{\"return\": {,}}",
                "{\"return\": [1,]}",
                "{\"return\" {}}",
                "{\"return\": \"\\u12\"}",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                CHECK(parse(bad[i], &r) == -EBADMSG);
        /* Nesting beyond QMP_DEPTH_MAX. */
        char deep[200] = "{\"return\": ";
        for (int i = 0; i < 40; i++)
                strcat(deep, "[");
        CHECK(parse(deep, &r) == -EBADMSG);
}

static void test_boot_plan(void) {
        BootDecision d;

        /* Nothing to restore or build: two cold attempts (a boot timeout retries once), no fallback. */
        d = boot_plan_decide(BOOT_LOOKUP_NONE);
        CHECK(d.n_attempts == BOOT_COLD_ATTEMPTS && d.kinds[0] == BOOT_COLD && d.kinds[1] == BOOT_COLD &&
              d.fallback == 0);
        d = boot_plan_decide(BOOT_LOOKUP_MISS);
        CHECK(d.n_attempts == BOOT_COLD_ATTEMPTS && d.kinds[0] == BOOT_COLD && d.fallback == 0);
        /* A hit: restore, then cold if the restore fails. */
        d = boot_plan_decide(BOOT_LOOKUP_HIT);
        CHECK(d.n_attempts == 2 && d.kinds[0] == BOOT_RESTORE && d.kinds[1] == BOOT_COLD && d.fallback == 1);
        /* A build: build, restore our own files, cold if either fails. */
        d = boot_plan_decide(BOOT_LOOKUP_BUILD);
        CHECK(d.n_attempts == 3 && d.kinds[0] == BOOT_BUILD && d.kinds[1] == BOOT_RESTORE && d.kinds[2] == BOOT_COLD &&
              d.fallback == 2);

        /* Without SNAPSHOT the plan asks nobody: cold attempts on the cold command line, no extra fds. */
        BootPlan p;
        QemuExtraFds fds;
        boot_plan_init(&p, false, true);
        CHECK(!boot_plan_snapshot(&p) && boot_plan_warm(&p) && !boot_plan_rewarm(&p));
        boot_plan_make(&p, &(BootPlanInput) { .language = SBX_LANG_PYTHON });
        CHECK(boot_plan_n_attempts(&p) == BOOT_COLD_ATTEMPTS && boot_plan_fallback(&p) == 0 &&
              boot_plan_note(&p)[0] == 0);
        for (unsigned i = 0; i < BOOT_ATTEMPTS_MAX; i++)
                CHECK(boot_plan_kind(&p, i) == BOOT_COLD && !boot_plan_argv(&p, i) && !boot_plan_fds(&p, i, &fds) &&
                      boot_plan_qmp_fd(&p, i) < 0);
        boot_plan_done(&p);

        /* SNAPSHOT with WARM: warm after a restore too. */
        boot_plan_init(&p, true, true);
        CHECK(boot_plan_snapshot(&p) && boot_plan_warm(&p) && boot_plan_rewarm(&p));
        boot_plan_done(&p);
}

int main(void) {
        test_sha256();
        test_qmp();
        test_boot_plan();
        return CHECK_SUMMARY();
}
