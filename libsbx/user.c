/* SPDX-License-Identifier: Apache-2.0 */
/* Kept apart from the rest of libsbx: getpwnam() must not reach the static guest binaries. */
#include <errno.h>
#include <pwd.h>
#include <stdlib.h>

#include "user.h"

int sbx_parse_uid(const char *s, uid_t *ret) {
        char *end;
        unsigned long uid = strtoul(s, &end, 10);

        if (*end || end == s) {
                struct passwd *pw = getpwnam(s);
                if (!pw)
                        return -ENOENT;
                uid = pw->pw_uid;
        }
        if (uid >= (uid_t) -1)
                return -EINVAL;
        *ret = (uid_t) uid;
        return 0;
}
