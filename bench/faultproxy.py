"""A TCP proxy on loopback that breaks the connections through it on request: the object store
"failing for a while" of the chaos run (``bench/chaos.py``), put between the services and moto.

Three ways to fail, each for as long as asked, then back to plain forwarding:

- ``drop``: new connections are accepted and reset at once (a server that is down, or a load
  balancer with no backend); live ones go on.
- ``reset``: every live connection is reset now, and new ones as in ``drop`` (a server restarted).
- ``stall``: no byte goes either way, on live connections or new ones, until it ends; then they
  go on where they were (a partition, a GC pause, a full disk), unless the client gave up first.

A reset is a real RST (``SO_LINGER`` 0), so the client sees what it would see in production, not
a clean close that it might take for the end of an answer.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager

MODES = ("drop", "reset", "stall")
CHUNK = 65536


def _reset(sock: socket.socket) -> None:
    """Close with an RST instead of a FIN: the peer reads 'connection reset by peer'. Shutting
    the read side first wakes a thread blocked in ``recv`` on it, which a bare close does not."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass  # closed already
    sock.close()


class FaultProxy:
    def __init__(self, upstream: tuple[str, int], host: str = "127.0.0.1") -> None:
        self.upstream = upstream
        self.listener = socket.create_server((host, 0))
        self.port = int(self.listener.getsockname()[1])
        self.address = f"{host}:{self.port}"
        self.mode = "ok"
        self.flowing = threading.Event()  # cleared while stalled: the pumps wait on it
        self.flowing.set()
        self.lock = threading.Lock()
        self.live: set[socket.socket] = set()
        self.closed = False
        self.connections = 0
        threading.Thread(target=self._accept, name="faultproxy", daemon=True).start()

    @contextmanager
    def failing(self, mode: str) -> Iterator[None]:
        """The store fails in ``mode`` for the duration of the ``with`` block."""
        self.fail(mode)
        try:
            yield
        finally:
            self.heal()

    def fail(self, mode: str) -> None:
        assert mode in MODES, mode
        with self.lock:
            self.mode = mode
            if mode == "stall":
                self.flowing.clear()
            elif mode == "reset":
                for sock in list(self.live):
                    _reset(sock)
                self.live.clear()

    def heal(self) -> None:
        with self.lock:
            self.mode = "ok"
            self.flowing.set()

    def close(self) -> None:
        self.closed = True
        self.heal()
        self.listener.close()
        with self.lock:
            for sock in list(self.live):
                _reset(sock)
            self.live.clear()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            if self.mode in ("drop", "reset"):
                _reset(client)
                continue
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        self.flowing.wait()  # a stalled store does not answer a new connection either
        try:
            server = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            _reset(client)
            return
        server.settimeout(None)
        link = _Link(client, server)
        with self.lock:
            if self.mode in ("drop", "reset"):  # it failed while this one was connecting
                link.reset()
                return
            self.live.update((client, server))
        threading.Thread(target=self._pump, args=(link, server, client), daemon=True).start()
        self._pump(link, client, server)

    def _pump(self, link: _Link, source: socket.socket, target: socket.socket) -> None:
        """Bytes from ``source`` to ``target`` until ``source`` closes; held while stalled."""
        try:
            while data := source.recv(CHUNK):
                self.flowing.wait()
                target.sendall(data)
            target.shutdown(socket.SHUT_WR)  # pass the half-close on: the other way may still talk
        except OSError:
            link.reset()
        if link.pump_ended():
            with self.lock:
                self.live.discard(source)
                self.live.discard(target)


class _Link:
    """One client connection and its upstream one; closed once both directions have ended."""

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.sockets = (client, server)
        self.ended = 0
        self.lock = threading.Lock()

    def pump_ended(self) -> bool:
        with self.lock:
            self.ended += 1
            if self.ended < 2:
                return False
        for sock in self.sockets:
            sock.close()
        return True

    def reset(self) -> None:
        for sock in self.sockets:
            _reset(sock)
