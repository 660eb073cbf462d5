"""Garbage collection: delete the objects that no kept revision names, failing closed.

Mark: every object the kept trees name — their listings, read and validated, and the
objects those name. A listing that cannot be read (missing from the cache, corrupt, invalid)
hides what is below it, so the mark raises and nothing is deleted (RELIABILITY.md §4).
Sweep: every stored object that is not marked and is older than the grace period (a writer
may be between "object written" and "manifest written"; ``hash-object -w`` objects are named
by nothing). The caller holds the repository lock for the cache.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from . import crash, listing, pack
from .errors import DatavcError, from_oserror
from .hashing import Oid
from .objects import FANOUT, ObjectStore, object_path, read_pack_objects, write_pack
from .tree import MAX_DEPTH, Budget

DEFAULT_GRACE = 3600  # seconds


@dataclass(frozen=True, slots=True)
class Kept:
    """One tree a kept revision names: where it comes from (for messages) and its top."""

    where: str
    kind: str
    oid: Oid
    nfiles: int
    size: int | None = None  # a file target's size (fsck compares it)
    path: str = ""  # the target's work-tree path


class UnreadableError(DatavcError):
    """A kept tree cannot be read completely: nothing may be deleted (exit 1)."""


@dataclass
class Sweep:
    """What a sweep deletes (or, dry, would delete): ids with their sizes, and how many
    unreferenced objects the grace period kept."""

    doomed: list[tuple[Oid, int]] = field(default_factory=list)
    recent: int = 0
    kept: int = 0
    packed: list[tuple[Oid, int]] = field(default_factory=list)  # doomed objects in packs
    packs: list[str] = field(default_factory=list)  # packs deleted whole (or half packs)
    repack: list[tuple[str, list[tuple[bytes, int, int]], int]] = field(default_factory=list)
    """packs rewritten with only their live objects: (name, [(digest, offset, size)],
    how many dead ones they hold)"""

    @property
    def nbytes(self) -> int:
        return sum(size for _, size in self.doomed) + sum(size for _, size in self.packed)

    @property
    def count(self) -> int:
        return len(self.doomed) + len(self.packed)


def mark(store: ObjectStore, kept: Iterable[Kept],
         read: Callable[[Oid], bytes] | None = None) -> set[bytes]:
    """The digests of every object the kept trees name. ``read`` gives a listing's verified
    bytes (default: from the cache). Raises UnreadableError naming the first tree that
    cannot be read whole."""
    read = read or store.read_bytes
    live: set[bytes] = set()
    listings: set[bytes] = set()
    for k in kept:
        live.add(k.oid.digest)
        if k.kind != listing.DIR or k.oid.digest in listings:
            continue
        budget = Budget.for_pointer(k.nfiles)
        level = [k.oid]
        for _depth in range(MAX_DEPTH + 2):
            level = [o for o in level if o.digest not in listings]
            if not level:
                break
            for oid in level:
                listings.add(oid.digest)
            nxt: list[Oid] = []
            for oid in level:
                try:
                    budget.spend(oid)
                    entries = listing.decode(read(oid), where=str(oid))
                except DatavcError as exc:
                    raise UnreadableError(
                        f"cannot read the tree of {k.where}: {exc.message}",
                        hint="nothing was deleted. Fetch the missing data (`datavc fetch` "
                             "with the same scope), or narrow the scope") from None
                for e in entries:
                    live.add(e.oid.digest)
                    if e.kind == listing.DIR:
                        nxt.append(e.oid)
            level = nxt
        else:
            raise UnreadableError(f"the tree of {k.where} is nested deeper than {MAX_DEPTH}")
    return live


def plan(store: ObjectStore, live: set[bytes], *, grace: float = DEFAULT_GRACE,
         now: float | None = None) -> Sweep:
    """The cache objects not in ``live`` and older than ``grace`` seconds."""
    now = time.time() if now is None else now
    out = Sweep()
    try:
        prefixes = sorted(os.listdir(store.objects_dir))
    except FileNotFoundError:
        return out
    for prefix in prefixes:
        sub = os.path.join(store.objects_dir, prefix)
        if len(prefix) != FANOUT:
            continue
        try:
            entries = list(os.scandir(sub))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            try:
                digest = bytes.fromhex(prefix + entry.name)
            except ValueError:
                continue  # not an object name: never touched
            if len(digest) != 16:
                continue
            if digest in live:
                out.kept += 1
                continue
            st = entry.stat(follow_symlinks=False)
            if now - max(st.st_mtime, st.st_ctime) < grace:
                out.recent += 1
                continue
            out.doomed.append((Oid(digest), st.st_size))
    _plan_packs(store, live, now - grace, out)
    return out


def _plan_packs(store: ObjectStore, live: set[bytes], before: float, out: Sweep) -> None:
    """Packs stored before ``before``: deleted whole when nothing in them is live,
    rewritten with their live objects when some are dead. Younger packs stay whole; so does
    a pack whose index is damaged (its objects cannot be told apart). A half pack (one file
    of the two, left by an interrupted add or gc) goes once it is old."""
    for info in store.scan_packs():
        if info.entries is None:
            if info.problem != pack.DAMAGED and info.stored < before:
                out.packs.append(info.name)
            continue
        objects = list(info.objects())
        dead = [(d, o, n) for d, o, n in objects if d not in live]
        out.kept += len(objects) - len(dead)
        if not dead:
            continue
        if info.stored >= before:
            out.recent += len(dead)
            continue
        out.packed.extend((Oid(d), n) for d, _, n in dead)
        if len(dead) == len(objects):
            out.packs.append(info.name)
        else:
            out.repack.append((info.name, [(d, o, n) for d, o, n in objects if d in live],
                               len(dead)))


def sweep_packs(store: ObjectStore, plan_: Sweep) -> int:
    """Rewrite and delete the packs of ``plan_``; the count of objects deleted. The new
    packs are durable and named before an old one goes (barrier, rename, barrier); an old
    pack goes index first, so no reader ever counts half a pack. A pack to rewrite whose
    live objects do not all read back as their ids is left as it is (fsck reports it)."""
    deleted = len(plan_.packed)
    gone = list(plan_.packs)
    for name, keep, ndead in plan_.repack:
        objects = _read_live(store, name, keep)
        if objects is None:
            deleted -= ndead
            continue
        stem = write_pack(store.tmp_dir, objects)
        store.pending_packs[stem] = [d for d, _ in objects]
        gone.append(name)
    store.publish()
    crash.point("gc-repacked")
    for name in gone:
        store.delete_pack(name)
    store.reload_packs()
    return deleted


def _read_live(store: ObjectStore, name: str, keep: list[tuple[bytes, int, int]]
               ) -> list[tuple[bytes, bytes]] | None:
    path = store.pack_path(name)
    try:
        return read_pack_objects(path, keep)
    except OSError as exc:
        raise from_oserror(exc, path, "read pack") from exc


def sweep(store: ObjectStore, doomed: list[tuple[Oid, int]]) -> int:
    """Delete ``doomed`` from the cache; the count deleted (an already absent one is not
    an error)."""
    crash.point("gc-marked")
    n = 0
    for oid, _ in doomed:
        path = object_path(store.objects_dir, oid.digest)
        try:
            os.unlink(path)
            n += 1
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise from_oserror(exc, path, "delete object") from exc
    return n
