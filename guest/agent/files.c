/* SPDX-License-Identifier: Apache-2.0 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "files.h"
#include "frame.h"
#include "init.h"
#include "log.h"
#include "macro.h"
#include "path-check.h"

_Static_assert(PATH_CHECK_MAX == SBX_PATH_MAX, "path limits differ");
_Static_assert(PATH_CHECK_COMPONENT_MAX == SBX_PATH_COMPONENT_MAX, "component limits differ");

#define RESOLVE_FLAGS (RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)

static uint8_t file_buf[SBX_OUTPUT_CHUNK_MAX];

static int openat2_beneath(int dir_fd, const char *path, uint64_t flags, uint64_t mode) {
        struct open_how how = { .flags = flags, .mode = mode, .resolve = RESOLVE_FLAGS };
        long fd;

        do
                fd = syscall(SYS_openat2, dir_fd, path, &how, sizeof how);
        while (fd < 0 && errno == EINTR);
        return fd < 0 ? -errno : (int) fd;
}

/* An O_PATH fd of the home, opened once by root. */
static int home_fd(void) {
        static int fd = -EBADF;

        if (fd < 0) {
                fd = open(SBX_GUEST_HOME, O_PATH | O_DIRECTORY | O_CLOEXEC);
                if (fd < 0)
                        return log_error_errno(errno, "Failed to open %s: %m", SBX_GUEST_HOME);
        }
        return fd;
}

/* File system accesses between these two are checked as uid/gid 1000; the
 * fsuid change also drops CAP_DAC_OVERRIDE and friends from the effective set. */
static void as_user(void) {
        (void) setfsgid(SBX_GUEST_GID);
        (void) setfsuid(SBX_GUEST_UID);
}

static void as_root(void) {
        (void) setfsuid(0);
        (void) setfsgid(0);
}

/* The directory parent (a checked path relative to the home, "" for the home), created like
 * `mkdir -p` where components are missing: 0755, by the user (call as_user() first). Each prefix
 * is resolved beneath the home, as every other access is. An O_PATH fd or -errno. */
static int open_parent_dirs(const char *parent) {
        char prefix[SBX_PATH_MAX + 1];
        size_t len = strlen(parent);
        int fd;

        fd = openat2_beneath(home_fd(), *parent ? parent : ".", O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
        if (fd != -ENOENT || len >= sizeof prefix)
                return fd;
        for (size_t i = 1; i <= len; i++) {
                if (parent[i] != '/' && parent[i] != 0)
                        continue;
                memcpy(prefix, parent, i);
                prefix[i] = 0;
                fd = openat2_beneath(home_fd(), prefix, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
                if (fd >= 0) {
                        safe_close(fd);
                        continue;
                }
                if (fd != -ENOENT)
                        return fd;
                /* Missing: create its last component in the (existing) directory above it. */
                char *slash = strrchr(prefix, '/');
                if (slash)
                        *slash = 0;
                int dir_fd = openat2_beneath(home_fd(), slash ? prefix : ".", O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
                if (dir_fd < 0)
                        return dir_fd;
                int r = mkdirat(dir_fd, slash ? slash + 1 : prefix, 0755) < 0 && errno != EEXIST ? -errno : 0;
                safe_close(dir_fd);
                if (r < 0)
                        return r;
        }
        return openat2_beneath(home_fd(), parent, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
}

static int send_result(int port_fd, SbxFileStatus status, uint64_t size, const char *message) {
        SbxMsg m;
        int r;

        sbx_msg_begin(&m, SBX_G_FILE_RESULT);
        sbx_msg_put_u32(&m, SBX_T_FILE_STATUS, (uint32_t) status);
        sbx_msg_put_u64(&m, SBX_T_SIZE, size);
        if (message && *message)
                sbx_msg_put(&m, SBX_T_MESSAGE, message, strnlen(message, SBX_MESSAGE_MAX));
        r = sbx_msg_send(&m, port_fd);
        sbx_msg_done(&m);
        if (r < 0)
                return log_error_errno(r, "Failed to write to the host: %m");
        return 0;
}

/* Maps an errno of path resolution/opening to a status and a message (static storage). */
static SbxFileStatus errno_status(int error, const char **ret_message) {
        switch (error) {
        case EXDEV:
        case ELOOP:
                *ret_message = "path escapes the home directory or is a symlink that cannot be followed";
                return SBX_FILE_INVALID_PATH;
        case ENAMETOOLONG:
                *ret_message = "path too long";
                return SBX_FILE_INVALID_PATH;
        case EISDIR:
                *ret_message = "is a directory";
                return SBX_FILE_INVALID_PATH;
        case ENXIO: /* a FIFO without reader, a socket */
        case ENODEV:
                *ret_message = "not a regular file";
                return SBX_FILE_INVALID_PATH;
        case ENOENT:
                *ret_message = "No such file or directory";
                return SBX_FILE_NOT_FOUND;
        case ENOTDIR:
                *ret_message = "a path component is not a directory";
                return SBX_FILE_NOT_FOUND;
        case EFBIG:
                *ret_message = "file too large";
                return SBX_FILE_TOO_LARGE;
        default:
                *ret_message = strerror(error);
                return SBX_FILE_IO_ERROR;
        }
}

_Static_assert(SBX_PATH_MAX == 4096u, "the message below names the limit");

/* Finds PATH and checks it lexically. Returns 0, or a status with *ret_reason set (static storage). */
static SbxFileStatus parse_path(const uint8_t *payload, size_t len, char out[static SBX_PATH_MAX + 1], uint32_t *ret_mode,
                                const char **ret_reason) {
        SbxTlvIter it;
        uint16_t tag;
        const uint8_t *v, *path = NULL;
        uint32_t n, path_len = 0;
        int r;

        sbx_tlv_iter_init(&it, payload, len);
        while ((r = sbx_tlv_next(&it, &tag, &v, &n)) > 0) {
                if (tag == SBX_T_PATH) {
                        path = v;
                        path_len = n;
                } else if (tag == SBX_T_MODE && ret_mode) {
                        if (sbx_tlv_u32(v, n, ret_mode) < 0) {
                                *ret_reason = "malformed mode";
                                return SBX_FILE_INVALID_PATH;
                        }
                }
        }
        if (r < 0 || !path) {
                *ret_reason = r < 0 ? "malformed request" : "missing path";
                return SBX_FILE_INVALID_PATH;
        }
        if (path_len > SBX_PATH_MAX) {
                *ret_reason = "path longer than 4096 bytes";
                return SBX_FILE_INVALID_PATH;
        }
        r = path_check((const char *) path, path_len, out, SBX_PATH_MAX + 1);
        if (r == -ENAMETOOLONG) {
                *ret_reason = "path or path component too long";
                return SBX_FILE_INVALID_PATH;
        }
        if (r < 0) {
                *ret_reason = "path must be relative to the home directory, without \"..\"";
                return SBX_FILE_INVALID_PATH;
        }
        return SBX_FILE_OK;
}

void file_write_init(FileWrite *w) {
        *w = (FileWrite) { .fd = -EBADF, .dir_fd = -EBADF };
}

/* message: static storage (a literal or strerror()). */
static void write_fail(FileWrite *w, SbxFileStatus status, const char *message) {
        if (w->status == SBX_FILE_OK) {
                w->status = status;
                w->message = message;
        }
        if (w->fd >= 0) {
                w->fd = safe_close(w->fd);
                /* No partial file is left behind. */
                as_user();
                if (unlinkat(w->dir_fd, w->name, 0) < 0 && errno != ENOENT)
                        log_warning_errno(errno, "Failed to remove the partial file %s: %m", w->name);
                as_root();
        }
        w->dir_fd = safe_close(w->dir_fd);
}

int files_write_begin(FileWrite *w, int port_fd, const uint8_t *payload, size_t len, bool busy) {
        char path[SBX_PATH_MAX + 1];
        const char *parent, *name, *msg;
        uint32_t mode = 0644;
        SbxFileStatus st;
        struct stat sb;
        int fd;

        (void) port_fd;
        if (w->active) {
                log_warning("FILE_WRITE while another write is open; dropping that one.");
                write_fail(w, SBX_FILE_IO_ERROR, "aborted");
        }
        file_write_init(w);
        w->active = true;

        if (busy) {
                write_fail(w, SBX_FILE_IO_ERROR, "busy");
                return 0;
        }
        st = parse_path(payload, len, path, &mode, &msg);
        if (st != SBX_FILE_OK) {
                write_fail(w, st, msg);
                return 0;
        }
        if (!*path) {
                write_fail(w, SBX_FILE_INVALID_PATH, "path names the home directory, not a file");
                return 0;
        }
        name = path_split_last(path, &parent);
        snprintf(w->name, sizeof w->name, "%s", name);

        if (home_fd() < 0) {
                write_fail(w, SBX_FILE_IO_ERROR, "home directory unavailable");
                return 0;
        }
        as_user();
        w->dir_fd = open_parent_dirs(parent);
        if (w->dir_fd < 0) {
                as_root();
                st = errno_status(-w->dir_fd, &msg);
                write_fail(w, st, msg);
                return 0;
        }
        /* O_NOFOLLOW: the last component is created or truncated, never
         * followed; O_NONBLOCK: a FIFO must not block the agent. */
        fd = openat2_beneath(w->dir_fd, w->name,
                             O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY, 0600);
        if (fd < 0) {
                as_root();
                st = errno_status(-fd, &msg);
                write_fail(w, st, msg);
                return 0;
        }
        if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
                as_root();
                safe_close(fd);
                write_fail(w, SBX_FILE_INVALID_PATH, "not a regular file");
                return 0;
        }
        w->fd = fd;
        if (fchmod(fd, mode & 0777) < 0) {
                int e = errno;
                as_root();
                write_fail(w, SBX_FILE_IO_ERROR, strerror(e));
                return 0;
        }
        as_root();
        (void) fcntl(fd, F_SETFL, O_WRONLY); /* clear O_NONBLOCK: a regular file */
        return 0;
}

int files_write_data(FileWrite *w, int port_fd, const uint8_t *payload, size_t len) {
        SbxTlvIter it;
        uint16_t tag;
        const uint8_t *v;
        uint32_t n;

        (void) port_fd;
        if (!w->active || w->fd < 0)
                return 0; /* nothing open, or already failed: the data is dropped */

        sbx_tlv_iter_init(&it, payload, len);
        while (sbx_tlv_next(&it, &tag, &v, &n) > 0) {
                if (tag != SBX_T_DATA)
                        continue;
                if (n > SBX_FILE_MAX - w->size) {
                        _Static_assert(SBX_FILE_MAX == 524288000ull, "the message names the limit");
                        write_fail(w, SBX_FILE_TOO_LARGE, "file larger than 524288000 bytes");
                        return 0;
                }
                for (size_t off = 0; off < n;) {
                        ssize_t k = write(w->fd, v + off, n - off);
                        if (k < 0) {
                                if (errno == EINTR)
                                        continue;
                                write_fail(w, errno == EFBIG ? SBX_FILE_TOO_LARGE : SBX_FILE_IO_ERROR,
                                           strerror(errno));
                                return 0;
                        }
                        off += (size_t) k;
                }
                w->size += n;
        }
        return 0;
}

int files_write_end(FileWrite *w, int port_fd) {
        SbxFileStatus st;
        const char *msg;
        uint64_t size;

        if (!w->active)
                return send_result(port_fd, SBX_FILE_IO_ERROR, 0, "no file write in progress");
        if (w->fd >= 0) {
                int fd = TAKE_FD(w->fd);
                /* tmpfs reports errors at write(); close() is a formality. */
                if (close(fd) < 0 && errno != EINTR) {
                        int e = errno;
                        w->fd = -EBADF;
                        write_fail(w, SBX_FILE_IO_ERROR, strerror(e));
                        as_user();
                        (void) unlinkat(w->dir_fd, w->name, 0);
                        as_root();
                }
        }
        w->dir_fd = safe_close(w->dir_fd);
        st = w->status;
        size = st == SBX_FILE_OK ? w->size : 0;
        msg = w->message;
        file_write_init(w);
        return send_result(port_fd, st, size, st == SBX_FILE_OK ? NULL : msg);
}

int files_read(int port_fd, const uint8_t *payload, size_t len, bool busy) {
        char path[SBX_PATH_MAX + 1];
        const char *msg;
        _cleanup_close_ int fd = -EBADF;
        SbxFileStatus st;
        struct stat sb;
        uint64_t sent = 0;
        int r;

        if (busy)
                return send_result(port_fd, SBX_FILE_IO_ERROR, 0, "busy");
        st = parse_path(payload, len, path, NULL, &msg);
        if (st != SBX_FILE_OK)
                return send_result(port_fd, st, 0, msg);
        if (home_fd() < 0)
                return send_result(port_fd, SBX_FILE_IO_ERROR, 0, "home directory unavailable");

        as_user();
        fd = openat2_beneath(home_fd(), *path ? path : ".", O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY, 0);
        as_root();
        if (fd < 0) {
                st = errno_status(-fd, &msg);
                return send_result(port_fd, st, 0, msg);
        }
        if (fstat(fd, &sb) < 0)
                return send_result(port_fd, SBX_FILE_IO_ERROR, 0, strerror(errno));
        if (S_ISDIR(sb.st_mode))
                return send_result(port_fd, SBX_FILE_INVALID_PATH, 0, "is a directory");
        if (!S_ISREG(sb.st_mode))
                return send_result(port_fd, SBX_FILE_INVALID_PATH, 0, "not a regular file");
        if ((uint64_t) sb.st_size > SBX_FILE_MAX)
                return send_result(port_fd, SBX_FILE_TOO_LARGE, 0, "file larger than 500 MiB");

        /* At most the size seen at open: a file that keeps growing ends there. */
        while (sent < (uint64_t) sb.st_size) {
                size_t want = (size_t) MIN((uint64_t) sizeof file_buf, (uint64_t) sb.st_size - sent);
                ssize_t k = read(fd, file_buf, want);
                SbxMsg m;

                if (k < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        return send_result(port_fd, SBX_FILE_IO_ERROR, sent, strerror(errno));
                }
                if (k == 0)
                        break; /* truncated meanwhile */
                sbx_msg_begin(&m, SBX_G_FILE_DATA);
                sbx_msg_put(&m, SBX_T_DATA, file_buf, (size_t) k);
                r = sbx_msg_send(&m, port_fd);
                sbx_msg_done(&m);
                if (r < 0)
                        return log_error_errno(r, "Failed to write to the host: %m");
                sent += (uint64_t) k;
        }
        return send_result(port_fd, SBX_FILE_OK, sent, NULL);
}

int files_list(int port_fd, const uint8_t *payload, size_t len, bool busy) {
        char path[SBX_PATH_MAX + 1];
        const char *msg;
        _cleanup_closedir_ DIR *d = NULL;
        SbxFileStatus st;
        struct dirent *de;
        uint64_t count = 0;
        int fd, r = 0;

        if (busy)
                return send_result(port_fd, SBX_FILE_IO_ERROR, 0, "busy");
        st = parse_path(payload, len, path, NULL, &msg);
        if (st != SBX_FILE_OK)
                return send_result(port_fd, st, 0, msg);
        if (home_fd() < 0)
                return send_result(port_fd, SBX_FILE_IO_ERROR, 0, "home directory unavailable");

        as_user();
        fd = openat2_beneath(home_fd(), *path ? path : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
        if (fd < 0) {
                as_root();
                if (fd == -ENOTDIR) {
                        /* The last component exists but is no directory? */
                        return send_result(port_fd, SBX_FILE_INVALID_PATH, 0, "not a directory");
                }
                st = errno_status(-fd, &msg);
                return send_result(port_fd, st, 0, msg);
        }
        d = fdopendir(fd);
        if (!d) {
                int e = errno;
                as_root();
                safe_close(fd);
                return send_result(port_fd, SBX_FILE_IO_ERROR, 0, strerror(e));
        }
        int rd_errno = 0;
        for (;;) {
                struct stat sb;
                SbxMsg m;

                errno = 0;
                de = readdir(d);
                if (!de) {
                        rd_errno = errno;
                        break;
                }
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
                        continue; /* removed meanwhile */
                sbx_msg_begin(&m, SBX_G_LIST_ENTRY);
                sbx_msg_put_str(&m, SBX_T_NAME, de->d_name);
                sbx_msg_put_u8(&m, SBX_T_IS_DIR, S_ISDIR(sb.st_mode));
                sbx_msg_put_u64(&m, SBX_T_SIZE, (uint64_t) sb.st_size);
                r = sbx_msg_send(&m, port_fd);
                sbx_msg_done(&m);
                if (r < 0)
                        break;
                count++;
        }
        as_root();
        if (r < 0)
                return log_error_errno(r, "Failed to write to the host: %m");
        if (rd_errno != 0)
                return send_result(port_fd, SBX_FILE_IO_ERROR, count, strerror(rd_errno));
        return send_result(port_fd, SBX_FILE_OK, count, NULL);
}
