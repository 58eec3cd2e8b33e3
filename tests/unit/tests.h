/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* A tiny assertion kit for the unit tests: every failed check prints
 * file:line and the expression, then aborts (so sanitizers and meson see a
 * hard failure). Integer checks print both values. */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEST_FAIL(...)                                                                                                 \
        do {                                                                                                           \
                fprintf(stderr, "%s:%d: %s: ", __FILE__, __LINE__, __func__);                                          \
                fprintf(stderr, __VA_ARGS__);                                                                          \
                fputc('\n', stderr);                                                                                   \
                abort();                                                                                               \
        } while (0)

#define ASSERT_TRUE(expr)                                                                                              \
        do {                                                                                                           \
                if (!(expr))                                                                                           \
                        TEST_FAIL("assertion failed: %s", #expr);                                                      \
        } while (0)

#define ASSERT_FALSE(expr) ASSERT_TRUE(!(expr))

/* expr must be >= 0 (negative errno style). */
#define ASSERT_OK(expr)                                                                                                \
        do {                                                                                                           \
                long long _r_ = (long long) (expr);                                                                    \
                if (_r_ < 0)                                                                                           \
                        TEST_FAIL("%s failed: %lld (%s)", #expr, _r_, strerror((int) -_r_));                           \
        } while (0)

/* expr must return exactly the negative errno `err`. */
#define ASSERT_ERROR(expr, err)                                                                                        \
        do {                                                                                                           \
                long long _r_ = (long long) (expr);                                                                    \
                if (_r_ != -(long long) (err))                                                                         \
                        TEST_FAIL("%s = %lld, expected -%s (%lld)", #expr, _r_, #err, -(long long) (err));             \
        } while (0)

#define ASSERT_EQ(a, b)                                                                                                \
        do {                                                                                                           \
                long long _a_ = (long long) (a), _b_ = (long long) (b);                                                \
                if (_a_ != _b_)                                                                                        \
                        TEST_FAIL("%s == %s failed: %lld != %lld", #a, #b, _a_, _b_);                                  \
        } while (0)

#define ASSERT_NE(a, b)                                                                                                \
        do {                                                                                                           \
                long long _a_ = (long long) (a), _b_ = (long long) (b);                                                \
                if (_a_ == _b_)                                                                                        \
                        TEST_FAIL("%s != %s failed: both %lld", #a, #b, _a_);                                          \
        } while (0)

#define ASSERT_LE(a, b)                                                                                                \
        do {                                                                                                           \
                unsigned long long _a_ = (unsigned long long) (a), _b_ = (unsigned long long) (b);                     \
                if (_a_ > _b_)                                                                                         \
                        TEST_FAIL("%s <= %s failed: %llu > %llu", #a, #b, _a_, _b_);                                   \
        } while (0)

#define ASSERT_STREQ(a, b)                                                                                             \
        do {                                                                                                           \
                const char *_a_ = (a), *_b_ = (b);                                                                     \
                if (!_a_ || !_b_ || strcmp(_a_, _b_) != 0)                                                             \
                        TEST_FAIL("%s == %s failed: \"%s\" != \"%s\"", #a, #b, _a_ ?: "(null)", _b_ ?: "(null)");      \
        } while (0)

#define ASSERT_NULL(p) ASSERT_TRUE((p) == NULL)
#define ASSERT_NOT_NULL(p) ASSERT_TRUE((p) != NULL)

/* Runs one test function and says so, so a failure's output shows which. */
#define TEST(fn)                                                                                                       \
        do {                                                                                                           \
                fprintf(stderr, "== %s\n", #fn);                                                                       \
                fn();                                                                                                  \
        } while (0)

/* A check that counts instead of aborting, for tests that report every failed check at once;
 * main() ends with `return CHECK_SUMMARY();`. */
__attribute__((unused)) static unsigned check_passed, check_failed;

#define CHECK(expr)                                                                                                    \
        do {                                                                                                           \
                if (expr)                                                                                              \
                        check_passed++;                                                                                \
                else {                                                                                                 \
                        check_failed++;                                                                                \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #expr);                       \
                }                                                                                                      \
        } while (0)

#define CHECK_SUMMARY() (printf("%u passed, %u failed\n", check_passed, check_failed), check_failed == 0 ? 0 : 1)
