/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* File operations of session VMs: SBX_H_FILE_WRITE/DATA/END, SBX_H_FILE_READ
 * and SBX_H_LIST on paths relative to the sandbox home, done with the file
 * system credentials of uid 1000. See docs/guest.md, "File operations". */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"

typedef struct FileWrite {
        bool active; /* between FILE_WRITE and FILE_END */
        int fd;      /* the file being written, or -1 after an error */
        int dir_fd;  /* its parent directory (O_PATH) */
        char name[SBX_PATH_COMPONENT_MAX + 1];
        uint64_t size;
        SbxFileStatus status; /* the first error, reported at FILE_END */
        const char *message;  /* its text (static storage) */
} FileWrite;

void file_write_init(FileWrite *w);

/* Each returns 0, or a negative errno when the host channel failed (fatal).
 * busy: an exec is running; the operation is refused. */
int files_write_begin(FileWrite *w, int port_fd, const uint8_t *payload, size_t len, bool busy);
int files_write_data(FileWrite *w, int port_fd, const uint8_t *payload, size_t len);
int files_write_end(FileWrite *w, int port_fd);
int files_read(int port_fd, const uint8_t *payload, size_t len, bool busy);
int files_list(int port_fd, const uint8_t *payload, size_t len, bool busy);
