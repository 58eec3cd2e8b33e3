/* SPDX-License-Identifier: Apache-2.0 */
/* Unit test of the broker's W_RESULT parser: the cgroup mode a worker reports, and what GetStatus
 * keeps of it. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "frame.h"
#include "proto.h"
#include "result.h"
#include "tests.h"

#define PAYLOAD(m) ((m).data + SBX_FRAME_HEADER_SIZE)
#define PAYLOAD_LEN(m) ((m).len - SBX_FRAME_HEADER_SIZE)

/* Parses a W_RESULT with exit code 0 and, when mode is not NULL, that CGROUP_MODE. */
static int parse_with_mode(const char *mode, RunResult *res) {
        SbxMsg m;
        int r;

        sbx_msg_begin(&m, SBX_W_RESULT);
        sbx_msg_put_i32(&m, SBX_T_EXIT_CODE, 0);
        if (mode)
                sbx_msg_put_str(&m, SBX_T_CGROUP_MODE, mode);
        ASSERT_OK(sbx_msg_finish(&m));
        *res = (RunResult) {};
        r = run_result_parse(res, PAYLOAD(m), PAYLOAD_LEN(m));
        sbx_msg_done(&m);
        return r;
}

static void test_cgroup_mode(void) {
        RunResult res;

        ASSERT_STREQ(worker_cgroup_mode_last(), "unknown");
        /* An older worker says nothing: the result has no mode, GetStatus keeps what it had. */
        ASSERT_OK(parse_with_mode(NULL, &res));
        ASSERT_NULL(res.cgroup_mode);
        ASSERT_STREQ(worker_cgroup_mode_last(), "unknown");
        run_result_done(&res);

        const char *modes[] = { "v1", "none", "v2" };
        for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
                ASSERT_OK(parse_with_mode(modes[i], &res));
                ASSERT_STREQ(res.cgroup_mode, modes[i]);
                ASSERT_STREQ(worker_cgroup_mode_last(), modes[i]);
                run_result_done(&res);
        }

        const char *bad[] = { "", "v3", "V2", "v2 ", "none\n", "unknown" };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                ASSERT_ERROR(parse_with_mode(bad[i], &res), EBADMSG);
                run_result_done(&res);
        }
        ASSERT_STREQ(worker_cgroup_mode_last(), "v2");
}

int main(void) {
        TEST(test_cgroup_mode);
        return 0;
}
