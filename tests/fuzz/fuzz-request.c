/* SPDX-License-Identifier: Apache-2.0 */
/* The broker's request checks (what a D-Bus caller's a{sv} turns into),
 * driven by a byte stream of operations: each record is
 *   u8 op, u8 key index, then two NUL-terminated strings (key-or-name, value).
 * After any sequence, an accepted request must be within every limit. */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "request.h"
#include "validate.h"
#include "fuzz.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const keys[] = {
        "code", "language", "timeout_seconds", "memory_mb", "env", "stdout_fd", "stderr_fd", "idle_timeout_seconds",
        "warm_pool", "snapshot", "allow_network", "allowed_domains", "expose_ports", "colour",
};

/* Takes the next NUL-terminated string (or the rest) from the input. */
static char *take_string(const uint8_t **p, size_t *left) {
        const uint8_t *nul = memchr(*p, 0, *left);
        size_t n = nul ? (size_t) (nul - *p) : *left;
        char *s = strndup((const char *) *p, n);
        *p += nul ? n + 1 : n;
        *left -= nul ? n + 1 : n;
        return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        SbxRequest req;
        int r = 0;

        uint8_t data_first = size > 0 ? data[0] : 0;
        request_init(&req, 256);
        while (size >= 2 && r >= 0) {
                uint8_t op = data[0] % 6;
                const char *key = keys[data[1] % (sizeof keys / sizeof keys[0])];
                data += 2;
                size -= 2;
                char *a = take_string(&data, &size);
                char *b = take_string(&data, &size);
                if (!a || !b) {
                        free(a);
                        free(b);
                        break;
                }
                switch (op) {
                case 0:
                        r = request_apply_string(&req, key, b, &error);
                        break;
                case 1:
                        r = request_apply_u32(&req, key, (uint32_t) strtoul(b, NULL, 10), &error);
                        break;
                case 2:
                        r = request_apply_env(&req, a, b, &error);
                        break;
                case 3:
                        r = request_apply_fd(&req, key, STDERR_FILENO, &error);
                        break;
                case 4:
                        r = request_apply_bool(&req, key, b[0] & 1, &error);
                        break;
                case 5:
                        r = request_apply_string_item(&req, key, b, &error);
                        break;
                }
                /* Every refusal is a typed error with a message. */
                FUZZ_CHECK(r >= 0 || (r == -ENOMEM) || (sd_bus_error_is_set(&error) && error.message));
                free(a);
                free(b);
        }
        if (r >= 0) {
                /* The first byte picks the method whose key set applies. */
                static const unsigned methods[] = { REQ_KEYS_RUN, REQ_KEYS_OPEN_SESSION, REQ_KEYS_EXEC };
                unsigned allowed = methods[(data_first % 3)];
                r = request_finish(&req, allowed, 4096, &error);
                if (r >= 0) {
                        FUZZ_CHECK((req.seen & ~allowed) == 0);
                        if (allowed & REQ_CODE) {
                                FUZZ_CHECK(req.code && req.code_len > 0 && req.code_len <= SBX_CODE_MAX);
                                FUZZ_CHECK(strlen(req.code) == req.code_len);
                        }
                        FUZZ_CHECK(req.idle_timeout_s >= 10 && req.idle_timeout_s <= 3600);
                        FUZZ_CHECK(req.timeout_s >= SBX_TIMEOUT_MIN_S && req.timeout_s <= SBX_TIMEOUT_MAX_S);
                        FUZZ_CHECK(req.memory_mb >= SBX_MEMORY_MIN_MB && req.memory_mb <= 4096);
                        FUZZ_CHECK(req.n_env <= SBX_ENV_COUNT_MAX);
                        FUZZ_CHECK(sbx_language_to_string(req.language) != NULL);
                }
        }
        sd_bus_error_free(&error);
        request_done(&req);
        return 0;
}
