#!/usr/bin/env python3
"""The demo's webhook: prints every request it gets, one line each, and
answers 204.

    http_receiver.py [--host HOST] [PORT]

PORT defaults to 9000 (0 picks a free port). HOST defaults to 127.0.0.1:
on a developer's machine (examples/demo.sh) the broker is local, and a
receiver that prints whatever it is sent has no business on the network.
In a container the sender is another container, which reaches it through
the container's own address, so docker/compose.yaml passes --host 0.0.0.0.
The first line printed is `listening on HOST:PORT`."""

import argparse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        record = self.headers.get("sluice-record-id", "-")
        print(f"{self.command} {self.path} id={record} {body.decode('utf-8', 'replace')}", flush=True)
        self.send_response(204)
        self.end_headers()

    do_PUT = do_POST

    def log_message(self, *args):
        pass  # one line per request is printed above


def main():
    parser = argparse.ArgumentParser(description="The demo's webhook receiver.")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; 0.0.0.0 in a container)")
    parser.add_argument("port", nargs="?", type=int, default=9000,
                        help="port to bind (default 9000; 0 picks a free one)")
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    host, port = server.server_address[:2]
    print(f"listening on {host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
