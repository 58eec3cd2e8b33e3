/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* One file request: B_FILE_WRITE streams the caller's fd into the guest (H_FILE_WRITE, H_FILE_DATA*,
 * H_FILE_END), B_FILE_READ streams G_FILE_DATA into the caller's fd, B_LIST forwards G_LIST_ENTRY;
 * each ends with G_FILE_RESULT -> W_FILE_RESULT. Never more than one chunk of a file is in memory:
 * the side that is behind (guest, caller or broker) is waited for, and a transfer that makes no
 * progress for TRANSFER_STALL_USEC is given up (the caller's fault: an IO_ERROR result; the guest's
 * or the broker's: the VM fails). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "caller-fd.h"
#include "sbx-error.h"

#define TRANSFER_STALL_USEC (60u * 1000000u)
/* Entries of one listing forwarded to the broker at most. */
#define TRANSFER_LIST_MAX 10000u

typedef struct Worker Worker;

typedef enum TransferOp {
        TRANSFER_WRITE,
        TRANSFER_READ,
        TRANSFER_LIST,
} TransferOp;

/* What the transfer waits for: decides who is blamed when it stalls. */
typedef enum TransferWait {
        TRANSFER_WAIT_GUEST,
        TRANSFER_WAIT_CALLER,
        TRANSFER_WAIT_BROKER,
} TransferWait;

typedef struct Transfer {
        TransferOp op;
        TransferWait wait;
        CallerFd caller;
        SbxError caller_error; /* set: the caller stopped sending or reading (the first failure) */
        bool end_sent;         /* write: SBX_H_FILE_END is out */
        uint8_t *buf;          /* one chunk, SBX_OUTPUT_CHUNK_MAX bytes */
        size_t buf_len, buf_off;
        uint64_t bytes;    /* file bytes taken from the caller (write) or written to it (read) */
        uint64_t received; /* read: file bytes from the guest; list: entries from the guest */
        unsigned n_entries, n_skipped;
        bool list_truncated;
} Transfer;

int transfer_init(Transfer *t);
void transfer_done(Transfer *t);

/* B_FILE_WRITE, B_FILE_READ or B_LIST while IDLE (the fd comes with the frame). */
void transfer_start(Worker *w, uint8_t type, const uint8_t *p, size_t n);
/* Guest frames while TRANSFER. Returns as FramedConnFrameHandler. */
int transfer_on_guest_frame(Worker *w, uint8_t type, const uint8_t *p, size_t n);
/* The queue towards the broker or the guest emptied (flow control). */
void transfer_on_broker_drain(Worker *w);
void transfer_on_guest_drain(Worker *w);
