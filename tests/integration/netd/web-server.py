#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# Test web host for tests/integration/test-netd.sh:
#   web-server.py ADDR IDENT CERT KEY
# HTTP on ADDR:80 and HTTPS on ADDR:443 answer "IDENT <Host>", and a UDP
# listener on ADDR:443 and ADDR:9999 logs datagrams ("udp <port>") to stdout,
# so a test can show UDP/QUIC never arrives.
import http.server
import socket
import socketserver
import ssl
import sys
import threading

addr, ident, cert, key = sys.argv[1:5]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"{ident} {self.headers.get('Host', '')}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print("http", fmt % args, flush=True)


class Server(http.server.ThreadingHTTPServer):
    def server_bind(self):
        # HTTPServer.server_bind() does a reverse DNS lookup (getfqdn): not here.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "test", self.server_address[1]


def serve(port, tls):
    srv = Server((addr, port), Handler)
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.serve_forever()


def udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, port))
    while True:
        data, peer = s.recvfrom(2048)
        print(f"udp {port} from {peer[0]}", flush=True)


threads = [threading.Thread(target=t, args=a, daemon=True)
           for t, a in ((serve, (80, False)), (serve, (443, True)), (udp, (443,)), (udp, (9999,)))]
for t in threads:
    t.start()
# "ready" once both TCP ports accept connections
for port in (80, 443):
    for _ in range(100):
        try:
            socket.create_connection((addr if addr != "0.0.0.0" else "127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            threading.Event().wait(0.05)
print("ready", flush=True)
threading.Event().wait()
