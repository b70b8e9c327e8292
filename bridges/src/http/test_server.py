"""A real HTTP/1.1 server for the HTTP sink's tests (bridges/src/http/tests.rs).

    python3 test_server.py LOG SCRIPT [CERT_CHAIN KEY]

Listens on 127.0.0.1, port chosen by the system, printed as the first line
of stdout. SCRIPT is a JSON list of answers, one per request in arrival
order: a status code, "429:N" (429 with Retry-After N; a plain 429 says 7),
or "close" to drop the connection without answering;
once it runs out every request gets 200. Every request is appended to LOG
(a JSON list, replaced atomically before the answer is sent) with its
method, path, headers, body (latin-1) and the client's port. With CERT_CHAIN
and KEY it speaks TLS. Keep-alive is on (HTTP/1.1).

Exits when stdin closes (the test dropped it) or after 120 s, whichever
comes first, so no test leaves it behind.
"""

import json
import os
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LIFETIME_S = 120

log_path = sys.argv[1]
script = json.loads(sys.argv[2])
lock = threading.Lock()
seen = []


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with lock:
            action = script.pop(0) if script else 200
            seen.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": [[k, v] for k, v in self.headers.items()],
                    "body": body.decode("latin-1"),
                    "client_port": self.client_address[1],
                    "answer": action,
                }
            )
            tmp = log_path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(seen, f)
            os.replace(tmp, log_path)
        if action == "close":
            self.close_connection = True
            return
        retry_after = "7"
        if isinstance(action, str) and action.startswith("429:"):
            # "429:N": 429 with Retry-After N.
            retry_after, action = action[4:], 429
        reply = b"ok" if action < 300 else ("scripted %d" % action).encode()
        self.send_response(action)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(reply)))
        if action == 429:
            self.send_header("Retry-After", retry_after)
        self.end_headers()
        self.wfile.write(reply)

    do_POST = answer
    do_PUT = answer

    def log_message(self, *args):
        pass


def exit_when_orphaned():
    sys.stdin.read()
    os._exit(0)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
if len(sys.argv) > 3:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[3], sys.argv[4])
    server.socket = context.wrap_socket(server.socket, server_side=True)
threading.Thread(target=exit_when_orphaned, daemon=True).start()
threading.Timer(LIFETIME_S, lambda: os._exit(0)).start()
print(server.server_address[1], flush=True)
server.serve_forever()
