"""The network guard: while a scenario or a ``loom_*`` test runs, only loopback is reachable.

Replayed runs must be offline, so a loop that reaches for the internet (an unrecorded
endpoint, a forgotten client) fails at once, naming the host and the flag that allows
recording, instead of hanging on a timeout or quietly spending money. The guard wraps
``socket.getaddrinfo`` (so the error names the host, not an address) and ``socket.socket``'s
``connect``/``connect_ex``; Unix sockets and loopback addresses (``127.0.0.0/8``, ``::1``,
``localhost``) always pass. Contexts nest; the innermost decides.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .recordmode import RECORD_FLAG

__all__ = ["NetworkBlockedError", "block_network"]

_lock = threading.Lock()
_stack: list[tuple[bool, list[str]]] = []
_originals: dict[str, Any] = {}
_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", ""})


class NetworkBlockedError(RuntimeError):
    """A connection to a non-loopback host while the lab runs offline."""

    def __init__(self, host: str, port: object) -> None:
        target = f"{host}:{port}" if port not in (None, 0, "") else host
        super().__init__(
            f"pytest-loom blocked a network connection to {target}: scenarios and loom_* tests run"
            f" offline.\n  To record real LLM calls, run with {RECORD_FLAG}=once (or new_episodes,"
            " all, rewrite) and give the run a cassette (llm.cassette in a scenario,"
            " @pytest.mark.loom_cassette on a test); anything else has to be faked."
        )
        self.host = host
        self.port = port


def _is_loopback(host: Any) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    name = str(host).strip("[]").lower()
    if name in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(name.split("%")[0]).is_loopback
    except ValueError:
        return False


def _blocking() -> list[str] | None:
    """The log of the innermost active guard, if it blocks."""
    if not _stack:
        return None
    blocks, log = _stack[-1]
    return log if blocks else None


def _check(host: Any, port: object) -> None:
    log = _blocking()
    if log is not None and not _is_loopback(host):
        error = NetworkBlockedError(str(host), port)
        log.append(str(error))
        raise error


def _getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
    _check(host, port)
    return _originals["getaddrinfo"](host, port, *args, **kwargs)


def _address_check(sock: socket.socket, address: Any) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
        _check(address[0], address[1] if len(address) > 1 else None)


def _connect(self: socket.socket, address: Any) -> None:
    _address_check(self, address)
    _originals["connect"](self, address)


def _connect_ex(self: socket.socket, address: Any) -> int:
    _address_check(self, address)
    result: int = _originals["connect_ex"](self, address)
    return result


def _install() -> None:
    if _originals:
        return
    _originals.update(
        getaddrinfo=socket.getaddrinfo,
        connect=socket.socket.connect,
        connect_ex=socket.socket.connect_ex,
    )
    socket.getaddrinfo = _getaddrinfo
    socket.socket.connect = _connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = _connect_ex  # type: ignore[method-assign,assignment]


def _uninstall() -> None:
    if not _originals:
        return
    socket.getaddrinfo = _originals.pop("getaddrinfo")
    # socket.socket inherits both from _socket.socket: dropping the patches restores them.
    del socket.socket.connect, socket.socket.connect_ex
    _originals.clear()


@contextmanager
def block_network(enabled: bool = True) -> Iterator[list[str]]:
    """Block non-loopback connections (``enabled=False`` allows them, inside an outer guard).

    Yields the list of block messages, so a caller can report blocks a loop swallowed.
    """
    log: list[str] = []
    with _lock:
        _install()
        _stack.append((enabled, log))
    try:
        yield log
    finally:
        with _lock:
            del _stack[next(i for i, entry in enumerate(_stack) if entry[1] is log)]
            if not _stack:
                _uninstall()
