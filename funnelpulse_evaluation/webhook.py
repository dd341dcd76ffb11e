"""A local webhook receiver for the alerts' tests and benchmarks: it records every JSON body it
is sent, the path it came to and when it arrived."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from funnelpulse_dagster.runtime.services import free_port


class Receiver:
    """A webhook on 127.0.0.1 (`url`): `posts` holds (path, body) of every post it accepted,
    `arrivals` the same with the arrival time first; it answers 503 while `down`."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict]] = []
        self.arrivals: list[tuple[float, str, dict]] = []
        self.down = False
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if receiver.down:
                    self.send_response(503)
                else:
                    receiver.arrivals.append((time.time(), self.path, body))
                    receiver.posts.append((self.path, body))
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/funnel"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def bodies(self) -> list[dict]:
        return [body for _, body in self.posts]

    def close(self) -> None:
        self.server.shutdown()
