/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdbool.h>
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
