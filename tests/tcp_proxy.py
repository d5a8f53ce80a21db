"""A TCP proxy that can hang: a small stand-in for toxiproxy (github.com/Shopify/toxiproxy),
between an operator and the API server.

`stall()` makes the API look hung: connections stay open, nothing is forwarded (and nothing
sent meanwhile is delivered later: a late write would be a write by an instance that no longer
leads). `heal()` closes the connections that saw the stall (their TLS streams are broken) and
forwards new ones again.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass, field


@dataclass(eq=False)
class _Conn:
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    poisoned: bool = False  # saw a stall: discard its bytes until closed


class StallingProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self._stalled = False
        self._conns: set[_Conn] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stalling-proxy", daemon=True)

    def start(self) -> StallingProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stall(self) -> None:
        self._loop.call_soon_threadsafe(self._stall)

    def heal(self) -> None:
        self._loop.call_soon_threadsafe(self._heal)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _stall(self) -> None:
        self._stalled = True
        for conn in self._conns:
            conn.poisoned = True

    def _heal(self) -> None:
        self._stalled = False
        for conn in [c for c in self._conns if c.poisoned]:
            self._close(conn)

    def _close(self, conn: _Conn) -> None:
        self._conns.discard(conn)
        for writer in conn.writers:
            writer.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        for conn in list(self._conns):
            self._close(conn)
        pending = asyncio.all_tasks(self._loop)
        if pending:  # closed sockets end every pipe: let them finish rather than cancel them
            self._loop.run_until_complete(asyncio.wait(pending, timeout=5))
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Conn(writers=[writer], poisoned=self._stalled)
        self._conns.add(conn)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            self._close(conn)
            return
        conn.writers.append(up_writer)
        await asyncio.gather(self._pipe(conn, reader, up_writer),
                             self._pipe(conn, up_reader, writer), return_exceptions=True)
        self._close(conn)

    async def _pipe(self, conn: _Conn, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if conn.poisoned:
                    continue  # a black hole: read and dropped, never delivered
                writer.write(data)
                await writer.drain()
        self._close(conn)
