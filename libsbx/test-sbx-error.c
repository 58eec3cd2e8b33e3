/* SPDX-License-Identifier: Apache-2.0 */
/* SbxError: set returns the negative errno, replaces, tolerates NULL, falls back to strerror(). */
#include <string.h>

#include "sbx-error.h"
#include "tests.h"

static int fail_with(SbxError *e, const char *what) {
        return sbx_error_set(e, -EINVAL, "bad %s", what);
}

static void test_set_returns_errno(void) {
        _cleanup_(sbx_error_done) SbxError e = {};

        ASSERT_FALSE(sbx_error_is_set(&e));
        ASSERT_STREQ(sbx_error_message(&e), "");
        ASSERT_ERROR(fail_with(&e, "thing"), EINVAL);
        ASSERT_TRUE(sbx_error_is_set(&e));
        ASSERT_EQ(e.error, -EINVAL);
        ASSERT_STREQ(e.message, "bad thing");
        ASSERT_STREQ(sbx_error_message(&e), "bad thing");
}

static void test_replace_and_positive(void) {
        _cleanup_(sbx_error_done) SbxError e = {};

        (void) sbx_error_set(&e, -ENOENT, "first");
        /* A positive errno is taken as its negative. */
        ASSERT_ERROR(sbx_error_set(&e, EPERM, "second %d", 2), EPERM);
        ASSERT_EQ(e.error, -EPERM);
        ASSERT_STREQ(e.message, "second 2");
        /* No errno at all still fails. */
        ASSERT_ERROR(sbx_error_set(&e, 0, "lost"), EIO);
}

static void test_errno_only(void) {
        _cleanup_(sbx_error_done) SbxError e = {};

        (void) sbx_error_set(&e, -ENOENT, "with text");
        ASSERT_ERROR(sbx_error_set_errno(&e, -ENOMEM), ENOMEM);
        ASSERT_NULL(e.message);
        ASSERT_STREQ(sbx_error_message(&e), strerror(ENOMEM));
}

static void test_null(void) {
        ASSERT_ERROR(fail_with(NULL, "nothing"), EINVAL);
        ASSERT_ERROR(sbx_error_set_errno(NULL, ENOSPC), ENOSPC);
        ASSERT_FALSE(sbx_error_is_set(NULL));
        ASSERT_STREQ(sbx_error_message(NULL), "");
        sbx_error_done(NULL);
}

static void test_done(void) {
        SbxError e = {};

        (void) sbx_error_set(&e, -EBADMSG, "%s", "gone");
        sbx_error_done(&e);
        ASSERT_EQ(e.error, 0);
        ASSERT_NULL(e.message);
        sbx_error_done(&e); /* twice is fine */
}

int main(void) {
        TEST(test_set_returns_errno);
        TEST(test_replace_and_positive);
        TEST(test_errno_only);
        TEST(test_null);
        TEST(test_done);
        return 0;
}
