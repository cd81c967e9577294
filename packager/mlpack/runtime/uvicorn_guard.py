"""uvicorn's HTTP/1.1 protocol (h11) with a deadline for every request head.

uvicorn closes a kept-alive connection that stays idle, but nothing times out a request
head that arrives slowly: half a request line, or one header line every few seconds,
holds a connection and its buffers for as long as the client likes. Here a connection
must deliver a complete request head within `HEAD_TIMEOUT_S` of connecting, or of its
previous response, or it is closed. A request whose head arrived is the application's
(asgi.RequestGuard bounds how long its body may take).

Imported only where uvicorn runs, never by the Lambda handler: the Bento service calls
`install()` when BentoML's worker imports it (the worker builds its uvicorn server after
that); `mlpack serve`'s Function URL front gives the class to uvicorn itself.
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.h11_impl import H11Protocol

HEAD_TIMEOUT_S = 10.0
_log = logging.getLogger(__name__)


class HeadDeadlineProtocol(H11Protocol):
    head_timeout_s = HEAD_TIMEOUT_S
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm()

    def handle_events(self) -> None:
        super().handle_events()
        if self._request_open():
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self._request_open():
            self._arm()  # the next request's head (uvicorn's keep-alive timeout may close it first)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _request_open(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.head_timeout_s, self._head_late)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _head_late(self) -> None:
        self._deadline = None
        if not self._request_open() and not self.transport.is_closing():
            self.transport.close()


def install() -> bool:
    """Make HeadDeadlineProtocol the HTTP protocol of the uvicorn servers this process
    configures from now on ("auto" and "h11"). False, with a warning, on a uvicorn whose
    h11 protocol lacks what it extends: the server then runs without the deadline."""
    from uvicorn import config

    if not all(hasattr(H11Protocol, name) for name in ("handle_events", "on_response_complete")):
        _log.warning("this uvicorn's h11 protocol has changed: request heads are served without a deadline")
        return False
    path = f"{__name__}:{HeadDeadlineProtocol.__name__}"
    config.HTTP_PROTOCOLS["auto"] = config.HTTP_PROTOCOLS["h11"] = path
    return True
