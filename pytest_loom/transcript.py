"""An append-only sequence for loop state that grows every step, checkpointed by its delta.

A plain state is checkpointed whole after every step, so a state that gains a message per step
costs O(state) per step: the whole list is serialised, hashed and written again. A
:class:`Transcript` inside the state changes that. Its existing items can never change (each
item is frozen when appended), so the reference runtime knows what changed without looking at
the rest: it writes only the items appended since the last checkpoint, and the state row holds
a small marker (length and a chained digest) in the transcript's place. A resumed transcript
reads its items from the checkpoint database lazily, on access.

The chained digest ``h(n) = sha256(h(n-1) + item n)`` covers every item, so equal transcripts
have equal digests, the state digest of the record stays content-based and stall detection
keeps working, at O(delta) per step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NoReturn, SupportsIndex, overload

import orjson

MARKER = "__loom_transcript__"
"""The key of the marker that stands for a transcript in a checkpointed state."""

_CHAIN_START = bytes(16)
_FROZEN_MESSAGE = (
    "items of a Transcript cannot be changed once appended (each is checkpointed once); "
    "append a new item instead"
)

ItemSource = Callable[[int, int], list[bytes]]
"""Reads items ``[start, stop)`` of a stored transcript, as JSON bytes."""


def _refuse(*_args: Any, **_kwargs: Any) -> NoReturn:
    raise TypeError(_FROZEN_MESSAGE)


class FrozenDict(dict[str, Any]):
    """A JSON object inside a transcript item: a ``dict`` that refuses every change."""

    __slots__ = ()
    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _refuse

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (dict(self),))


class FrozenList(list[Any]):
    """A JSON array inside a transcript item: a ``list`` that refuses every change."""

    __slots__ = ()
    __setitem__ = __delitem__ = append = extend = insert = pop = remove = _refuse
    reverse = sort = clear = __iadd__ = __imul__ = _refuse

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenList, (list(self),))


def _freeze(value: Any) -> Any:
    """A decoded JSON value with every object and array made unchangeable."""
    kind = type(value)
    if kind is dict:
        return FrozenDict({k: _freeze(v) for k, v in value.items()})
    if kind is list:
        return FrozenList([_freeze(v) for v in value])
    return value


def _encode(item: Any) -> bytes:
    try:
        return orjson.dumps(item, option=orjson.OPT_NON_STR_KEYS)
    except TypeError as exc:
        raise TypeError(f"Transcript items must be JSON-serialisable: {exc}") from None


class Transcript(Sequence[Any]):
    """An append-only list of JSON values (messages, notes, tool results) in a loop's state.

    ``append`` and ``extend`` add items; nothing else changes it. Each item is stored as the
    JSON value it serialises to, frozen: reading gives ``dict``/``list`` subclasses that raise
    ``TypeError`` on any change. The reference runtime checkpoints only the items appended
    since the previous step, and a resumed run's transcript loads its items on first access.
    A step that fails (or is retried) has its appends undone.
    """

    __slots__ = (
        "_chain",
        "_first",
        "_items",
        "_key",
        "_owner",
        "_pending",
        "_saved",
        "_saved_chain",
        "_source",
    )

    def __init__(self, items: Iterable[Any] = ()) -> None:
        self._items: list[Any] = []
        self._first = 0
        """Index of ``_items[0]``: a resumed transcript has loaded only a suffix, if anything."""
        self._source: ItemSource | None = None
        self._chain = _CHAIN_START
        self._pending: list[bytes] = []
        """The JSON of the items after the first ``_saved``: what the next checkpoint writes."""
        self._saved = 0
        self._saved_chain = _CHAIN_START
        self._owner: object = None
        """The checkpoint store that holds the first ``_saved`` items under ``_key``."""
        self._key = 0
        self.extend(items)

    @classmethod
    def _stored(
        cls, length: int, chain: bytes, source: ItemSource, owner: object, key: int
    ) -> Transcript:
        """A transcript of ``length`` items held in a checkpoint database, loaded on access."""
        self = cls()
        self._first = self._saved = length
        self._chain = self._saved_chain = chain
        self._source, self._owner, self._key = source, owner, key
        return self

    # -- growing ----------------------------------------------------------------------------

    def append(self, item: Any) -> None:
        """Add ``item`` (any JSON-serialisable value) at the end."""
        raw = _encode(item)
        self._items.append(_freeze(orjson.loads(raw)))
        self._pending.append(raw)
        self._chain = hashlib.sha256(self._chain + raw).digest()[:16]

    def extend(self, items: Iterable[Any]) -> None:
        for item in items:
            self.append(item)

    # -- reading ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._first + len(self._items)

    @overload
    def __getitem__(self, index: SupportsIndex) -> Any: ...

    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...

    def __getitem__(self, index: SupportsIndex | slice) -> Any:
        if isinstance(index, slice):
            wanted = range(*index.indices(len(self)))
            if not wanted:
                return []
            self._load(min(wanted[0], wanted[-1]))
            return [self._items[i - self._first] for i in wanted]
        i = index.__index__()
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("Transcript index out of range")
        self._load(i)
        return self._items[i - self._first]

    def __iter__(self) -> Iterator[Any]:
        self._load(0)
        return iter(self._items)

    def __reversed__(self) -> Iterator[Any]:
        for i in range(len(self) - 1, -1, -1):
            yield self[i]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Transcript):
            return len(self) == len(other) and self._chain == other._chain
        if isinstance(other, list | tuple):
            return len(self) == len(other) and list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Transcript(<{len(self)} items, digest {self.digest}>)"

    @property
    def digest(self) -> str:
        """The chained digest of all items: equal transcripts have equal digests."""
        return self._chain.hex()

    def _load(self, start: int) -> None:
        """Make items ``start..`` available in memory, reading the missing ones once."""
        if start >= self._first:
            return
        assert self._source is not None
        loaded = [_freeze(orjson.loads(raw)) for raw in self._source(start, self._first)]
        self._items[:0] = loaded
        self._first = start

    # -- checkpointing (used by the reference runtime) ---------------------------------------

    def _marker(self) -> dict[str, Any]:
        return {MARKER: [len(self), self.digest]}

    def _unsaved(self, start: int) -> list[bytes]:
        """The JSON of items ``start..`` (those a checkpoint does not hold yet)."""
        if start == self._saved and len(self._pending) == len(self) - start:
            return self._pending
        return [_encode(item) for item in self[start:]]

    def _saved_as(self, owner: object, key: int) -> None:
        """Every item is now checkpointed under ``key`` in the store ``owner``."""
        self._owner, self._key = owner, key
        self._saved = len(self)
        self._saved_chain = self._chain
        self._pending = []

    def _rollback(self) -> None:
        """Undo the appends since the last checkpoint (a failed or retried step's)."""
        if len(self) > self._saved:
            del self._items[self._saved - self._first :]
            self._pending = []
            self._chain = self._saved_chain


def restore(
    value: Any, keys: Sequence[int], read: Callable[[int], ItemSource], owner: object
) -> Any:
    """Replace the transcript markers of a decoded state, in order, with stored transcripts.

    ``keys`` are the store keys of the markers in the order the state was serialised (depth
    first, as JSON is written); ``read(key)`` gives the item reader of a key. A marker met
    twice with the same key and length becomes the same object, as it was when saved.
    """
    made: dict[tuple[int, int], Transcript] = {}
    it = iter(keys)

    def walk(node: Any) -> Any:
        if type(node) is dict:
            marker = node.get(MARKER) if len(node) == 1 else None
            if marker is not None:
                length, digest = marker
                key = next(it)
                found = made.get((key, length))
                if found is None:
                    chain = bytes.fromhex(digest)
                    found = Transcript._stored(length, chain, read(key), owner, key)
                    made[key, length] = found
                return found
            return {k: walk(v) for k, v in node.items()}
        if type(node) is list:
            return [walk(v) for v in node]
        return node

    result = walk(value)
    if next(it, None) is not None:
        raise ValueError("more transcript keys than markers")
    return result
