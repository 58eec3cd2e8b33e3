#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# A tiny authoritative DNS server for tests/integration/test-netd.sh:
#   dns-server.py ADDR PORT LOGFILE NAME=IPV4...
# Answers A queries for the given names (TTL 300), NXDOMAIN for the rest, and
# writes every queried name to LOGFILE (one per line), so a test can show
# which names ever reached the upstream resolver.
import socket
import struct
import sys

addr, port, logfile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
records = {}
for arg in sys.argv[4:]:
    name, ip = arg.split("=")
    records.setdefault(name.lower(), []).append(socket.inet_aton(ip))

sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((addr, port))
log = open(logfile, "a", buffering=1)

while True:
    data, peer = sock.recvfrom(4096)
    if len(data) < 12:
        continue
    qid, flags, qd = struct.unpack("!HHH", data[:6])
    off, labels = 12, []
    try:
        while data[off]:
            n = data[off]
            labels.append(data[off + 1:off + 1 + n].decode("ascii", "replace"))
            off += 1 + n
        off += 1
        qtype, qclass = struct.unpack("!HH", data[off:off + 4])
    except (IndexError, struct.error):
        continue
    question = data[12:off + 4]
    name = ".".join(labels).lower()
    log.write(f"{name} {qtype}\n")
    answers = records.get(name, []) if qtype == 1 else []
    rcode = 0 if name in records else 3
    hdr = struct.pack("!HHHHHH", qid, 0x8400 | (flags & 0x0100) | rcode, 1, len(answers), 0, 0)
    body = b"".join(struct.pack("!HHHIH", 0xC00C, 1, 1, 300, 4) + a for a in answers)
    sock.sendto(hdr + question + body, peer)
