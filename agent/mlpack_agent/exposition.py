"""The Prometheus endpoint: prometheus_client's WSGI app, served with optional TLS (and
mutual TLS) and basic auth, a cap on concurrent connections and a timeout per connection.

prometheus_client's own `start_http_server` does TLS but not basic auth, and does the TLS
handshake in its accepting thread, so one client that never finishes a handshake would stop
every scrape; here each connection's handshake runs in that connection's thread, under the
same timeout as its request.
"""

from __future__ import annotations

import base64
import hmac
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import REGISTRY, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from .config import PrometheusConfig

log = logging.getLogger("mlpack_agent.prometheus")

MAX_CONNECTIONS = 8  # scrapers at once; a ninth connection is closed at once
TIMEOUT_S = 10.0  # for a connection's TLS handshake, its request and its answer


class _QuietHandler(WSGIRequestHandler):
    timeout = TIMEOUT_S  # a client that sends its request slowly is cut off

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        pass


class MetricsServer(ThreadingWSGIServer):
    daemon_threads = True
    tls: ssl.SSLContext | None = None
    on_refused: Callable[[], None] = staticmethod(lambda: None)

    def server_activate(self) -> None:
        super().server_activate()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            self.on_refused()
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)  # starts the connection's thread
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def finish_request(self, request, client_address) -> None:
        request.settimeout(TIMEOUT_S)
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        secure = self.tls.wrap_socket(request, server_side=True)  # the handshake, in this thread
        try:
            super().finish_request(secure, client_address)
        finally:
            secure.close()

    def handle_error(self, request, client_address) -> None:
        # A failed handshake, a client gone or too slow: its own business, not a crash.
        log.debug("a /metrics connection from %s failed", client_address, exc_info=True)


def _tls_context(config: PrometheusConfig) -> ssl.SSLContext | None:
    tls = config.tls
    if not tls.cert_file:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.client_ca_file:
        context.load_verify_locations(tls.client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _basic_auth(app, username: str, password: str):
    expected = ("Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()).encode()
    refusal = b"401 Unauthorized: this endpoint needs the agent's basic auth credentials\n"

    def guarded(environ, start_response):
        given = environ.get("HTTP_AUTHORIZATION", "").encode("latin-1", "replace")
        if hmac.compare_digest(given, expected):
            return app(environ, start_response)
        start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="mlpack-agent"'),
                                            ("Content-Type", "text/plain"), ("Content-Length", str(len(refusal)))])
        return [refusal]

    return guarded


def start(config: PrometheusConfig, on_refused: Callable[[], None]) -> MetricsServer:
    """Serve /metrics on `config.host:config.port` in a thread of its own. Raises OSError for
    an address in use, a certificate, key or password file that cannot be read."""
    app = make_wsgi_app(REGISTRY)
    auth = config.basic_auth
    if auth.username:
        password = Path(auth.password_file).read_text(encoding="utf-8").rstrip("\r\n")
        if not password:
            raise OSError(f"the password file {auth.password_file} is empty; write the scrape password into it")
        app = _basic_auth(app, auth.username, password)
    family = socket.getaddrinfo(config.host, config.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    server_class = type("MetricsServer", (MetricsServer,), {"address_family": family})
    tls = _tls_context(config)  # before binding: a bad certificate leaves no port taken
    server = make_server(config.host, config.port, app, server_class, handler_class=_QuietHandler)
    server.tls = tls
    server.on_refused = on_refused
    threading.Thread(target=server.serve_forever, name="mlpack-agent-metrics", daemon=True).start()
    return server
