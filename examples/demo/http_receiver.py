#!/usr/bin/env python3
"""The demo's webhook: prints every request it gets, one line each, and
answers 204. `http_receiver.py PORT` (0 picks a free port); the first line
printed is `listening on PORT`."""

import sys
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
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"listening on {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
