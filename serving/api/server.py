"""uvicorn's httptools protocol, writing each response in one ``send`` instead of two.

uvicorn writes the status line and headers when the ASGI app sends ``http.response.start`` and
the body when it sends ``http.response.body``: two system calls and two TCP segments per
answer, and the client wakes up twice. On a small machine shared with the load (two cores, a
client on the same host) that is a large share of the cost of a ~2 kB answer. ``HttpProtocol``
gives the protocol a transport that collects what is written during one turn of the event loop
and hands it to the socket in one write at the next turn (``call_soon``), or at once when the
connection closes. Everything else is uvicorn's.

``salesml serve`` uses it when httptools is installed (``--http serving.api.server:HttpProtocol``
in uvicorn's own terms).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _OneWritePerTurn:
    """A transport proxy that coalesces the writes of one event-loop turn."""

    __slots__ = ("_buffer", "_loop", "_scheduled", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._buffer: list[bytes] = []
        self._scheduled = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        self._buffer.append(bytes(data))
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        if self._buffer:
            data = self._buffer[0] if len(self._buffer) == 1 else b"".join(self._buffer)
            self._buffer.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._buffer.clear()
        self._transport.abort()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._buffer))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with one socket write per response (see the module)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_OneWritePerTurn(transport, self.loop))  # type: ignore[arg-type]
