/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* SHA-256 (FIPS 180-4), for the L1 snapshot cache: content hashes of the guest images and the
 * checksum of a snapshot's state file. Not constant time; nothing secret is hashed. */

#include <stddef.h>
#include <stdint.h>

#define SHA256_DIGEST_SIZE 32u
#define SHA256_HEX_SIZE (2u * SHA256_DIGEST_SIZE + 1u)

typedef struct Sha256 {
        uint32_t h[8];
        uint64_t len; /* bytes hashed */
        uint8_t buf[64];
        size_t buf_len;
} Sha256;

void sha256_init(Sha256 *s);
void sha256_update(Sha256 *s, const void *data, size_t n);
void sha256_final(Sha256 *s, uint8_t out[SHA256_DIGEST_SIZE]);
/* Lower-case hex of a digest, NUL-terminated. */
void sha256_hex(const uint8_t d[SHA256_DIGEST_SIZE], char out[SHA256_HEX_SIZE]);
/* The hex digest of a buffer. */
void sha256_buf_hex(const void *p, size_t n, char out[SHA256_HEX_SIZE]);
/* Hashes everything read from fd (from its current offset) into hex. -errno on read errors. */
int sha256_fd_hex(int fd, char out[SHA256_HEX_SIZE]);
