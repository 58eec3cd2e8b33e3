/* SPDX-License-Identifier: Apache-2.0 */
/* The worker's message parsers: the guest's HELLO, OUTPUT, EXIT and ERROR
 * payloads (hostile bytes), including the session file messages, and the
 * broker's B_SESSION_OPEN, B_EXEC and file requests. The first input byte picks
 * the parser; the rest is the payload. */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "guest-channel.h"
#include "run-request.h"
#include "fuzz.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *reason = NULL;
        int r;

        if (size < 1)
                return 0;
        const uint8_t *p = data + 1;
        size_t n = size - 1;

        switch (data[0] % 10) {
        case 0: {
                GuestHello h;
                r = guest_parse_hello(p, n, &h, &reason);
                FUZZ_CHECK(r >= 0 || reason);
                break;
        }
        case 1: {
                GuestOutput o;
                r = guest_parse_output(p, n, &o, &reason);
                FUZZ_CHECK(r >= 0 || reason);
                break;
        }
        case 2: {
                GuestExit e;
                r = guest_parse_exit(p, n, &e, &reason);
                FUZZ_CHECK(r >= 0 || reason);
                break;
        }
        case 3: {
                char *msg = NULL;
                r = guest_parse_error(p, n, &msg, &reason);
                FUZZ_CHECK(r >= 0 || reason);
                free(msg);
                break;
        }
        case 4: {
                /* One payload as both requests of a run: the open takes the VM's fields, the exec the code. */
                SbxConfig config = { .default_memory_mb = 256, .vcpus = 1, .accel = SBX_ACCEL_TCG };
                RunRequest open = {}, exec = {};
                r = run_request_parse(RUN_REQUEST_SESSION_OPEN, p, n, &config, &open, &reason);
                FUZZ_CHECK(r >= 0 || r == -ENOMEM || reason);
                if (r >= 0) {
                        FUZZ_CHECK(!open.code && open.n_env <= SBX_ENV_COUNT_MAX);
                        FUZZ_CHECK(open.vcpus >= 1 && open.vcpus <= RUN_VCPUS_MAX);
                }
                r = run_request_parse(RUN_REQUEST_EXEC, p, n, &config, &exec, &reason);
                FUZZ_CHECK(r >= 0 || r == -ENOMEM || reason);
                if (r >= 0)
                        FUZZ_CHECK(exec.code && exec.code_len <= SBX_CODE_MAX && exec.n_env <= SBX_ENV_COUNT_MAX);
                run_request_done(&open);
                run_request_done(&exec);
                break;
        }
        case 5:
        case 6: {
                SbxConfig config = { .default_memory_mb = 256, .vcpus = 1, .accel = SBX_ACCEL_TCG };
                RunRequest req = {};
                r = run_request_parse(data[0] % 10 == 5 ? RUN_REQUEST_SESSION_OPEN : RUN_REQUEST_EXEC, p, n, &config,
                                      &req, &reason);
                FUZZ_CHECK(r >= 0 || r == -ENOMEM || reason);
                run_request_done(&req);
                break;
        }
        case 7: {
                FileRequest f = {};
                r = file_request_parse(p, n, &f, &reason);
                FUZZ_CHECK(r >= 0 || r == -ENOMEM || reason);
                if (r >= 0)
                        FUZZ_CHECK(f.path && strlen(f.path) <= SBX_PATH_MAX && f.mode <= 07777);
                file_request_done(&f);
                break;
        }
        case 8: {
                GuestFileResult fr = {};
                r = guest_parse_file_result(p, n, &fr, &reason);
                FUZZ_CHECK(r >= 0 || reason);
                guest_file_result_done(&fr);
                GuestFileData fd;
                r = guest_parse_file_data(p, n, &fd, &reason);
                FUZZ_CHECK(r < 0 || fd.len <= SBX_OUTPUT_CHUNK_MAX);
                break;
        }
        case 9: {
                GuestListEntry e;
                r = guest_parse_list_entry(p, n, &e, &reason);
                FUZZ_CHECK(r >= 0 || reason);
                if (r >= 0)
                        FUZZ_CHECK(strlen(e.name) >= 1 && !strchr(e.name, '/') && strcmp(e.name, ".") != 0 &&
                                   strcmp(e.name, "..") != 0);
                break;
        }
        }
        return 0;
}
