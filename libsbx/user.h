/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <sys/types.h>

/* A uid given as a number or a user name (the daemons' --allow-uid). 0, or -EINVAL / -ENOENT. */
int sbx_parse_uid(const char *s, uid_t *ret);
