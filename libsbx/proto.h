/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Message types and TLV tags of the two sbx wire protocols. Both use the
 * framing in frame.h: a 12-byte header, then a payload of TLV items.
 *
 *   guest channel   host (sbx-vmworker) <-> guest agent, virtio-serial port
 *                   "org.sbx.agent.0". The host treats every byte as hostile.
 *   worker channel  sbx-broker <-> sbx-vmworker, the socket the worker gets
 *                   as fd 3.
 *
 * docs/protocols.md describes every message. Unknown tags are skipped, so
 * fields can be added without a version bump; removing or changing the
 * meaning of one needs SBX_PROTO_VERSION + 1. */

#include <stdint.h>

#define SBX_PROTO_VERSION 1
#define SBX_AGENT_PORT_NAME "org.sbx.agent.0"

/* ---- limits (bytes unless named otherwise) ---- */
#define SBX_CODE_MAX (1024u * 1024u)
#define SBX_STDOUT_MAX (1024u * 1024u)
#define SBX_STDERR_MAX (100u * 1024u)
#define SBX_ENV_COUNT_MAX 100u
#define SBX_ENV_NAME_MAX 256u
#define SBX_ENV_VALUE_MAX (32u * 1024u)
#define SBX_OUTPUT_CHUNK_MAX (32u * 1024u)
#define SBX_MESSAGE_MAX 4096u
/* Largest payload each side accepts from its peer. */
#define SBX_GUEST_FRAME_MAX (64u * 1024u)    /* host reading the guest */
#define SBX_HOST_FRAME_MAX (4u * 1024u * 1024u) /* guest reading the host, worker reading the broker */
#define SBX_WORKER_FRAME_MAX (128u * 1024u)  /* broker reading a worker */

#define SBX_TIMEOUT_MIN_S 1u
#define SBX_TIMEOUT_MAX_S 300u
#define SBX_TIMEOUT_DEFAULT_S 30u
#define SBX_MEMORY_MIN_MB 128u
#define SBX_MEMORY_DEFAULT_MB 256u

typedef enum SbxMsgType {
        /* guest -> host */
        SBX_G_HELLO = 1,  /* VERSION, UPTIME_MS: the agent is up and listening */
        SBX_G_OUTPUT = 2, /* STREAM, DATA (<= SBX_OUTPUT_CHUNK_MAX) */
        SBX_G_EXIT = 3,   /* EXIT_CODE, EXEC_MS, TIMED_OUT */
        SBX_G_ERROR = 4,  /* MESSAGE: the agent could not run the code */
        SBX_G_PONG = 5,   /* DATA echoed from PING */
        SBX_G_FILE_RESULT = 6, /* FILE_STATUS, SIZE, MESSAGE: ends a file write, read or list */
        SBX_G_FILE_DATA = 7,   /* DATA (<= SBX_OUTPUT_CHUNK_MAX): a chunk of a file being read */
        SBX_G_LIST_ENTRY = 8,  /* NAME, IS_DIR, SIZE */
        SBX_G_RESUMED = 9,     /* UPTIME_MS: RESUME applied (clock set, RNG reseeded) */

        /* host -> guest */
        SBX_H_EXEC = 64,   /* LANGUAGE, CODE, TIMEOUT_MS, ENV*, CLOCK_NS, SEED */
        SBX_H_PING = 65,   /* DATA */
        SBX_H_CANCEL = 66, /* kill the running code */
        SBX_H_FILE_WRITE = 67, /* PATH, MODE: then FILE_DATA frames, then FILE_END */
        SBX_H_FILE_DATA = 68,  /* DATA */
        SBX_H_FILE_END = 69,   /* the write is complete */
        SBX_H_FILE_READ = 70,  /* PATH */
        SBX_H_LIST = 71,       /* PATH */
        SBX_H_RESUME = 72,     /* CLOCK_NS, SEED: the VM was restored from a snapshot -> G_RESUMED */
        SBX_H_INTERRUPT = 73,  /* SIGINT to the running code's process group; SIGKILL 2 s later if it runs on */

        /* broker -> worker: one VM, many requests, one at a time; EOF closes it (docs/protocols.md) */
        SBX_B_SESSION_OPEN = 130, /* RUN_ID, LANGUAGE, MEMORY_MB, VCPUS, ACCEL, ENV*, WARM, SNAPSHOT
                                     -> W_SESSION_READY */
        SBX_B_EXEC = 131,         /* RUN_ID (exec id), CODE, TIMEOUT_MS, ENV* -> W_OUTPUT*, W_RESULT */
        SBX_B_FILE_WRITE = 132,   /* PATH, MODE + one fd to read the content from -> W_FILE_RESULT */
        SBX_B_FILE_READ = 133,    /* PATH + one fd to write the content into -> W_FILE_RESULT */
        SBX_B_LIST = 134,         /* PATH -> W_LIST_ENTRY*, W_FILE_RESULT */
        SBX_B_INTERRUPT = 136,    /* interrupt the running exec (Ctrl-C); ignored when none runs */

        /* worker -> broker */
        SBX_W_OUTPUT = 161, /* STREAM, DATA */
        SBX_W_RESULT = 162, /* EXIT_CODE, EXEC_MS, CPU_MS, MEM_PEAK_MB, CPU_THROTTLED, TIMED_OUT, STDOUT_TRUNC,
                               STDERR_TRUNC, ACCEL, CGROUP_MODE, STATE_RESET, MESSAGE (timeout reason) */
        SBX_W_ERROR = 163,  /* ERROR_KIND, MESSAGE: the VM is gone */
        SBX_W_SESSION_READY = 164, /* BOOT_MS, SETUP_MS, ACCEL, QEMU_PID, WARM, SNAPSHOT_TIER, RESTORE_MS,
                                      SNAPSHOT_SAVED, SNAPSHOT_NOTE, PORT_MAPPING* */
        SBX_W_FILE_RESULT = 165,   /* FILE_STATUS, SIZE, MESSAGE */
        SBX_W_LIST_ENTRY = 166,    /* NAME, IS_DIR, SIZE */
} SbxMsgType;

typedef enum SbxTag {
        SBX_T_VERSION = 1,       /* u32 */
        SBX_T_UPTIME_MS = 2,     /* u64 */
        SBX_T_STREAM = 3,        /* u8: SbxStream */
        SBX_T_DATA = 4,          /* bytes */
        SBX_T_EXIT_CODE = 5,     /* i32 */
        SBX_T_EXEC_MS = 6,       /* u64 */
        SBX_T_TIMED_OUT = 7,     /* u8 (0/1) */
        SBX_T_MESSAGE = 8,       /* string */
        SBX_T_LANGUAGE = 9,      /* string: python | javascript | raw */
        SBX_T_CODE = 10,         /* bytes */
        SBX_T_TIMEOUT_MS = 11,   /* u32 */
        SBX_T_ENV = 12,          /* string "KEY=VALUE", repeated */
        SBX_T_CLOCK_NS = 13,     /* u64, host CLOCK_REALTIME */
        SBX_T_SEED = 14,         /* bytes, fresh entropy for the guest RNG */
        SBX_T_MEMORY_MB = 20,    /* u32 */
        SBX_T_VCPUS = 21,        /* u32 */
        SBX_T_ACCEL = 22,        /* string: kvm | tcg */
        SBX_T_RUN_ID = 23,       /* u64 */
        SBX_T_BOOT_MS = 24,      /* u64 */
        SBX_T_SETUP_MS = 25,     /* u64 */
        SBX_T_CPU_MS = 26,       /* u64 */
        SBX_T_MEM_PEAK_MB = 27,  /* u64 */
        SBX_T_ERROR_KIND = 28,   /* u32: SbxErrorKind */
        SBX_T_STDOUT_TRUNC = 30, /* u8 */
        SBX_T_STDERR_TRUNC = 31, /* u8 */
        SBX_T_QEMU_PID = 32,     /* u32 */
        SBX_T_CPU_THROTTLED = 33, /* u64 */
        SBX_T_SESSION = 40,      /* u8: run EXEC in the persistent interpreter (sessions) */
        SBX_T_PATH = 41,         /* string, relative to the sandbox home */
        SBX_T_MODE = 42,         /* u32 file mode bits (0644 default) */
        SBX_T_SIZE = 43,         /* u64 */
        SBX_T_NAME = 44,         /* string */
        SBX_T_IS_DIR = 45,       /* u8 */
        SBX_T_FILE_STATUS = 46,  /* u32: SbxFileStatus */
        SBX_T_STATE_RESET = 47,  /* u8 in G_EXIT: the persistent interpreter was restarted */
        /* L1 memory snapshots (docs/snapshots.md) */
        SBX_T_WARM = 48,          /* u8: B_SESSION_OPEN: start the interpreter before READY; READY: it runs */
        SBX_T_SNAPSHOT = 49,      /* u8 in B_SESSION_OPEN: 1 = restore the L1 snapshot, or build it */
        SBX_T_SNAPSHOT_TIER = 50, /* string in W_SESSION_READY: "l1" (restored) or "cold" (booted) */
        SBX_T_RESTORE_MS = 51,    /* u64: QEMU spawn -> guest answered RESUME (tier l1) */
        SBX_T_SNAPSHOT_SAVED = 52, /* u8: this session built and saved the snapshot */
        SBX_T_SNAPSHOT_NOTE = 53, /* string: why the tier is cold (missing, dropped as corrupt, ...) */
        /* Network (docs/network.md), in B_SESSION_OPEN. Without NETWORK the VM has no NIC
         * (unless it exposes ports); a networked VM is never restored from a snapshot. */
        SBX_T_NETWORK = 54,        /* u8: 1 = outbound access through sbx-netd */
        SBX_T_ALLOWED_DOMAIN = 55, /* string, repeated: "example.com" or "*.example.com"; none = full access */
        SBX_T_EXPOSE = 56,         /* string, repeated: "INTERNAL:EXTERNAL/tcp|udp", EXTERNAL 0 = picked */
        /* In W_SESSION_READY: one per exposed port, as bound. */
        SBX_T_PORT_MAPPING = 57,   /* string: "tcp INTERNAL 127.0.0.1:EXTERNAL" */
        /* In W_RESULT: whether the VM's memory and pids limits were in place, and in which hierarchy. */
        SBX_T_CGROUP_MODE = 58,
        /* u8 in B_SESSION_OPEN: the VM serves one exec (a cold one-shot run): the guest runs it as a
         * fresh process, not in the persistent interpreter, whose start would only add to its time. */
        SBX_T_ONESHOT = 59,    /* string: "v2" | "v1" | "none" */
} SbxTag;

typedef enum SbxFileStatus {
        SBX_FILE_OK = 0,
        SBX_FILE_INVALID_PATH = 1, /* absolute, "..", symlink escape, too long */
        SBX_FILE_NOT_FOUND = 2,
        SBX_FILE_IO_ERROR = 3,     /* includes ENOSPC; MESSAGE says which */
        SBX_FILE_TOO_LARGE = 4,
} SbxFileStatus;

#define SBX_PATH_MAX 4096u
#define SBX_ALLOWED_DOMAINS_MAX 256u
#define SBX_DOMAIN_MAX 253u
#define SBX_EXPOSE_MAX 10u
#define SBX_PATH_COMPONENT_MAX 255u
#define SBX_FILE_MAX (500ull * 1024u * 1024u)

typedef enum SbxStream {
        SBX_STREAM_STDOUT = 1,
        SBX_STREAM_STDERR = 2,
} SbxStream;

typedef enum SbxErrorKind {
        SBX_ERR_TRANSIENT = 1,    /* the code never ran; safe to retry */
        SBX_ERR_BOOT_TIMEOUT = 2, /* the guest did not come up, twice */
        SBX_ERR_INTERNAL = 3,
        SBX_ERR_INVALID = 4,      /* the worker refused the request */
        SBX_ERR_NETWORK = 5,      /* sbx-netd is not running or refused the VM's policy: fail closed */
} SbxErrorKind;

typedef enum SbxLanguage {
        SBX_LANG_INVALID = -1,
        SBX_LANG_PYTHON = 0,
        SBX_LANG_JAVASCRIPT = 1,
        SBX_LANG_RAW = 2,
        _SBX_LANG_MAX,
} SbxLanguage;
