/* SPDX-License-Identifier: Apache-2.0 */
/* Unit test of an Exec with sd-event alone: output kept under the caps, the timeout note, and
 * completion only once the caller's fd has taken all output. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "exec.h"
#include "tests.h"

typedef struct Seen {
        unsigned completed;
        size_t stdout_bytes, stderr_bytes;
} Seen;

static void on_output(Exec *e, SbxStream stream, const void *data, size_t n, void *userdata) {
        Seen *seen = userdata;
        (void) e;
        (void) data;
        if (stream == SBX_STREAM_STDOUT)
                seen->stdout_bytes += n;
        else
                seen->stderr_bytes += n;
}

static void on_complete(Exec *e, void *userdata) {
        Seen *seen = userdata;
        ASSERT_TRUE(exec_is_complete(e));
        seen->completed++;
}

static const ExecOps ops = {
        .on_output = on_output,
        .on_complete = on_complete,
};

static void test_kept_output(void) {
        static char big[SBX_STDOUT_MAX + 100];
        sd_event *event = NULL;
        Seen seen = {};
        Exec e;

        ASSERT_OK(sd_event_default(&event));
        exec_init(&e, event, "test", &ops, &seen);
        memset(big, 'x', sizeof big);
        ASSERT_OK(exec_output(&e, SBX_STREAM_STDOUT, "hello ", 6));
        ASSERT_OK(exec_output(&e, SBX_STREAM_STDOUT, big, sizeof big));
        /* Cut at the cap, and only what was kept is signalled. */
        ASSERT_EQ(e.out.len, (size_t) SBX_STDOUT_MAX);
        ASSERT_TRUE(e.out.truncated);
        ASSERT_EQ(seen.stdout_bytes, (size_t) SBX_STDOUT_MAX);

        e.result.exit_code = -1;
        e.result.timed_out = true;
        exec_result_in(&e);
        /* Nothing waits for a caller's fd: complete at once, with the note in stderr. */
        ASSERT_EQ(seen.completed, 1u);
        ASSERT_TRUE(e.err.len > 0 && strstr(e.err.data, "sbx: execution timed out.") != NULL);
        ASSERT_EQ(seen.stderr_bytes, e.err.len);
        /* A second end is ignored. */
        exec_abort(&e);
        ASSERT_EQ(seen.completed, 1u);

        exec_done(&e);
        ASSERT_FALSE(exec_is_complete(&e));
        ASSERT_EQ(e.out.len, (size_t) 0);
        sd_event_unref(event);
}

static void test_waits_for_the_caller_fd(void) {
        static char chunk[32 * 1024];
        sd_event *event = NULL;
        Seen seen = {};
        int pipefd[2];
        Exec e;

        ASSERT_OK(sd_event_default(&event));
        ASSERT_OK(pipe2(pipefd, O_CLOEXEC | O_NONBLOCK));
        exec_init(&e, event, "test", &ops, &seen);
        ASSERT_OK(exec_open_sinks(&e, pipefd[1], -1));
        /* More than the pipe holds: the rest waits in the sink. */
        memset(chunk, 'y', sizeof chunk);
        for (int i = 0; i < 8; i++)
                ASSERT_OK(exec_output(&e, SBX_STREAM_STDOUT, chunk, sizeof chunk));
        ASSERT_OK(exec_output(&e, SBX_STREAM_STDERR, "kept", 4));
        exec_result_in(&e);
        ASSERT_EQ(seen.completed, 0u);

        size_t got = 0;
        for (int rounds = 0; rounds < 1000 && seen.completed == 0; rounds++) {
                char buf[16 * 1024];
                ssize_t k;
                while ((k = read(pipefd[0], buf, sizeof buf)) > 0)
                        got += (size_t) k;
                ASSERT_OK(sd_event_run(event, 10000));
        }
        while (true) {
                char buf[16 * 1024];
                ssize_t k = read(pipefd[0], buf, sizeof buf);
                if (k <= 0)
                        break;
                got += (size_t) k;
        }
        ASSERT_EQ(seen.completed, 1u);
        ASSERT_EQ(got, sizeof chunk * 8);
        /* Streamed output is not kept; the stream without an fd is. */
        ASSERT_EQ(e.out.len, (size_t) 0);
        ASSERT_EQ(e.err.len, (size_t) 4);
        exec_done(&e);

        /* A caller that goes away: its sink is dropped and an aborted Exec completes at once. */
        exec_init(&e, event, "test", &ops, &seen);
        ASSERT_OK(exec_open_sinks(&e, pipefd[1], -1));
        for (int i = 0; i < 8; i++)
                ASSERT_OK(exec_output(&e, SBX_STREAM_STDOUT, chunk, sizeof chunk));
        exec_abort(&e);
        ASSERT_EQ(seen.completed, 1u);
        exec_close_sinks(&e);
        ASSERT_EQ(seen.completed, 2u);
        exec_done(&e);

        close(pipefd[0]);
        close(pipefd[1]);
        sd_event_unref(event);
}

int main(void) {
        TEST(test_kept_output);
        TEST(test_waits_for_the_caller_fd);
        return 0;
}
