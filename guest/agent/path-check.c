/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <string.h>

#include "path-check.h"

int path_check(const char *path, size_t len, char *out, size_t out_size) {
        size_t o = 0, i = 0;

        if (out_size > 0)
                out[0] = 0;
        if (!path && len > 0)
                return -EINVAL;
        if (len > PATH_CHECK_MAX)
                return -ENAMETOOLONG;
        if (out_size < len + 1)
                return -ENOBUFS;
        if (len > 0 && path[0] == '/')
                return -EINVAL;
        if (memchr(path, 0, len))
                return -EINVAL;

        while (i < len) {
                size_t start = i, n;

                while (i < len && path[i] != '/')
                        i++;
                n = i - start;
                if (i < len)
                        i++; /* the slash */
                if (n == 0 || (n == 1 && path[start] == '.'))
                        continue;
                if (n == 2 && path[start] == '.' && path[start + 1] == '.') {
                        out[0] = 0;
                        return -EINVAL;
                }
                if (n > PATH_CHECK_COMPONENT_MAX) {
                        out[0] = 0;
                        return -ENAMETOOLONG;
                }
                /* o + 1 + n <= len always: every component kept came with its
                 * own bytes of input, and at least one separator between. */
                if (o > 0)
                        out[o++] = '/';
                memcpy(out + o, path + start, n);
                o += n;
        }
        out[o] = 0;
        return 0;
}

char *path_split_last(char *p, const char **ret_parent) {
        char *slash = strrchr(p, '/');

        if (!slash) {
                *ret_parent = "";
                return p;
        }
        *slash = 0;
        *ret_parent = p;
        return slash + 1;
}
