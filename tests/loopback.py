"""A local HTTP server on 127.0.0.1 for the download tests: each path is a ``Route`` that can misbehave
the way real mirrors do (errors, dropped connections, ignored ranges, changed files, redirects, stalls)."""

from __future__ import annotations

import hashlib
import http.server
import re
import threading
import time


class Route:
    """How one path answers. ``versions``: the bodies of successive requests (the last one repeats; none:
    404); ``plan``: per request, ``"ok"``, ``"status:CODE"`` (an empty answer with that code),
    ``"drop:N"`` (promise the whole body, send N bytes, close), ``"ignore-range"`` (answer 200 with the
    whole body) or ``"trickle"`` (one byte every 20 ms, forever); ``redirect``: a Location to answer
    with (302); ``etag``/``length``: whether those headers are sent; ``honour_if_range``: whether a
    stale If-Range restarts the body."""

    def __init__(self, versions=(), *, etag=True, length=True, honour_if_range=True, plan=(), redirect=None):
        self.versions = list(versions)
        self.etag, self.length, self.honour_if_range = etag, length, honour_if_range
        self.plan, self.redirect = list(plan), redirect
        self.served = 0


class LoopbackServer:
    """Serves ``routes`` by path and records every request as (path, Range, If-Range)."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, str | None, str | None]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _empty(self, code: int, location: str | None = None) -> None:
                self.send_response(code)
                if location is not None:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                server.requests.append((self.path, self.headers.get("Range"), self.headers.get("If-Range")))
                route = server.routes.get(self.path)
                if route is not None and route.redirect:
                    return self._empty(302, route.redirect)
                action = route.plan.pop(0) if route is not None and route.plan else "ok"
                if action.startswith("status:"):
                    return self._empty(int(action.split(":")[1]))
                if action == "trickle":
                    self.send_response(200)
                    self.end_headers()
                    while True:
                        self.wfile.write(b"x")
                        self.wfile.flush()
                        time.sleep(0.02)
                if route is None or not route.versions:
                    return self._empty(404)
                data = route.versions[min(route.served, len(route.versions) - 1)]
                route.served += 1
                etag = '"' + hashlib.sha1(data).hexdigest() + '"'
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                start = int(match.group(1)) if match and action != "ignore-range" else 0
                if start and route.honour_if_range and self.headers.get("If-Range") not in (None, etag):
                    start = 0
                if start:
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                if route.length:
                    self.send_header("Content-Length", str(len(data) - start))
                if route.etag:
                    self.send_header("ETag", etag)
                self.end_headers()
                body = data[start:]
                if action.startswith("drop:"):
                    body = body[:int(action.split(":")[1])]
                self.wfile.write(body)
                self.wfile.flush()
                self.close_connection = True

        class Quiet(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address) -> None:
                pass  # a client hanging up on a trickle is expected

        self.httpd = Quiet(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def hits(self, path: str) -> list[tuple[str, str | None, str | None]]:
        return [r for r in self.requests if r[0] == path]

    def serve(self, path: str, data: bytes, *plan: str) -> None:
        """Serve ``data`` at ``path``, misbehaving as ``plan`` says for the first requests."""
        self.routes[path] = Route([data], plan=plan)
