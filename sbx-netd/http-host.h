/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "domain-match.h"

/* The host name of the first HTTP/1.x request on a connection to port 80:
 * the Host header (exactly one), without its port, in normal form. A request
 * in absolute form ("GET http://h/ HTTP/1.1") must name the same host; CONNECT
 * is refused.
 *
 * Returns the name's length, or:
 *   -EAGAIN    the header block is not complete yet;
 *   -EMSGSIZE  no complete header block within HTTP_HEADER_MAX bytes;
 *   -ENOENT    no Host header;
 *   -EBADMSG   anything else (not HTTP/1, malformed, several Hosts, an IP
 *              literal or other name that is not a host name). */
#define HTTP_HEADER_MAX 8192
int http_request_host(const uint8_t *p, size_t n, char out[static DOMAIN_NAME_MAX + 1]);
