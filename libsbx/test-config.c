/* SPDX-License-Identifier: Apache-2.0 */
/* The key = value configuration parser and loader (config.h). */

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "macro.h"
#include "tests.h"

static void test_string_keys(void) {
        SbxConfig c = {};
        static const struct {
                const char *key;
                size_t offset;
        } keys[] = {
                {"kernel", offsetof(SbxConfig, kernel)},
                {"initrd", offsetof(SbxConfig, initrd)},
                {"rootfs", offsetof(SbxConfig, rootfs)},
                {"qemu", offsetof(SbxConfig, qemu)},
                {"worker_path", offsetof(SbxConfig, worker_path)},
                {"worker_socket", offsetof(SbxConfig, worker_socket)},
                {"runtime_dir", offsetof(SbxConfig, runtime_dir)},
                {"state_dir", offsetof(SbxConfig, state_dir)},
                {"cgroup_parent", offsetof(SbxConfig, cgroup_parent)},
        };

        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                char **field = (char **) ((char *) &c + keys[i].offset);
                char line[256];

                snprintf(line, sizeof line, "%s=/some/path/%zu", keys[i].key, i);
                ASSERT_OK(sbx_config_parse_line(&c, line));
                char expected[64];
                snprintf(expected, sizeof expected, "/some/path/%zu", i);
                ASSERT_STREQ(*field, expected);

                /* Whitespace around key and value is trimmed, inner kept;
                 * a second assignment replaces the first. */
                snprintf(line, sizeof line, "  \t%s \t=  a value with spaces \t ", keys[i].key);
                ASSERT_OK(sbx_config_parse_line(&c, line));
                ASSERT_STREQ(*field, "a value with spaces");

                /* Empty is a valid value (cgroup_parent = "" disables cgroups). */
                snprintf(line, sizeof line, "%s =", keys[i].key);
                ASSERT_OK(sbx_config_parse_line(&c, line));
                ASSERT_STREQ(*field, "");

                /* Only the first '=' separates. */
                snprintf(line, sizeof line, "%s = a=b", keys[i].key);
                ASSERT_OK(sbx_config_parse_line(&c, line));
                ASSERT_STREQ(*field, "a=b");
        }
        sbx_config_done(&c);
        ASSERT_NULL(c.kernel);
}

static void test_accel(void) {
        SbxConfig c = {};

        ASSERT_OK(sbx_config_parse_line(&c, "accel = kvm"));
        ASSERT_EQ(c.accel, SBX_ACCEL_KVM);
        ASSERT_OK(sbx_config_parse_line(&c, "accel=tcg"));
        ASSERT_EQ(c.accel, SBX_ACCEL_TCG);
        ASSERT_OK(sbx_config_parse_line(&c, "accel = auto"));
        ASSERT_EQ(c.accel, SBX_ACCEL_AUTO);

        const char *bad[] = {"accel = KVM", "accel = ", "accel = xen", "accel = kvm tcg", "accel = kvm,tcg"};
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                c.accel = SBX_ACCEL_TCG;
                ASSERT_ERROR(sbx_config_parse_line(&c, bad[i]), EINVAL);
                ASSERT_EQ(c.accel, SBX_ACCEL_TCG); /* unchanged */
        }

        SbxAccel a;
        for (int i = SBX_ACCEL_AUTO; i <= SBX_ACCEL_TCG; i++) {
                ASSERT_OK(sbx_accel_from_string(sbx_accel_to_string((SbxAccel) i), &a));
                ASSERT_EQ(a, i);
        }
        ASSERT_STREQ(sbx_accel_to_string(SBX_ACCEL_KVM), "kvm");
        ASSERT_STREQ(sbx_accel_to_string((SbxAccel) 42), "unknown");
        ASSERT_ERROR(sbx_accel_from_string("", &a), EINVAL);
        sbx_config_done(&c);
}

static void test_number_keys(void) {
        SbxConfig c = {};
        static const struct {
                const char *key;
                size_t offset;
                uint32_t min, max;
        } keys[] = {
                {"max_vms", offsetof(SbxConfig, max_vms), 0, 4096},
                {"queue_max", offsetof(SbxConfig, queue_max), 0, 100000},
                {"queue_timeout_seconds", offsetof(SbxConfig, queue_timeout_s), 1, 3600},
                {"max_vms_per_uid", offsetof(SbxConfig, max_vms_per_uid), 0, 4096},
                {"max_sessions_per_uid", offsetof(SbxConfig, max_sessions_per_uid), 0, 4096},
                {"default_memory_mb", offsetof(SbxConfig, default_memory_mb), 128, 1024 * 1024},
                {"vcpus", offsetof(SbxConfig, vcpus), 1, 64},
                {"boot_timeout_ms", offsetof(SbxConfig, boot_timeout_ms), 500, 600000},
                {"job_linger_seconds", offsetof(SbxConfig, job_linger_s), 0, 86400},
        };
        const char *junk[] = {
                "", "abc", "1x", "x1", "1.5", "1 2", "0x10", "99999999999999999999999", "-1", "18446744073709551617"};

        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                uint32_t *field = (uint32_t *) ((char *) &c + keys[i].offset);
                char line[256];

                /* Both ends of the range are accepted. */
                snprintf(line, sizeof line, "%s = %u", keys[i].key, keys[i].min);
                ASSERT_OK(sbx_config_parse_line(&c, line));
                ASSERT_EQ(*field, keys[i].min);
                snprintf(line, sizeof line, "%s=%u", keys[i].key, keys[i].max);
                ASSERT_OK(sbx_config_parse_line(&c, line));
                ASSERT_EQ(*field, keys[i].max);

                /* One past either end is not, and leaves the field alone. */
                snprintf(line, sizeof line, "%s = %llu", keys[i].key, (unsigned long long) keys[i].max + 1);
                ASSERT_ERROR(sbx_config_parse_line(&c, line), EINVAL);
                ASSERT_EQ(*field, keys[i].max);
                if (keys[i].min > 0) {
                        snprintf(line, sizeof line, "%s = %u", keys[i].key, keys[i].min - 1);
                        ASSERT_ERROR(sbx_config_parse_line(&c, line), EINVAL);
                        ASSERT_EQ(*field, keys[i].max);
                }

                for (size_t j = 0; j < ELEMENTSOF(junk); j++) {
                        snprintf(line, sizeof line, "%s = %s", keys[i].key, junk[j]);
                        ASSERT_ERROR(sbx_config_parse_line(&c, line), EINVAL);
                        ASSERT_EQ(*field, keys[i].max);
                }
        }
        sbx_config_done(&c);
}

static void test_syntax(void) {
        SbxConfig c = {};

        /* Blank lines and comments. */
        const char *ignored[] = {"",          " ", "\t \t", "# comment", "   # indented = comment", "; ini comment",
                                 "#kernel=/x"};
        for (size_t i = 0; i < ELEMENTSOF(ignored); i++)
                ASSERT_EQ(sbx_config_parse_line(&c, ignored[i]), 0);
        ASSERT_NULL(c.kernel);

        /* Unknown keys, missing '=', missing key, keys that only look right. */
        const char *bad[] = {
                "unknown = 1", "kernel",       "kernel /x",    "= /x",      "  = /x",
                "Kernel = /x", "kern el = /x", "kernel_ = /x", "[section]", "vcpus = 1 # trailing comment"};
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                ASSERT_ERROR(sbx_config_parse_line(&c, bad[i]), EINVAL);
        ASSERT_NULL(c.kernel);

        /* Overlong key and value are refused, not truncated. */
        char line[8192];
        memset(line, 'k', 100);
        strcpy(line + 100, " = 1");
        ASSERT_ERROR(sbx_config_parse_line(&c, line), EINVAL);
        strcpy(line, "kernel = ");
        size_t n = strlen(line);
        memset(line + n, 'v', 4095);
        line[n + 4095] = 0;
        ASSERT_OK(sbx_config_parse_line(&c, line));
        ASSERT_EQ(strlen(c.kernel), 4095);
        line[n + 4095] = 'v';
        line[n + 4096] = 0;
        ASSERT_ERROR(sbx_config_parse_line(&c, line), EINVAL);
        ASSERT_EQ(strlen(c.kernel), 4095);
        sbx_config_done(&c);
}

static char *write_temp_config(const char *contents) {
        char *path = strdup("/tmp/sbx-test-config-XXXXXX");
        ASSERT_NOT_NULL(path);
        int fd = mkstemp(path);
        ASSERT_TRUE(fd >= 0);
        ASSERT_EQ(write(fd, contents, strlen(contents)), (ssize_t) strlen(contents));
        close(fd);
        return path;
}

static void test_load(void) {
        SbxConfig c;
        _cleanup_free_ char *path = NULL, *bad = NULL;

        unsetenv("SBX_ACCEL");
        unsetenv("SBX_CONFIG");

        /* A missing file means defaults. */
        ASSERT_OK(sbx_config_load(&c, "/nonexistent/sbx.conf", NULL));
        ASSERT_EQ(c.accel, SBX_ACCEL_AUTO);
        ASSERT_EQ(c.vcpus, 1);
        ASSERT_EQ(c.default_memory_mb, 256);
        ASSERT_EQ(c.queue_max, 64);
        ASSERT_EQ(c.queue_timeout_s, 120);
        ASSERT_EQ(c.boot_timeout_ms, 20000);
        ASSERT_EQ(c.job_linger_s, 60);
        ASSERT_EQ(c.max_vms, 0);
        ASSERT_EQ(c.max_vms_per_uid, 0);
        ASSERT_EQ(c.max_sessions_per_uid, 0);
        ASSERT_NULL(c.worker_socket);
        ASSERT_STREQ(c.qemu, "qemu-system-x86_64");
        ASSERT_STREQ(c.cgroup_parent, "sbx");
        ASSERT_NOT_NULL(c.kernel);
        ASSERT_NOT_NULL(c.initrd);
        ASSERT_NOT_NULL(c.rootfs);
        ASSERT_NOT_NULL(c.worker_path);
        ASSERT_NOT_NULL(c.state_dir);
        if (getuid() == 0)
                ASSERT_STREQ(c.runtime_dir, "/run/sbx");
        else
                ASSERT_TRUE(strlen(c.runtime_dir) > 4 &&
                            strcmp(c.runtime_dir + strlen(c.runtime_dir) - 4, "/sbx") == 0);
        sbx_config_done(&c);

        path = write_temp_config("# sbx test config\n"
                                 "\n"
                                 "kernel = /k/bzImage\n"
                                 "initrd=/k/initramfs.cpio\n"
                                 "rootfs = /k/rootfs.erofs\n"
                                 "qemu = /usr/bin/qemu-system-x86_64\n"
                                 "worker_path = /w/sbx-vmworker\n"
                                 "worker_socket = /run/sbx/vmworker.sock\n"
                                 "runtime_dir = /r\n"
                                 "state_dir = /s\n"
                                 "cgroup_parent =\n"
                                 "accel = kvm\n"
                                 "max_vms = 3\n"
                                 "queue_max = 5\n"
                                 "queue_timeout_seconds = 7\n"
                                 "max_vms_per_uid = 2\n"
                                 "max_sessions_per_uid = 1\n"
                                 "default_memory_mb = 512\n"
                                 "vcpus = 2\n"
                                 "boot_timeout_ms = 1500\n"
                                 "job_linger_seconds = 0\n"
                                 "   ; trailing comment without newline");
        ASSERT_OK(sbx_config_load(&c, path, NULL));
        ASSERT_STREQ(c.kernel, "/k/bzImage");
        ASSERT_STREQ(c.initrd, "/k/initramfs.cpio");
        ASSERT_STREQ(c.rootfs, "/k/rootfs.erofs");
        ASSERT_STREQ(c.qemu, "/usr/bin/qemu-system-x86_64");
        ASSERT_STREQ(c.worker_path, "/w/sbx-vmworker");
        ASSERT_STREQ(c.worker_socket, "/run/sbx/vmworker.sock");
        ASSERT_STREQ(c.runtime_dir, "/r");
        ASSERT_STREQ(c.state_dir, "/s");
        ASSERT_STREQ(c.cgroup_parent, "");
        ASSERT_EQ(c.accel, SBX_ACCEL_KVM);
        ASSERT_EQ(c.max_vms, 3);
        ASSERT_EQ(c.queue_max, 5);
        ASSERT_EQ(c.queue_timeout_s, 7);
        ASSERT_EQ(c.max_vms_per_uid, 2);
        ASSERT_EQ(c.max_sessions_per_uid, 1);
        ASSERT_EQ(c.default_memory_mb, 512);
        ASSERT_EQ(c.vcpus, 2);
        ASSERT_EQ(c.boot_timeout_ms, 1500);
        ASSERT_EQ(c.job_linger_s, 0);
        sbx_config_done(&c);

        /* SBX_ACCEL overrides the file; empty means "not set". */
        ASSERT_OK(setenv("SBX_ACCEL", "tcg", 1));
        ASSERT_OK(sbx_config_load(&c, path, NULL));
        ASSERT_EQ(c.accel, SBX_ACCEL_TCG);
        ASSERT_EQ(c.vcpus, 2);
        sbx_config_done(&c);
        ASSERT_OK(setenv("SBX_ACCEL", "auto", 1));
        ASSERT_OK(sbx_config_load(&c, path, NULL));
        ASSERT_EQ(c.accel, SBX_ACCEL_AUTO);
        sbx_config_done(&c);
        ASSERT_OK(setenv("SBX_ACCEL", "", 1));
        ASSERT_OK(sbx_config_load(&c, path, NULL));
        ASSERT_EQ(c.accel, SBX_ACCEL_KVM);
        sbx_config_done(&c);
        ASSERT_OK(setenv("SBX_ACCEL", "hvf", 1));
        ASSERT_ERROR(sbx_config_load(&c, path, NULL), EINVAL);
        sbx_config_done(&c);
        /* ... also without any file. */
        ASSERT_OK(setenv("SBX_ACCEL", "tcg", 1));
        ASSERT_OK(sbx_config_load(&c, "/nonexistent/sbx.conf", NULL));
        ASSERT_EQ(c.accel, SBX_ACCEL_TCG);
        sbx_config_done(&c);
        unsetenv("SBX_ACCEL");

        /* $SBX_CONFIG is used when no path is given. */
        ASSERT_OK(setenv("SBX_CONFIG", path, 1));
        ASSERT_OK(sbx_config_load(&c, NULL, NULL));
        ASSERT_STREQ(c.kernel, "/k/bzImage");
        ASSERT_EQ(c.accel, SBX_ACCEL_KVM);
        sbx_config_done(&c);
        unsetenv("SBX_CONFIG");

        /* One bad line fails the whole load. */
        bad = write_temp_config("vcpus = 2\nvcpus = 65\n");
        ASSERT_ERROR(sbx_config_load(&c, bad, NULL), EINVAL);
        sbx_config_done(&c);
        ASSERT_OK(unlink(bad));
        free(bad);
        bad = write_temp_config("kernel = /k\nno_such_key = 1\n");
        {
                /* The error names the file and the line; the loader logs nothing itself. */
                _cleanup_(sbx_error_done) SbxError error = {};
                _cleanup_free_ char *want = NULL;
                ASSERT_ERROR(sbx_config_load(&c, bad, &error), EINVAL);
                ASSERT_EQ(error.error, -EINVAL);
                ASSERT_TRUE(asprintf(&want, "%s:2: invalid line: no_such_key = 1", bad) > 0);
                ASSERT_STREQ(error.message, want);
        }
        sbx_config_done(&c);
        ASSERT_OK(unlink(bad));

        /* A line longer than the loader's buffer must not be split into
         * two lines: here the tail of a comment would become "vcpus = 7". */
        _cleanup_free_ char *longline = malloc(8192);
        ASSERT_NOT_NULL(longline);
        memset(longline, '#', 4199);
        strcpy(longline + 4199, "vcpus = 7\n");
        free(bad);
        bad = write_temp_config(longline);
        ASSERT_ERROR(sbx_config_load(&c, bad, NULL), EINVAL);
        sbx_config_done(&c);
        ASSERT_OK(unlink(bad));
        /* ... while a long last line without a newline is read whole. */
        memset(longline, '#', 4199);
        longline[4199] = 0;
        free(bad);
        bad = write_temp_config(longline);
        ASSERT_OK(sbx_config_load(&c, bad, NULL));
        ASSERT_EQ(c.vcpus, 1);
        sbx_config_done(&c);
        ASSERT_OK(unlink(bad));

        ASSERT_OK(unlink(path));
}

static void test_budget_and_pool(void) {
        SbxConfig c = {};
        uint32_t sizes[_SBX_LANG_MAX];

        ASSERT_OK(sbx_config_parse_line(&c, "memory_overcommit = 1.5"));
        ASSERT_TRUE(c.memory_overcommit > 1.49 && c.memory_overcommit < 1.51);
        ASSERT_OK(sbx_config_parse_line(&c, "cpu_overcommit = 4"));
        ASSERT_TRUE(c.cpu_overcommit > 3.99 && c.cpu_overcommit < 4.01);
        ASSERT_OK(sbx_config_parse_line(&c, "memory_reserve_mb = 2048"));
        ASSERT_EQ(c.memory_reserve_mb, 2048);
        ASSERT_ERROR(sbx_config_parse_line(&c, "memory_overcommit = 0"), EINVAL);
        ASSERT_ERROR(sbx_config_parse_line(&c, "memory_overcommit = nan"), EINVAL);
        ASSERT_ERROR(sbx_config_parse_line(&c, "cpu_overcommit = 2x"), EINVAL);
        ASSERT_ERROR(sbx_config_parse_line(&c, "cpu_overcommit = 1000"), EINVAL);

        ASSERT_OK(sbx_config_parse_line(&c, "warm_pool_size = 2"));
        for (int i = 0; i < _SBX_LANG_MAX; i++)
                ASSERT_EQ(c.warm_pool_size[i], 2);
        ASSERT_OK(sbx_config_parse_line(&c, "warm_pool_size = python:3, raw:1"));
        ASSERT_EQ(c.warm_pool_size[SBX_LANG_PYTHON], 3);
        ASSERT_EQ(c.warm_pool_size[SBX_LANG_JAVASCRIPT], 0);
        ASSERT_EQ(c.warm_pool_size[SBX_LANG_RAW], 1);
        ASSERT_ERROR(sbx_config_parse_line(&c, "warm_pool_size = cobol:1"), EINVAL);
        ASSERT_ERROR(sbx_config_parse_line(&c, "warm_pool_size = python:65"), EINVAL);
        ASSERT_ERROR(sbx_config_parse_line(&c, "warm_pool_size = python"), EINVAL);
        ASSERT_ERROR(sbx_config_parse_pool_size("python:1,javascript:", sizes), EINVAL);

        ASSERT_OK(sbx_config_parse_line(&c, "qemu_uid_range = 100000-100999"));
        ASSERT_EQ(c.qemu_uid_first, 100000);
        ASSERT_EQ(c.qemu_uid_count, 1000);
        ASSERT_OK(sbx_config_parse_line(&c, "qemu_uid_range = none"));
        ASSERT_EQ(c.qemu_uid_count, 0);
        ASSERT_ERROR(sbx_config_parse_line(&c, "qemu_uid_range = 0-10"), EINVAL);        /* root and system uids */
        ASSERT_ERROR(sbx_config_parse_line(&c, "qemu_uid_range = 200000-100000"), EINVAL);
        ASSERT_ERROR(sbx_config_parse_line(&c, "qemu_uid_range = 100000-"), EINVAL);
        ASSERT_ERROR(sbx_config_parse_line(&c, "qemu_uid_range = 100000-100001x"), EINVAL);
        ASSERT_ERROR(sbx_config_parse_line(&c, "qemu_uid_range = 2147483000-2147483647"), EINVAL);
        /* A refused value leaves the previous one. */
        ASSERT_EQ(c.warm_pool_size[SBX_LANG_PYTHON], 3);
        sbx_config_done(&c);
}

int main(void) {
        TEST(test_budget_and_pool);
        TEST(test_string_keys);
        TEST(test_accel);
        TEST(test_number_keys);
        TEST(test_syntax);
        TEST(test_load);
        return 0;
}
