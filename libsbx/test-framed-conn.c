/* SPDX-License-Identifier: Apache-2.0 */
/* The non-blocking framed connection: frames and fds both ways, the bounded queue, the stall
 * deadline (and that progress postpones it), a handler that frees its connection, and a move. */
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fdio.h"
#include "framed-conn.h"
#include "macro.h"
#include "proto.h"
#include "tests.h"

typedef struct Peer {
        FramedConn conn;
        unsigned n_frames;
        size_t last_len;
        int close_error;
        bool closed;
        int got_fd;
        bool free_on_frame;
} Peer;

static int on_frame(FramedConn *c, uint8_t type, const uint8_t *payload, size_t len, void *userdata) {
        Peer *p = userdata;
        (void) type;
        (void) payload;

        p->n_frames++;
        p->last_len = len;
        int fd = framed_conn_take_fd(c);
        if (fd >= 0) {
                safe_close(p->got_fd);
                p->got_fd = fd;
        }
        if (p->free_on_frame) {
                framed_conn_close(&p->conn);
                free(p);
        }
        return 0;
}

static void on_close(FramedConn *c, int error, void *userdata) {
        Peer *p = userdata;
        (void) c;
        p->closed = true;
        p->close_error = error;
}

static Peer *peer_new(sd_event *e, int fd, size_t out_max) {
        Peer *p = calloc(1, sizeof *p);
        ASSERT_NOT_NULL(p);
        p->got_fd = -EBADF;
        ASSERT_OK(framed_conn_open(&p->conn, e, "test peer", fd, SBX_HOST_FRAME_MAX, out_max, on_frame, on_close, p));
        framed_conn_set_recv_fds(&p->conn, true);
        return p;
}

static void peer_free(Peer *p) {
        framed_conn_close(&p->conn);
        safe_close(p->got_fd);
        free(p);
}

static void msg_of_size(SbxMsg *m, size_t n) {
        uint8_t *buf = calloc(1, n);
        ASSERT_NOT_NULL(buf);
        sbx_msg_begin(m, 1);
        sbx_msg_put(m, 1, buf, n);
        free(buf);
}

/* Runs the loop until cond holds or timeout_usec passed. */
#define RUN_UNTIL(e, cond, timeout_usec)                                                                               \
        do {                                                                                                           \
                uint64_t _deadline_ = now_usec(CLOCK_MONOTONIC) + (timeout_usec);                                      \
                while (!(cond) && now_usec(CLOCK_MONOTONIC) < _deadline_)                                              \
                        ASSERT_OK(sd_event_run((e), 10000));                                                           \
        } while (0)

/* An event loop and a connected socket pair for one test. */
static sd_event *new_pair(int sv[2]) {
        sd_event *e = NULL;
        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
        return e;
}

static void test_frames_and_fds(void) {
        int sv[2], pipefd[2];
        struct stat a, b;
        SbxMsg m;

        _cleanup_(sd_event_unrefp) sd_event *e = new_pair(sv);
        ASSERT_OK(pipe2(pipefd, O_CLOEXEC));
        Peer *x = peer_new(e, sv[0], 8u << 20), *y = peer_new(e, sv[1], 8u << 20);

        /* A large plain frame, then one with an fd, then a plain one: the fd rides on its own frame. */
        msg_of_size(&m, 1u << 20);
        ASSERT_OK(framed_conn_send(&x->conn, &m));
        sbx_msg_done(&m);
        msg_of_size(&m, 10);
        ASSERT_OK(framed_conn_send_with_fds(&x->conn, &m, &pipefd[0], 1));
        sbx_msg_done(&m);
        msg_of_size(&m, 20);
        ASSERT_OK(framed_conn_send(&x->conn, &m));
        sbx_msg_done(&m);
        /* The sender keeps its own fd. */
        ASSERT_OK(fcntl(pipefd[0], F_GETFD));

        RUN_UNTIL(e, y->n_frames >= 3, 5000000u);
        ASSERT_EQ(y->n_frames, 3u);
        ASSERT_EQ(y->last_len, 20u + SBX_TLV_HEADER_SIZE);
        ASSERT_TRUE(y->got_fd >= 0);
        ASSERT_OK(fstat(y->got_fd, &a));
        ASSERT_OK(fstat(pipefd[0], &b));
        ASSERT_EQ(a.st_ino, b.st_ino);
        ASSERT_EQ(framed_conn_queued(&x->conn), 0u);
        ASSERT_FALSE(x->closed);

        /* EOF reaches the other side as on_close(0). */
        peer_free(x);
        RUN_UNTIL(e, y->closed, 2000000u);
        ASSERT_TRUE(y->closed);
        ASSERT_EQ(y->close_error, 0);
        peer_free(y);
        close(pipefd[0]);
        close(pipefd[1]);
}

static void test_bounded_queue(void) {
        int sv[2];
        SbxMsg m;

        _cleanup_(sd_event_unrefp) sd_event *e = new_pair(sv);
        Peer *x = peer_new(e, sv[0], 4096);
        /* The socket takes the first frames; the queue then holds at most 4 KiB. */
        int r = 0;
        for (int i = 0; i < 10000 && r == 0; i++) {
                msg_of_size(&m, 1000);
                r = framed_conn_send(&x->conn, &m);
                sbx_msg_done(&m);
        }
        ASSERT_ERROR(r, ENOBUFS);
        ASSERT_LE(framed_conn_queued(&x->conn), 4096u);
        ASSERT_FALSE(x->closed);
        peer_free(x);
        close(sv[1]);
}

static void test_stall_deadline(void) {
        int sv[2];
        SbxMsg m;

        _cleanup_(sd_event_unrefp) sd_event *e = new_pair(sv);
        Peer *x = peer_new(e, sv[0], 8u << 20);
        ASSERT_OK(framed_conn_set_stall_timeout(&x->conn, 200000u));

        /* Nobody reads sv[1]: a megabyte cannot all go out, and the send itself never blocks. */
        uint64_t t0 = now_usec(CLOCK_MONOTONIC);
        msg_of_size(&m, 1u << 20);
        ASSERT_OK(framed_conn_send(&x->conn, &m));
        sbx_msg_done(&m);
        ASSERT_LE(now_usec(CLOCK_MONOTONIC) - t0, 100000u);
        ASSERT_TRUE(framed_conn_queued(&x->conn) > 0);

        RUN_UNTIL(e, x->closed, 3000000u);
        ASSERT_TRUE(x->closed);
        ASSERT_EQ(x->close_error, -ETIMEDOUT);
        ASSERT_TRUE(now_usec(CLOCK_MONOTONIC) - t0 >= 200000u);
        ASSERT_ERROR(framed_conn_send(&x->conn, (msg_of_size(&m, 1), &m)), EPIPE);
        sbx_msg_done(&m);
        peer_free(x);
        close(sv[1]);
}

static int on_slow_read(sd_event_source *s, uint64_t usec, void *userdata) {
        int fd = *(int *) userdata;
        static uint8_t buf[64 * 1024];
        (void) usec;
        (void) read(fd, buf, sizeof buf);
        return sd_event_source_set_time_relative(s, 50000u) < 0 ? 0 : sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

static void test_progress_postpones_stall(void) {
        _cleanup_(sd_event_source_unrefp) sd_event_source *reader = NULL;
        int sv[2];
        SbxMsg m;

        _cleanup_(sd_event_unrefp) sd_event *e = new_pair(sv);
        ASSERT_OK(fd_set_nonblock(sv[1], 1));
        Peer *x = peer_new(e, sv[0], 8u << 20);
        ASSERT_OK(framed_conn_set_stall_timeout(&x->conn, 300000u));
        /* A slow reader: 64 KiB every 50 ms, so 2 MiB take about 1.6 s, far past the deadline, but
         * every read is progress. */
        ASSERT_OK(sd_event_add_time_relative(e, &reader, CLOCK_MONOTONIC, 50000u, 0, on_slow_read, &sv[1]));
        msg_of_size(&m, 2u << 20);
        ASSERT_OK(framed_conn_send(&x->conn, &m));
        sbx_msg_done(&m);
        RUN_UNTIL(e, framed_conn_queued(&x->conn) == 0 || x->closed, 10000000u);
        ASSERT_FALSE(x->closed);
        ASSERT_EQ(framed_conn_queued(&x->conn), 0u);
        peer_free(x);
        close(sv[1]);
}

static void test_free_inside_handler(void) {
        int sv[2];
        SbxMsg m;

        _cleanup_(sd_event_unrefp) sd_event *e = new_pair(sv);
        Peer *x = peer_new(e, sv[0], 1u << 20), *y = peer_new(e, sv[1], 1u << 20);
        y->free_on_frame = true;
        /* Several frames arrive in one read; the first handler frees y (ASan would see a later use). */
        for (int i = 0; i < 5; i++) {
                msg_of_size(&m, 100);
                ASSERT_OK(framed_conn_send(&x->conn, &m));
                sbx_msg_done(&m);
        }
        RUN_UNTIL(e, x->closed, 2000000u);
        ASSERT_TRUE(x->closed);
        ASSERT_EQ(x->close_error, 0);
        peer_free(x);
}

static void test_move(void) {
        int sv[2];
        SbxMsg m;

        _cleanup_(sd_event_unrefp) sd_event *e = new_pair(sv);
        Peer *x = peer_new(e, sv[0], 1u << 20), *y = peer_new(e, sv[1], 1u << 20);
        ASSERT_OK(framed_conn_set_stall_timeout(&y->conn, 1000000u));
        Peer *z = calloc(1, sizeof *z);
        ASSERT_NOT_NULL(z);
        z->got_fd = -EBADF;
        framed_conn_move(&z->conn, &y->conn, z);
        ASSERT_FALSE(framed_conn_is_open(&y->conn));
        peer_free(y);

        msg_of_size(&m, 100);
        ASSERT_OK(framed_conn_send(&x->conn, &m));
        sbx_msg_done(&m);
        RUN_UNTIL(e, z->n_frames > 0, 2000000u);
        ASSERT_EQ(z->n_frames, 1u);
        peer_free(z);
        peer_free(x);
}

int main(void) {
        TEST(test_frames_and_fds);
        TEST(test_bounded_queue);
        TEST(test_stall_deadline);
        TEST(test_progress_postpones_stall);
        TEST(test_free_inside_handler);
        TEST(test_move);
        return 0;
}
