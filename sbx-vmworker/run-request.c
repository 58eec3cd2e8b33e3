/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "macro.h"
#include "run-request.h"
#include "validate.h"

void run_request_done(RunRequest *r) {
        free(r->code);
        for (size_t i = 0; i < r->n_env; i++)
                free(r->env[i]);
        free(r->env);
        for (size_t i = 0; i < r->n_domains; i++)
                free(r->domains[i]);
        free(r->domains);
        *r = (RunRequest) {};
}

static int run_request_add_env(RunRequest *r, const uint8_t *v, uint32_t n, const char **ret_reason) {
        _cleanup_free_ char *s = NULL;
        int k;

        if (r->n_env >= SBX_ENV_COUNT_MAX) {
                *ret_reason = "more than 100 environment variables";
                return -E2BIG;
        }
        k = sbx_tlv_str(v, n, SBX_ENV_NAME_MAX + 1 + SBX_ENV_VALUE_MAX, &s);
        if (k == -ENOMEM)
                return k;
        if (k < 0) {
                *ret_reason = "an environment entry is too long or contains a NUL byte";
                return k;
        }
        char *eq = strchr(s, '=');
        if (!eq) {
                *ret_reason = "an environment entry is not KEY=VALUE";
                return -EINVAL;
        }
        *eq = 0;
        k = sbx_validate_env_name(s, ret_reason);
        if (k >= 0)
                k = sbx_validate_env_value(eq + 1, ret_reason);
        *eq = '=';
        if (k < 0)
                return k;

        char **e = reallocarray(r->env, r->n_env + 1, sizeof(char *));
        if (!e)
                return -ENOMEM;
        r->env = e;
        r->env[r->n_env++] = TAKE_PTR(s);
        return 0;
}

static int parse_port(const char *s, const char **ret_end, uint16_t *ret) {
        unsigned long v = 0;
        const char *p = s;

        for (; *p >= '0' && *p <= '9' && p - s < 5; p++)
                v = v * 10 + (unsigned long) (*p - '0');
        if (p == s || v > 65535 || (*p >= '0' && *p <= '9') || (p - s > 1 && *s == '0'))
                return -EINVAL;
        *ret_end = p;
        *ret = (uint16_t) v;
        return 0;
}

int run_expose_parse(const char *s, RunExpose *ret) {
        RunExpose e = {};
        const char *p;

        if (parse_port(s, &p, &e.internal) < 0 || e.internal == 0 || *p != ':')
                return -EINVAL;
        if (parse_port(p + 1, &p, &e.external) < 0 || *p != '/')
                return -EINVAL;
        if (strcmp(p + 1, "tcp") == 0)
                e.udp = false;
        else if (strcmp(p + 1, "udp") == 0)
                e.udp = true;
        else
                return -EINVAL;
        *ret = e;
        return 0;
}

static int run_request_add_expose(RunRequest *r, const uint8_t *v, uint32_t n, const char **ret_reason) {
        _cleanup_free_ char *s = NULL;
        RunExpose e;
        int k;

        if (r->n_expose >= SBX_EXPOSE_MAX) {
                *ret_reason = "more than 10 exposed ports";
                return -E2BIG;
        }
        k = sbx_tlv_str(v, n, 32, &s);
        if (k == -ENOMEM)
                return k;
        if (k < 0 || run_expose_parse(s, &e) < 0) {
                *ret_reason = "an exposed port is not INTERNAL:EXTERNAL/tcp|udp";
                return -EINVAL;
        }
        for (size_t i = 0; i < r->n_expose; i++)
                if (e.external != 0 && r->expose[i].external == e.external && r->expose[i].udp == e.udp) {
                        *ret_reason = "an external port is exposed twice";
                        return -EINVAL;
                }
        r->expose[r->n_expose++] = e;
        return 0;
}

static int run_request_add_domain(RunRequest *r, const uint8_t *v, uint32_t n, const char **ret_reason) {
        _cleanup_free_ char *s = NULL;
        int k;

        if (r->n_domains >= SBX_ALLOWED_DOMAINS_MAX) {
                *ret_reason = "more than 256 allowed domains";
                return -E2BIG;
        }
        /* "*." + a name; netd checks the pattern itself (domain_pattern_normalize()). */
        k = sbx_tlv_str(v, n, SBX_DOMAIN_MAX + 2, &s);
        if (k == -ENOMEM)
                return k;
        if (k < 0 || !*s || strpbrk(s, " \t\r\n")) {
                *ret_reason = "an allowed domain is empty, too long or contains white space";
                return -EINVAL;
        }
        char **d = reallocarray(r->domains, r->n_domains + 1, sizeof(char *));
        if (!d)
                return -ENOMEM;
        r->domains = d;
        r->domains[r->n_domains++] = TAKE_PTR(s);
        return 0;
}

/* One parser for the three requests that carry code or VM settings; kind says which fields apply.
 * Fields that do not apply to kind are skipped like unknown tags. */
static int request_parse(RunRequestKind kind, const uint8_t *payload, size_t len, const SbxConfig *config,
                         RunRequest *ret, const char **ret_reason) {
        bool want_vm = kind != RUN_REQUEST_EXEC, want_code = kind != RUN_REQUEST_SESSION_OPEN;
        RunRequest r = {
                .language = SBX_LANG_INVALID,
                .memory_mb = config->default_memory_mb,
                .vcpus = config->vcpus,
                .accel = config->accel,
        };
        bool have_run_id = false, have_code = false, have_timeout = false, have_memory = false, have_vcpus = false,
             have_accel = false, have_network = false;
        SbxTlvIter it;
        uint16_t tag;
        const uint8_t *v;
        uint32_t n;
        int k;

        *ret_reason = kind == RUN_REQUEST_EXEC ? "malformed SBX_B_EXEC" : "malformed SBX_B_SESSION_OPEN";
        sbx_tlv_iter_init(&it, payload, len);
        while ((k = sbx_tlv_next(&it, &tag, &v, &n)) > 0) {
                bool *seen = NULL;

                if ((!want_vm && (tag == SBX_T_LANGUAGE || tag == SBX_T_MEMORY_MB || tag == SBX_T_VCPUS ||
                                  tag == SBX_T_ACCEL || tag == SBX_T_NETWORK || tag == SBX_T_ALLOWED_DOMAIN ||
                                  tag == SBX_T_EXPOSE || tag == SBX_T_ONESHOT)) ||
                    (!want_code && (tag == SBX_T_CODE || tag == SBX_T_TIMEOUT_MS)))
                        tag = 0; /* not for this request: skipped */

                switch (tag) {
                case SBX_T_RUN_ID:
                        seen = &have_run_id;
                        k = sbx_tlv_u64(v, n, &r.run_id);
                        break;
                case SBX_T_LANGUAGE: {
                        _cleanup_free_ char *s = NULL;
                        if (r.language != SBX_LANG_INVALID) {
                                k = -EBADMSG;
                                break;
                        }
                        k = sbx_tlv_str(v, n, 32, &s);
                        if (k == -ENOMEM)
                                break;
                        r.language = k < 0 ? SBX_LANG_INVALID : sbx_language_from_string(s);
                        if (r.language == SBX_LANG_INVALID) {
                                *ret_reason = "unknown language";
                                k = -EINVAL;
                        }
                        break;
                }
                case SBX_T_CODE:
                        seen = &have_code;
                        if (have_code)
                                break;
                        k = sbx_validate_code((const char *) v, n, ret_reason);
                        if (k < 0)
                                break;
                        r.code = malloc((size_t) n + 1);
                        if (!r.code) {
                                k = -ENOMEM;
                                break;
                        }
                        memcpy(r.code, v, n);
                        r.code[n] = 0;
                        r.code_len = n;
                        break;
                case SBX_T_TIMEOUT_MS:
                        seen = &have_timeout;
                        k = sbx_tlv_u32(v, n, &r.timeout_ms);
                        if (k >= 0 && (r.timeout_ms < SBX_TIMEOUT_MIN_S * 1000u ||
                                       r.timeout_ms > SBX_TIMEOUT_MAX_S * 1000u)) {
                                *ret_reason = "timeout is outside 1..300 s";
                                k = -EINVAL;
                        }
                        break;
                case SBX_T_ENV:
                        k = run_request_add_env(&r, v, n, ret_reason);
                        break;
                case SBX_T_MEMORY_MB:
                        seen = &have_memory;
                        k = sbx_tlv_u32(v, n, &r.memory_mb);
                        break;
                case SBX_T_VCPUS:
                        seen = &have_vcpus;
                        k = sbx_tlv_u32(v, n, &r.vcpus);
                        break;
                case SBX_T_ACCEL: {
                        _cleanup_free_ char *s = NULL;
                        seen = &have_accel;
                        k = sbx_tlv_str(v, n, 16, &s);
                        if (k >= 0 && sbx_accel_from_string(s, &r.accel) < 0) {
                                *ret_reason = "accelerator is not one of auto, kvm, tcg";
                                k = -EINVAL;
                        }
                        break;
                }
                case SBX_T_NETWORK: {
                        uint8_t b = 0;
                        seen = &have_network;
                        k = sbx_tlv_u8(v, n, &b);
                        if (k >= 0 && b > 1) {
                                *ret_reason = "NETWORK is neither 0 nor 1";
                                k = -EINVAL;
                        }
                        r.network = b == 1;
                        break;
                }
                case SBX_T_ONESHOT: {
                        uint8_t b = 0;
                        k = sbx_tlv_u8(v, n, &b);
                        if (k >= 0 && b > 1) {
                                *ret_reason = "ONESHOT is neither 0 nor 1";
                                k = -EINVAL;
                        }
                        r.oneshot = b == 1;
                        break;
                }
                case SBX_T_ALLOWED_DOMAIN:
                        k = run_request_add_domain(&r, v, n, ret_reason);
                        break;
                case SBX_T_EXPOSE:
                        k = run_request_add_expose(&r, v, n, ret_reason);
                        break;
                default:
                        /* Unknown tags are skipped: newer brokers may add fields. */
                        break;
                }
                if (k >= 0 && seen) {
                        if (*seen) {
                                *ret_reason = "a field of the request appears twice";
                                k = -EBADMSG;
                        }
                        *seen = true;
                }
                if (k < 0)
                        goto fail;
        }
        if (k < 0)
                goto fail;

        k = -EINVAL;
        if (!have_run_id)
                *ret_reason = "the request has no run id";
        else if (want_vm && r.language == SBX_LANG_INVALID)
                *ret_reason = "the request has no language";
        else if (want_code && !have_code)
                *ret_reason = "SBX_B_EXEC has no code";
        else if (want_code && !have_timeout)
                *ret_reason = "SBX_B_EXEC has no timeout";
        else if (r.memory_mb < SBX_MEMORY_MIN_MB || r.memory_mb > RUN_MEMORY_MAX_MB)
                *ret_reason = "memory is outside 128..65536 MiB";
        else if (r.vcpus < 1 || r.vcpus > RUN_VCPUS_MAX)
                *ret_reason = "vCPU count is outside 1..64";
        else if (r.n_domains > 0 && !r.network)
                *ret_reason = "allowed domains without NETWORK";
        else
                k = 0;
        if (k < 0)
                goto fail;

        *ret = r;
        return 0;

fail:
        run_request_done(&r);
        return k;
}

int run_request_parse(RunRequestKind kind, const uint8_t *payload, size_t len, const SbxConfig *config,
                      RunRequest *ret, const char **ret_reason) {
        return request_parse(kind, payload, len, config, ret, ret_reason);
}

void file_request_done(FileRequest *r) {
        free(r->path);
        *r = (FileRequest) {};
}

int file_request_parse(const uint8_t *payload, size_t len, FileRequest *ret, const char **ret_reason) {
        FileRequest f = { .mode = 0644 };
        bool have_mode = false;
        SbxTlvIter it;
        uint16_t tag;
        const uint8_t *v;
        uint32_t n;
        int k;

        *ret_reason = "malformed file request";
        sbx_tlv_iter_init(&it, payload, len);
        while ((k = sbx_tlv_next(&it, &tag, &v, &n)) > 0) {
                if (tag == SBX_T_PATH) {
                        if (f.path) {
                                *ret_reason = "a field of the request appears twice";
                                k = -EBADMSG;
                        } else {
                                k = sbx_tlv_str(v, n, SBX_PATH_MAX, &f.path);
                                if (k == -EBADMSG)
                                        *ret_reason = "the path is longer than 4096 bytes or contains a NUL byte";
                        }
                } else if (tag == SBX_T_MODE) {
                        if (have_mode) {
                                *ret_reason = "a field of the request appears twice";
                                k = -EBADMSG;
                        } else
                                k = sbx_tlv_u32(v, n, &f.mode);
                        have_mode = true;
                        if (k >= 0 && f.mode > 07777) {
                                *ret_reason = "the mode has bits other than 07777";
                                k = -EINVAL;
                        }
                }
                if (k < 0)
                        goto fail;
        }
        if (k < 0)
                goto fail;
        if (!f.path) {
                *ret_reason = "the request has no path";
                k = -EINVAL;
                goto fail;
        }
        *ret = f;
        return 0;

fail:
        file_request_done(&f);
        return k;
}
