/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "domain-match.h"

/* The server name of a TLS ClientHello, the first bytes a client sends on a
 * connection to port 443. Only a ClientHello contained in the first TLS
 * record is accepted (clients send it that way; a record holds up to 16 KiB).
 *
 * Returns the length of the name (written in normal form to out), or:
 *   -EAGAIN   the record is incomplete: read more and call again;
 *   -ENOENT   a valid ClientHello without a server_name host name;
 *   -EPROTO   a ClientHello with Encrypted Client Hello (the real name is hidden);
 *   -EBADMSG  anything else (not TLS, not a ClientHello, malformed, bad name). */
#define TLS_RECORD_MAX (5 + 16384)
int tls_client_hello_sni(const uint8_t *p, size_t n, char out[static DOMAIN_NAME_MAX + 1]);
