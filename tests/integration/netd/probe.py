#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# Network probes for tests/integration/test-netd.sh; prints what happened and
# exits 0 when the operation succeeded, 1 when it failed.
#   probe.py tcp HOST PORT          connect (AF_INET6 when HOST has a colon)
#   probe.py udp HOST PORT          one datagram with sendto
#   probe.py resolve NAME           getaddrinfo, IPv4
import errno
import socket
import sys

kind = sys.argv[1]
try:
    if kind == "resolve":
        res = socket.getaddrinfo(sys.argv[2], None, socket.AF_INET, socket.SOCK_STREAM)
        print(" ".join(sorted({r[4][0] for r in res})))
    else:
        host, port = sys.argv[2], int(sys.argv[3])
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        typ = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
        s = socket.socket(fam, typ)
        s.settimeout(5)
        if kind == "tcp":
            s.connect((host, port))
        else:
            s.sendto(b"\xc0\x00\x00\x00\x01probe", (host, port))
        print("ok")
except socket.gaierror as e:
    print(f"gaierror {e.errno} {e.strerror}")
    sys.exit(1)
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)) if e.errno else str(e))
    sys.exit(1)
