/* SPDX-License-Identifier: Apache-2.0 */
/* Request field validation (validate.h) and output sanitizing (utf8.h). */

#include <string.h>

#include "macro.h"
#include "proto.h"
#include "tests.h"
#include "utf8.h"
#include "validate.h"

static void test_code(void) {
        const char *reason = NULL;

        ASSERT_OK(sbx_validate_code("print(1)", 8, &reason));
        ASSERT_OK(sbx_validate_code("x", 1, &reason));
        ASSERT_OK(sbx_validate_code("  \n\tx\n", 6, &reason));
        /* Only the given length counts, not a later NUL. */
        ASSERT_OK(sbx_validate_code("abc", 2, &reason));

        reason = NULL;
        ASSERT_ERROR(sbx_validate_code("", 0, &reason), EINVAL);
        ASSERT_NOT_NULL(reason);
        reason = NULL;
        ASSERT_ERROR(sbx_validate_code(NULL, 0, &reason), EINVAL);
        ASSERT_NOT_NULL(reason);

        /* Whitespace only, every kind of it. */
        const char *blanks[] = {" ", "\n", "\t", "\r\n", "\v\f", " \t\r\n\v\f "};
        for (size_t i = 0; i < ELEMENTSOF(blanks); i++) {
                reason = NULL;
                ASSERT_ERROR(sbx_validate_code(blanks[i], strlen(blanks[i]), &reason), EINVAL);
                ASSERT_STREQ(reason, "code is only whitespace");
        }

        /* NUL bytes anywhere. */
        reason = NULL;
        ASSERT_ERROR(sbx_validate_code("a\0b", 3, &reason), EINVAL);
        ASSERT_STREQ(reason, "code contains a NUL byte");
        ASSERT_ERROR(sbx_validate_code("\0", 1, &reason), EINVAL);
        ASSERT_ERROR(sbx_validate_code("ab\0", 3, &reason), EINVAL);
        ASSERT_ERROR(sbx_validate_code(" \0 ", 3, &reason), EINVAL);

        /* Exactly 1 MiB passes, one byte more is -E2BIG. */
        _cleanup_free_ char *big = malloc(SBX_CODE_MAX + 2);
        ASSERT_NOT_NULL(big);
        memset(big, 'a', SBX_CODE_MAX + 1);
        big[SBX_CODE_MAX + 1] = 0;
        ASSERT_OK(sbx_validate_code(big, SBX_CODE_MAX, &reason));
        reason = NULL;
        ASSERT_ERROR(sbx_validate_code(big, SBX_CODE_MAX + 1, &reason), E2BIG);
        ASSERT_STREQ(reason, "code is larger than 1 MiB");
        /* A 1 MiB whitespace-only body is still only whitespace. */
        memset(big, ' ', SBX_CODE_MAX);
        ASSERT_ERROR(sbx_validate_code(big, SBX_CODE_MAX, &reason), EINVAL);
        big[SBX_CODE_MAX - 1] = 'x';
        ASSERT_OK(sbx_validate_code(big, SBX_CODE_MAX, &reason));

        /* Non-ASCII and other control bytes are code like any other. */
        ASSERT_OK(sbx_validate_code("print('\xc3\xa9')", 11, &reason));
        ASSERT_OK(sbx_validate_code("\x01", 1, &reason));
        ASSERT_OK(sbx_validate_code("\xff", 1, &reason));
}

static void test_env_name(void) {
        const char *reason = NULL;
        const char *good[] = {"A", "a", "_", "__", "PATH", "my_var", "X1", "_9", "abcXYZ_019"};
        const char *bad[] = {"1A", "9", "A-B", "A B", " A", "A ", "A=B", "A.B", "\xc3\xa9", "A\tB", "$A", "A\n"};

        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                ASSERT_OK(sbx_validate_env_name(good[i], &reason));
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                reason = NULL;
                ASSERT_ERROR(sbx_validate_env_name(bad[i], &reason), EINVAL);
                ASSERT_NOT_NULL(reason);
        }
        reason = NULL;
        ASSERT_ERROR(sbx_validate_env_name("", &reason), EINVAL);
        ASSERT_STREQ(reason, "environment variable name is empty");

        char name[SBX_ENV_NAME_MAX + 2];
        memset(name, 'N', sizeof name);
        name[SBX_ENV_NAME_MAX] = 0;
        ASSERT_OK(sbx_validate_env_name(name, &reason));
        name[SBX_ENV_NAME_MAX] = 'N';
        name[SBX_ENV_NAME_MAX + 1] = 0;
        reason = NULL;
        ASSERT_ERROR(sbx_validate_env_name(name, &reason), E2BIG);
        ASSERT_NOT_NULL(reason);
}

static void test_env_value(void) {
        const char *reason = NULL;
        const char *good[] = {
                "", "x", "two words", "tab\there", "=", "a=b=c", "\xc3\xa9t\xc3\xa9", "~!@#$%^&*()", "\x80\xff"};

        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                ASSERT_OK(sbx_validate_env_value(good[i], &reason));

        for (int c = 1; c < 0x20; c++) {
                char v[4] = {'a', (char) c, 'b', 0};
                if (c == '\t')
                        ASSERT_OK(sbx_validate_env_value(v, &reason));
                else {
                        reason = NULL;
                        ASSERT_ERROR(sbx_validate_env_value(v, &reason), EINVAL);
                        ASSERT_NOT_NULL(reason);
                }
        }
        ASSERT_ERROR(sbx_validate_env_value("a\x7f", &reason), EINVAL);
        ASSERT_ERROR(sbx_validate_env_value("line\n", &reason), EINVAL);

        _cleanup_free_ char *v = malloc(SBX_ENV_VALUE_MAX + 2);
        ASSERT_NOT_NULL(v);
        memset(v, 'v', SBX_ENV_VALUE_MAX + 1);
        v[SBX_ENV_VALUE_MAX] = 0;
        ASSERT_OK(sbx_validate_env_value(v, &reason));
        v[SBX_ENV_VALUE_MAX] = 'v';
        v[SBX_ENV_VALUE_MAX + 1] = 0;
        reason = NULL;
        ASSERT_ERROR(sbx_validate_env_value(v, &reason), E2BIG);
        ASSERT_NOT_NULL(reason);
}

static void test_language(void) {
        ASSERT_EQ(sbx_language_from_string("python"), SBX_LANG_PYTHON);
        ASSERT_EQ(sbx_language_from_string("javascript"), SBX_LANG_JAVASCRIPT);
        ASSERT_EQ(sbx_language_from_string("raw"), SBX_LANG_RAW);

        const char *bad[] = {"", "Python", "PYTHON", "python ", " python", "python3", "js", "node", "bash", "r"};
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                ASSERT_EQ(sbx_language_from_string(bad[i]), SBX_LANG_INVALID);
        ASSERT_EQ(sbx_language_from_string(NULL), SBX_LANG_INVALID);

        for (int l = 0; l < _SBX_LANG_MAX; l++)
                ASSERT_EQ(sbx_language_from_string(sbx_language_to_string((SbxLanguage) l)), l);
        ASSERT_STREQ(sbx_language_to_string(SBX_LANG_PYTHON), "python");
        ASSERT_NULL(sbx_language_to_string(SBX_LANG_INVALID));
        ASSERT_NULL(sbx_language_to_string(_SBX_LANG_MAX));
}

static void check_sanitize(const char *in, size_t n, const char *expected) {
        _cleanup_free_ char *s = utf8_sanitize(in, n);
        ASSERT_NOT_NULL(s);
        ASSERT_STREQ(s, expected);
}

static void test_utf8(void) {
#define R "\xef\xbf\xbd"
        check_sanitize("", 0, "");
        check_sanitize("hello\n", 6, "hello\n");
        check_sanitize("\xc3\xa9", 2, "\xc3\xa9");                 /* U+00E9 */
        check_sanitize("\xe2\x82\xac", 3, "\xe2\x82\xac");         /* U+20AC */
        check_sanitize("\xf0\x9f\x98\x80", 4, "\xf0\x9f\x98\x80"); /* U+1F600 */
        check_sanitize("\xf4\x8f\xbf\xbf", 4, "\xf4\x8f\xbf\xbf"); /* U+10FFFF */
        check_sanitize("a\0b", 3, "a" R "b");
        check_sanitize("\xff", 1, R);
        check_sanitize("\xc3", 1, R);                   /* truncated */
        check_sanitize("\xe2\x82", 2, R R);             /* truncated */
        check_sanitize("\xc0\xaf", 2, R R);             /* overlong '/' */
        check_sanitize("\xe0\x80\xaf", 3, R R R);       /* overlong */
        check_sanitize("\xed\xa0\x80", 3, R R R);       /* surrogate U+D800 */
        check_sanitize("\xf4\x90\x80\x80", 4, R R R R); /* > U+10FFFF */
        check_sanitize("\x80x", 2, R "x");              /* lone continuation */
        check_sanitize("\xc3x", 2, R "x");
#undef R
        /* Worst case: every byte triples. */
        char all[256];
        for (int i = 0; i < 256; i++)
                all[i] = (char) (0x80 | (i & 0x3f));
        _cleanup_free_ char *s = utf8_sanitize(all, sizeof all);
        ASSERT_NOT_NULL(s);
        ASSERT_EQ(strlen(s), 3 * sizeof all);
}

static void test_domain_pattern(void) {
        char out[SBX_DOMAIN_MAX + 1];
        const char *reason;
        char big[300];

        ASSERT_OK(sbx_validate_domain_pattern("example.com", out, &reason));
        ASSERT_STREQ(out, "example.com");
        ASSERT_OK(sbx_validate_domain_pattern("*.Example.COM", out, &reason));
        ASSERT_STREQ(out, "*.example.com");
        ASSERT_OK(sbx_validate_domain_pattern("a-b.c9.example", out, &reason));
        static const char *const bad[] = {
                "", "com", "*.com", "*", "*example.com", "a.*.com", "ex ample.com", "example..com", ".example.com",
                "example.com.", "-a.com", "a-.com", "exa_mple.com", "ex\x01.com", "10.0.0.1:80", "http://x.com",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                reason = NULL;
                ASSERT_ERROR(sbx_validate_domain_pattern(bad[i], out, &reason), EINVAL);
                ASSERT_NOT_NULL(reason);
        }
        memset(big, 'a', sizeof big);
        big[64] = 0; /* one label of 64 */
        strcat(big, ".com");
        ASSERT_ERROR(sbx_validate_domain_pattern(big, out, &reason), EINVAL);
        /* 254 bytes in labels of 63 */
        for (size_t i = 0; i < 254; i++)
                big[i] = (i % 64 == 63) ? '.' : 'a';
        big[254] = 0;
        ASSERT_ERROR(sbx_validate_domain_pattern(big, out, &reason), EINVAL);
}

static void test_expose(void) {
        SbxExpose e;
        const char *reason;
        char buf[32];

        ASSERT_OK(sbx_parse_expose("8000", &e, &reason));
        ASSERT_EQ(e.internal, 8000);
        ASSERT_EQ(e.external, 0);
        ASSERT_FALSE(e.udp);
        ASSERT_OK(sbx_parse_expose("53:5353/udp", &e, &reason));
        ASSERT_EQ(e.internal, 53);
        ASSERT_EQ(e.external, 5353);
        ASSERT_TRUE(e.udp);
        sbx_expose_format(&e, buf, sizeof buf);
        ASSERT_STREQ(buf, "53:5353/udp");
        ASSERT_OK(sbx_parse_expose("80/tcp", &e, &reason));
        static const char *const bad[] = {
                "", "0", "65536", "80:0", "80:", ":80", "80/sctp", "80:90/", "-1", "80 ", "80:90:100", "abc",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                reason = NULL;
                ASSERT_ERROR(sbx_parse_expose(bad[i], &e, &reason), EINVAL);
                ASSERT_NOT_NULL(reason);
        }
}

int main(void) {
        TEST(test_domain_pattern);
        TEST(test_expose);
        TEST(test_code);
        TEST(test_env_name);
        TEST(test_env_value);
        TEST(test_language);
        TEST(test_utf8);
        return 0;
}
