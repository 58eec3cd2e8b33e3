/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "macro.h"
#include "validate.h"

static const char *const language_names[_SBX_LANG_MAX] = {
        [SBX_LANG_PYTHON] = "python",
        [SBX_LANG_JAVASCRIPT] = "javascript",
        [SBX_LANG_RAW] = "raw",
};

SbxLanguage sbx_language_from_string(const char *s) {
        if (!s)
                return SBX_LANG_INVALID;
        for (int i = 0; i < _SBX_LANG_MAX; i++)
                if (strcmp(s, language_names[i]) == 0)
                        return (SbxLanguage) i;
        return SBX_LANG_INVALID;
}

const char *sbx_language_to_string(SbxLanguage l) {
        if (l < 0 || l >= _SBX_LANG_MAX)
                return NULL;
        return language_names[l];
}

int sbx_validate_code(const char *code, size_t len, const char **ret_reason) {
        if (len == 0) {
                *ret_reason = "code is empty";
                return -EINVAL;
        }
        if (len > SBX_CODE_MAX) {
                *ret_reason = "code is larger than 1 MiB";
                return -E2BIG;
        }
        if (memchr(code, 0, len)) {
                *ret_reason = "code contains a NUL byte";
                return -EINVAL;
        }
        for (size_t i = 0; i < len; i++)
                if (!strchr(" \t\r\n\v\f", code[i]))
                        return 0;
        *ret_reason = "code is only whitespace";
        return -EINVAL;
}

int sbx_validate_env_name(const char *name, const char **ret_reason) {
        size_t n = strlen(name);

        if (n == 0) {
                *ret_reason = "environment variable name is empty";
                return -EINVAL;
        }
        if (n > SBX_ENV_NAME_MAX) {
                *ret_reason = "environment variable name is longer than 256 bytes";
                return -E2BIG;
        }
        for (size_t i = 0; i < n; i++) {
                char c = name[i];
                bool ok = c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                          (i > 0 && c >= '0' && c <= '9');
                if (!ok) {
                        *ret_reason = "environment variable name must match [A-Za-z_][A-Za-z0-9_]*";
                        return -EINVAL;
                }
        }
        return 0;
}

int sbx_validate_env_value(const char *value, const char **ret_reason) {
        size_t n = strlen(value);

        if (n > SBX_ENV_VALUE_MAX) {
                *ret_reason = "environment variable value is longer than 32 KiB";
                return -E2BIG;
        }
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char) value[i];
                if ((c < 0x20 && c != '\t') || c == 0x7f) {
                        *ret_reason = "environment variable value contains a control character";
                        return -EINVAL;
                }
        }
        return 0;
}

int sbx_validate_path(const char *path, bool allow_empty, const char **ret_reason) {
        size_t n = strlen(path), component = 0;

        if (n == 0) {
                if (allow_empty)
                        return 0;
                *ret_reason = "the path is empty";
                return -EINVAL;
        }
        if (n > SBX_PATH_MAX) {
                *ret_reason = "the path is longer than 4096 bytes";
                return -ENAMETOOLONG;
        }
        if (path[0] == '/') {
                *ret_reason = "the path is absolute; paths are relative to the sandbox home";
                return -EINVAL;
        }
        for (size_t i = 0; i <= n; i++) {
                unsigned char c = (unsigned char) path[i];
                if (c == '/' || c == 0) {
                        if (component == 2 && path[i - 1] == '.' && path[i - 2] == '.') {
                                *ret_reason = "the path contains a '..' component";
                                return -EINVAL;
                        }
                        component = 0;
                        continue;
                }
                if (c < 0x20 || c == 0x7f) {
                        *ret_reason = "the path contains a control character";
                        return -EINVAL;
                }
                if (++component > SBX_PATH_COMPONENT_MAX) {
                        *ret_reason = "a path component is longer than 255 bytes";
                        return -ENAMETOOLONG;
                }
        }
        return 0;
}

int sbx_validate_domain_pattern(const char *pattern, char *out, const char **ret_reason) {
        const char *p = pattern;
        size_t n = strlen(pattern), labels = 0, label = 0, o = 0;

        if (n == 0) {
                *ret_reason = "is empty";
                return -EINVAL;
        }
        if (n > SBX_DOMAIN_MAX) {
                *ret_reason = "is longer than 253 bytes";
                return -EINVAL;
        }
        if (p[0] == '*') {
                if (p[1] != '.') {
                        *ret_reason = "may use '*' only as its whole first label ('*.example.com')";
                        return -EINVAL;
                }
                out[o++] = '*';
                out[o++] = '.';
                p += 2;
        }
        for (;; p++) {
                char c = *p;
                if (c == '.' || c == 0) {
                        if (label == 0) {
                                *ret_reason = "has an empty label";
                                return -EINVAL;
                        }
                        if (p[-1] == '-') {
                                *ret_reason = "has a label ending in '-'";
                                return -EINVAL;
                        }
                        labels++;
                        label = 0;
                        if (c == 0)
                                break;
                        out[o++] = '.';
                        continue;
                }
                if (c >= 'A' && c <= 'Z')
                        c = (char) (c - 'A' + 'a');
                if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
                        *ret_reason = "may hold only letters, digits, '-' and '.' (and a leading '*.')";
                        return -EINVAL;
                }
                if (c == '-' && label == 0) {
                        *ret_reason = "has a label starting with '-'";
                        return -EINVAL;
                }
                if (++label > 63) {
                        *ret_reason = "has a label longer than 63 bytes";
                        return -EINVAL;
                }
                out[o++] = c;
        }
        if (labels < 2) {
                *ret_reason = "needs at least two labels (a top-level domain alone is refused)";
                return -EINVAL;
        }
        out[o] = 0;
        return 0;
}

static int parse_port(const char **p, uint16_t *ret) {
        unsigned v = 0;
        const char *s = *p;

        if (*s < '0' || *s > '9')
                return -EINVAL;
        for (; *s >= '0' && *s <= '9'; s++) {
                v = v * 10 + (unsigned) (*s - '0');
                if (v > 65535)
                        return -ERANGE;
        }
        if (v == 0)
                return -ERANGE;
        *ret = (uint16_t) v;
        *p = s;
        return 0;
}

int sbx_parse_expose(const char *s, SbxExpose *ret, const char **ret_reason) {
        SbxExpose e = {};
        const char *p = s;

        if (parse_port(&p, &e.internal) < 0) {
                *ret_reason = "needs an internal port 1-65535 first ('INTERNAL[:EXTERNAL][/tcp|/udp]')";
                return -EINVAL;
        }
        if (*p == ':') {
                p++;
                if (parse_port(&p, &e.external) < 0) {
                        *ret_reason = "has an external port that is not 1-65535";
                        return -EINVAL;
                }
        }
        if (*p == '/') {
                p++;
                if (strcmp(p, "tcp") == 0)
                        e.udp = false;
                else if (strcmp(p, "udp") == 0)
                        e.udp = true;
                else {
                        *ret_reason = "has a protocol other than tcp or udp";
                        return -EINVAL;
                }
                p += 3;
        }
        if (*p != 0) {
                *ret_reason = "is not 'INTERNAL[:EXTERNAL][/tcp|/udp]'";
                return -EINVAL;
        }
        *ret = e;
        return 0;
}

void sbx_expose_format(const SbxExpose *e, char *buf, size_t size) {
        snprintf(buf, size, "%u:%u/%s", e->internal, e->external, e->udp ? "udp" : "tcp");
}
