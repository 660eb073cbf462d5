"""What every remote shares: the :class:`Remote` protocol, the key layout, the batched
existence check and URL redaction.

Layout (the same on every backend, and the same as the cache, so a directory remote can be
inspected like a cache)::

    <root>/objects/ab/<30 hex>    one object, named by its id's 32 hex digits (fan-out on 2)
    <root>/runs/ab/<30 hex>       one run-cache entry, named by its run key (the entry's
                                  canonical JSON, which names that key: docs/format.md)
    <root>/packs/<P>.pack         many small objects in one file, and <P>.idx, its index
                                  (:mod:`datavc.pack`); an object may be loose, packed or both
    <root>/tmp/                   directory remotes only: uploads in progress

``<root>`` is a directory for a local remote, ``<bucket>/<prefix>`` for S3. Anything else
under ``objects/`` is junk: :meth:`Remote.iter_oids` reports it and never trips over it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import NamedTuple, Protocol

from . import pack
from .config import redact  # noqa: F401  (re-exported: remotes name themselves with it)
from .errors import DatavcError, RemoteError, from_oserror
from .hashing import Oid
from .pack import PACKS, PackShelf  # noqa: F401  (re-exported for the backends)

OBJECTS = "objects"
RUNS = "runs"
MAX_RUN = 4 << 20
"""The largest run-cache entry a remote hands back (runcache.MAX_ENTRY)."""
FANOUT = 2

_HEX = frozenset("0123456789abcdef")


class Listed(NamedTuple):
    """One object as a listing of the remote shows it."""

    oid: Oid
    size: int
    stored: float  # when it was stored there (seconds since the epoch), for gc's grace


class Sink(Protocol):
    """Where :meth:`Remote.get` writes: any binary file object (or a hashing wrapper)."""

    def write(self, data: bytes, /) -> object: ...


class Collect:
    """A sink keeping what it is given, up to ``limit`` bytes; beyond, it raises what
    ``too_long()`` returns (for bounded reads of listings and pack indexes)."""

    def __init__(self, limit: int, too_long: Callable[[], Exception]) -> None:
        self.parts: list[bytes] = []
        self.left = limit
        self.too_long = too_long

    def write(self, data: bytes, /) -> int:
        self.left -= len(data)
        if self.left < 0:
            raise self.too_long()
        self.parts.append(bytes(data))
        return len(data)


class Remote(Protocol):
    """A store of objects keyed by :class:`Oid`. Every method is thread-safe: the transfer
    layer calls them from many threads on one instance.

    Failures: the store unreachable or failing after retries raises RemoteError (exit 5);
    a local file system refusing (no space, permission) raises ResourceError (exit 7).
    Messages name the remote by :meth:`describe` and never carry credentials.

    ``packing``: whether a push may store many small objects as packs (the remote's ``pack``
    setting, default true); readers use packs whatever it says.
    """

    packing: bool

    def missing(self, oids: Iterable[Oid]) -> set[Oid]:
        """The subset of ``oids`` the remote does not hold, loose or in a pack: packed ids
        from the pack indexes (read once per instance, see :class:`PackShelf`), the others
        checked in batches, per-object checks or prefix listings, whichever costs fewer
        round trips (see :func:`missing`)."""
        ...

    def locate(self, oids: Iterable[Oid]) -> dict[Oid, pack.Packed]:
        """Which of ``oids`` are in a pack, and where (from the same indexes)."""
        ...

    def read_range(self, name: str, start: int, length: int, sink: Sink) -> None:
        """Write bytes ``[start, start + length)`` of pack ``name`` into ``sink``, streaming.
        Does not verify (the caller hashes each object it cuts out). A pack that is gone
        raises ObjectMissingError; a pack shorter than the range writes fewer bytes."""
        ...

    def put_packs(self, built: list[tuple[str, bytes]]) -> None:
        """Store packs: each ``(temp file, index bytes)``, the temp file a pack written by
        :func:`datavc.parallel.build_packs` (a directory remote's in its ``tmp/``, so that it
        can be renamed into place), under the name :func:`pack.index_name` gives. Each
        ``.pack`` is durable and visible before its ``.idx`` is, so a reader never sees an
        index without its pack. Once this returns, :meth:`missing` counts their objects as
        stored. The caller removes the temp files that remain."""
        ...

    def iter_packs(self, *, on_junk: Callable[[str], object] | None = None
                   ) -> list[pack.PackInfo]:
        """Every pack on the remote, read afresh: usable ones with their entries, and the
        others with ``entries`` None and a ``problem``: a ``.pack`` without ``.idx`` (an
        interrupted push), an ``.idx`` without its ``.pack`` (a pack removed by hand), or a
        damaged index (or one that does not fit its pack). Other names under ``packs/``, and
        anything there that is not a regular file, go to ``on_junk``."""
        ...

    def delete_pack(self, name: str) -> None:
        """Remove a pack: its index first, then its bytes; absent files are no error."""
        ...

    def put(self, oid: Oid, path: str, size: int) -> None:
        """Upload the file at ``path`` (a cache object of ``size`` bytes) as ``oid``.

        Atomic: the object under its final key is either absent or complete, even when the
        upload fails or the process dies. Verified: when the bytes read from ``path`` do not
        hash to ``oid`` or are not ``size`` long, nothing is published and IntegrityError
        is raised. Idempotent: putting an object already there rewrites the same bytes.
        """
        ...

    def get(self, oid: Oid, sink: Sink) -> None:
        """Write the object's bytes into ``sink``, streaming in chunks (constant memory).

        Does not verify: the caller hashes what it received before trusting it. A missing
        object raises ObjectMissingError (exit 1) naming the id. Errors raised by ``sink``
        itself propagate unchanged. After any failure, ``sink`` may hold a prefix of the
        object: the caller discards it.
        """
        ...

    def iter_oids(self, *, on_junk: Callable[[str], object] | None = None) -> Iterator[Oid]:
        """Every object id on the remote, lazily. Keys under ``objects/`` that are not
        ``ab/<30 hex>`` are skipped and passed to ``on_junk`` (relative to the root)."""
        ...

    def iter_listed(self, *, on_junk: Callable[[str], object] | None = None
                    ) -> Iterator[Listed]:
        """:meth:`iter_oids` with each object's size and the time it was stored (a
        directory: the later of mtime and ctime, so a copy that kept old mtimes is new
        here; S3: LastModified)."""
        ...

    def delete(self, oid: Oid) -> None:
        """Remove one object; deleting an absent object is not an error."""
        ...

    def get_run(self, key: Oid) -> bytes | None:
        """The run-cache entry stored under run key ``key`` (at most :data:`MAX_RUN` bytes;
        RemoteError beyond), None when there is none. Not verified: the caller parses it and
        checks it names ``key``."""
        ...

    def put_run(self, key: Oid, data: bytes) -> None:
        """Store run-cache entry ``data`` under ``key``, replacing any: atomic (readers see
        the old entry or the new one, never a part) and durable when it returns."""
        ...

    def iter_runs(self) -> Iterator[Oid]:
        """Every run key with an entry, lazily; keys under ``runs/`` of another shape are
        skipped."""
        ...

    def delete_run(self, key: Oid) -> None:
        """Remove one run-cache entry; deleting an absent one is not an error."""
        ...

    def describe(self) -> str:
        """The remote for messages: a URL or path without credentials or user-info."""
        ...

    def begin_batch(self) -> None:
        """Let the following puts defer their durability to :meth:`end_batch` (a directory
        remote then syncs once per batch instead of twice per object, as the cache does);
        a backend whose writes are durable when acknowledged (S3) ignores it."""
        ...

    def end_batch(self, *, commit: bool) -> None:
        """End a batch: with ``commit``, make every object put since :meth:`begin_batch`
        durable and visible under its key (sync barrier, renames, barrier); without, discard
        the ones not yet visible. An object is never visible before its bytes are durable."""
        ...

    def close(self) -> None:
        """Release connections and threads; the remote must not be used afterwards."""
        ...


def object_key(oid: Oid, top: str = OBJECTS) -> str:
    """``objects/ab/<30 hex>`` (or ``runs/...`` with ``top``), relative to the root."""
    hexd = oid.hex
    return f"{top}/{hexd[:FANOUT]}/{hexd[FANOUT:]}"


def parse_name(prefix: str, name: str) -> bytes | None:
    """The digest named by fan-out dir ``prefix`` and file ``name``, None for junk."""
    text = prefix + name
    if len(prefix) != FANOUT or len(text) != 32 or not _HEX.issuperset(text):
        return None
    return bytes.fromhex(text)


def parse_key(key: str, top: str = OBJECTS) -> bytes | None:
    """The digest of ``objects/ab/<30 hex>`` (or ``runs/...`` with ``top``; relative to
    the root), None for junk."""
    parts = key.split("/")
    if len(parts) != 3 or parts[0] != top:
        return None
    return parse_name(parts[1], parts[2])


Lister = Callable[[int], Iterator[bytes]]
"""Lists the digests stored under fan-out prefix ``n`` (0..255), lazily."""
Prober = Callable[[Oid], bool]
"""Tells whether one object is stored."""
Runner = Callable[[Callable[..., object], list], Iterable]
"""Maps a function over items, maybe in parallel (``map`` or a thread pool's map)."""


SMALL_REMOTE_PAGES = 4


def missing(oids: Iterable[Oid], *, probe: Prober, list_prefix: Lister, page: int,
            run: Runner = map, list_all: Callable[[], Iterator[bytes]] | None = None
            ) -> set[Oid]:
    """The ids of ``oids`` not stored, by probing each or listing whole fan-out prefixes.

    The heuristic, in round trips: probing costs one per id; listing a prefix costs one per
    ``page`` entries in it (S3: 1,000 keys per ListObjectsV2 page; a directory: the entries
    read in the time of one stat). Group the ids by prefix. When no prefix holds two of
    them, probe them all. Otherwise list the busiest prefix, but stop as soon as that costs
    as much as probing its ids (so a huge remote costs no more than probing); its size is
    the estimate for every prefix. Then list each prefix whose ids outnumber the estimated
    pages, and probe the ids of the others.

    With ``list_all`` (every stored digest, in pages of ``page``), a busiest prefix that
    holds nothing suggests a small remote (a first push): then one listing of all objects,
    if it ends within SMALL_REMOTE_PAGES pages, answers for every prefix at once (instead
    of one request per prefix: 255 for an empty S3 remote).
    """
    groups: dict[int, dict[bytes, Oid]] = defaultdict(dict)
    for oid in oids:
        groups[oid.digest[0]][oid.digest] = oid
    if not groups:
        return set()
    busiest = max(groups, key=lambda p: len(groups[p]))
    if len(groups[busiest]) < 2:
        return _probe_all([o for g in groups.values() for o in g.values()], probe, run)
    wanted = groups.pop(busiest)
    budget = (len(wanted) - 1) * page
    sample = set(islice(list_prefix(busiest), budget + 1))
    absent = {oid for d, oid in wanted.items() if d not in sample}
    if len(sample) > budget:  # sample cut short: the remote is large next to the request
        return _probe_all([*absent, *(o for g in groups.values() for o in g.values())],
                          probe, run)
    if not sample and list_all is not None and groups:
        bound = SMALL_REMOTE_PAGES * page
        stored = set(islice(list_all(), bound + 1))
        if len(stored) <= bound:
            return absent | {oid for g in groups.values() for d, oid in g.items()
                             if d not in stored}
    pages = max(1, math.ceil(len(sample) / page))
    listed = [p for p, g in groups.items() if len(g) > pages]
    probed = [o for p, g in groups.items() if len(g) <= pages for o in g.values()]
    for prefix, found in zip(listed, run(lambda p: set(list_prefix(p)), listed), strict=True):
        absent.update(oid for d, oid in groups[prefix].items() if d not in found)
    return absent | _probe_all(probed, probe, run)


def _probe_all(oids: list[Oid], probe: Prober, run: Runner) -> set[Oid]:
    return {oid for oid, there in zip(oids, run(probe, oids), strict=True) if not there}


def remote_oserror(exc: OSError, path: object, action: str) -> DatavcError:
    """An OSError on a directory remote: ResourceError when the file system refuses (space,
    permission), RemoteError (exit 5) for anything else (an I/O error, a stale mount)."""
    err = from_oserror(exc, path, action)
    if type(err) is DatavcError:
        return RemoteError(err.message, hint="check that the remote's directory is mounted "
                                             "and readable, then run the command again")
    return err
