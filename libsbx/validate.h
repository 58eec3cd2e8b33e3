/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Checks of caller-supplied request fields. Each returns 0, or a negative
 * errno with a human-readable reason in *ret_reason (static storage). The
 * broker maps failures to typed D-Bus errors. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"

SbxLanguage sbx_language_from_string(const char *s);
const char *sbx_language_to_string(SbxLanguage l);

/* Not empty, not only whitespace, <= SBX_CODE_MAX, no NUL, valid length given. */
int sbx_validate_code(const char *code, size_t len, const char **ret_reason);
/* POSIX-style name [A-Za-z_][A-Za-z0-9_]*, <= SBX_ENV_NAME_MAX. */
int sbx_validate_env_name(const char *name, const char **ret_reason);
/* <= SBX_ENV_VALUE_MAX, no control characters except tab. */
int sbx_validate_env_value(const char *value, const char **ret_reason);

/* A sandbox file path, relative to the guest home: not absolute, no ".."
 * component, at most SBX_PATH_MAX bytes and SBX_PATH_COMPONENT_MAX per
 * component, no control characters. Empty means the home itself and is
 * accepted only with allow_empty. The guest checks again, and resolves
 * symlinks beneath home only. */
int sbx_validate_path(const char *path, bool allow_empty, const char **ret_reason);

/* An allowed-domain pattern: a host name ("example.com") or all names below
 * one ("*.example.com"); letters, digits and hyphens in labels of 1-63
 * bytes, no leading or trailing hyphen, at least two labels, at most
 * SBX_DOMAIN_MAX bytes. Upper case is accepted and lowered into out
 * (SBX_DOMAIN_MAX + 1 bytes). */
int sbx_validate_domain_pattern(const char *pattern, char *out, const char **ret_reason);

typedef struct SbxExpose {
        uint16_t internal, external; /* external 0: picked by the worker */
        bool udp;
} SbxExpose;

/* "INTERNAL[:EXTERNAL][/tcp|/udp]", ports 1-65535. */
int sbx_parse_expose(const char *s, SbxExpose *ret, const char **ret_reason);
/* The canonical form "INTERNAL:EXTERNAL/tcp" (buf: at least 20 bytes). */
void sbx_expose_format(const SbxExpose *e, char *buf, size_t size);
