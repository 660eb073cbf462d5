"""Moving objects between the cache and a remote: :func:`push` and :func:`fetch`.

Only what is missing moves: push asks the remote (never a local belief) which ids it lacks,
in batches; fetch asks the cache. Transfers run on a bounded thread pool (the remote's
methods are thread-safe; the work is network and disk bound).

Order (RELIABILITY.md §2): push uploads every file object before the listings that name
them, and listings deepest first, so a remote never holds a listing whose objects it lacks;
a listing whose subtree cannot be completed (an object missing from the cache) is not pushed
at all. Fetch re-hashes every download before it is staged (:meth:`ObjectStore.receive`),
retries a mismatch once, and publishes what it got with one pair of sync barriers.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, TypeVar

import xxhash

from . import crash, fsutil, listing, pack, parallel
from .errors import (
    IntegrityError,
    InvalidInputError,
    ObjectMissingError,
    from_oserror,
)
from .hashing import Oid
from .objects import ObjectStore
from .remote_base import Collect, Remote, remote_oserror
from .remote_local import LocalRemote
from .report import Reporter
from .tree import MAX_DEPTH, Budget

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Root:
    """One tree to transfer: a pointer's kind, id and file count; with ``path``, only the
    subtree at that relative path below it (plus the listings on the way down)."""

    kind: str
    oid: Oid
    nfiles: int
    path: tuple[str, ...] = ()


def _descend(root: Root, read: Callable[[Oid], bytes | None],
             on_way: Callable[[Oid], object]) -> Root | None:
    """The Root of the subtree at ``root.path``, reading the listings on the way with
    ``read`` (None: unavailable) and passing each to ``on_way``; None when nothing is
    there (or a listing on the way is unavailable)."""
    node = Root(root.kind, root.oid, root.nfiles)
    budget = Budget.for_pointer(root.nfiles)
    for name in root.path:
        if node.kind != listing.DIR:
            return None
        budget.spend(node.oid)
        on_way(node.oid)
        data = read(node.oid)
        if data is None:
            return None
        entry = next((e for e in listing.decode(data, where=str(node.oid)) if e.name == name),
                     None)
        if entry is None:
            return None
        node = Root(entry.kind, entry.oid, entry.nfiles)
    return node


@dataclass
class Transfer:
    """What one push or fetch did. ``missing``: ids that could not be moved (push: not in
    the cache; fetch: not on the remote); ``corrupt``: downloads that did not match their id
    twice (fetch) — neither ever enters the destination. Thread-safe counting."""

    transferred: int = 0
    nbytes: int = 0
    present: int = 0
    missing: list[Oid] = field(default_factory=list)
    corrupt: list[Oid] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def moved(self, size: int) -> None:
        with self._lock:
            self.transferred += 1
            self.nbytes += size

    def lost(self, oid: Oid, *, corrupt: bool = False) -> None:
        with self._lock:
            (self.corrupt if corrupt else self.missing).append(oid)

    def merge(self, other: Transfer) -> None:
        """Count ``other`` (a second transfer of the same command) in this one."""
        with self._lock:
            self.transferred += other.transferred
            self.nbytes += other.nbytes
            self.present += other.present
            self.missing += other.missing
            self.corrupt += other.corrupt

    def to_dict(self) -> dict[str, object]:
        return {"transferred": self.transferred, "bytes": self.nbytes, "present": self.present,
                "missing": sorted(str(o) for o in self.missing),
                "corrupt": sorted(str(o) for o in self.corrupt)}


@dataclass
class _Tree:
    """The objects of some trees: files, and listings by depth with their children."""

    files: set[Oid] = field(default_factory=set)
    listings: dict[Oid, int] = field(default_factory=dict)  # every listing seen
    kids: dict[Oid, list[Oid]] = field(default_factory=dict)  # listing -> named objects
    unknown: set[Oid] = field(default_factory=set)  # listings that could not be read


def _run(jobs: int, fn: Callable[[T], object], items: Iterable[T]) -> None:
    """``fn`` over ``items`` on ``jobs`` threads; the first exception cancels the rest and
    is raised once the running calls are done."""
    items = list(items)
    if not items:
        return
    if jobs <= 1 or len(items) == 1:
        for item in items:
            fn(item)
        return
    parallel.return_big_buffers()  # threads moving MiB-sized pieces: no per-thread hoard
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="datavc-transfer") as pool:
        futures: list[Future[object]] = [pool.submit(fn, item) for item in items]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for fut in done:
            exc = fut.exception()
            if exc is not None:
                for other in futures:
                    other.cancel()
                raise exc


# ------------------------------------------------------------------ push

def push(store: ObjectStore, remote: Remote, roots: list[Root], *, jobs: int,
         reporter: Reporter) -> Transfer:
    """Upload every object of ``roots`` that the remote lacks: files first, then listings,
    each only once everything it names is on the remote (so deepest first). A listing whose
    subtree cannot be completed stays local; the objects in the way are ``missing``."""
    out = Transfer()
    tree = _Tree()
    for root in roots:
        # a sub-path pushes its subtree only: the listings above it name more than it
        sub = _descend(root, lambda oid: _cached(store, oid), lambda oid: None)
        if sub is not None:
            _walk_local(store, sub, tree)
    wanted = tree.files | set(tree.listings)
    absent = remote.missing(wanted) if wanted else set()
    out.present = len(wanted) - len(absent)
    local = store.present(absent)
    out.missing = sorted((absent - local) | tree.unknown, key=str)
    files = sorted(absent & tree.files & local, key=str)
    sizes = {oid: store.size_of(oid) for oid in absent & local}
    reporter.begin(f"Pushing to {remote.describe()}", len(absent & local),
                   sum(sizes.values()))

    src: dict[Oid, str] = {}  # the file each object is uploaded from
    extracted = contextlib.ExitStack()

    def put(oid: Oid) -> None:
        crash.point("remote-put-before")
        remote.put(oid, src[oid], sizes[oid])
        crash.point("remote-put-after")
        out.moved(sizes[oid])
        reporter.advance(1, sizes[oid])

    def put_all(oids: list[Oid]) -> None:
        small = [o for o in oids if sizes[o] <= pack.SMALL]
        if remote.packing and len(small) >= pack.MIN_OBJECTS:
            _put_packed(store, remote, small, sizes, out, reporter, jobs)
            oids = [o for o in oids if sizes[o] > pack.SMALL]
        src.update(_sources(store, oids, extracted))
        if isinstance(remote, LocalRemote) and len(oids) >= parallel.MIN_FILES_FOR_POOL:
            _put_local(store, remote, oids, src, sizes, out, reporter)
        elif isinstance(remote, LocalRemote):
            # a disk, not a network: a few threads keep it busy (as copy_objects does), and
            # each holds a copy buffer of up to 4 MiB (a mixed push peaked at 100 MB, now 51)
            _batched(remote, lambda: _run(min(jobs, parallel.MAX_THREADS), put, oids))
        else:
            _batched(remote, lambda: _run(jobs, put, oids))

    try:
        put_all(files)
        on_remote = (wanted - absent) | set(files)
        pending = {o for o in tree.listings if o in absent and o in local}
        while pending:  # one round per level of the tree, bottom up
            ready = sorted((o for o in pending
                            if all(k in on_remote for k in tree.kids.get(o, ()))), key=str)
            if not ready:
                break  # the rest name something that is not on the remote
            put_all(ready)
            on_remote.update(ready)
            pending.difference_update(ready)
    finally:
        reporter.end()
        extracted.close()
    return out


def _sources(store: ObjectStore, oids: list[Oid], stack: contextlib.ExitStack
             ) -> dict[Oid, str]:
    """The file to upload each of ``oids`` from: the loose object, or for one found only
    in a cache pack, a verified copy in a private temp directory (``stack`` removes it)."""
    return store.extract(oids, lambda: stack.enter_context(store.private_tmp()))


def _put_local(store: ObjectStore, remote: LocalRemote, oids: list[Oid], src: dict[Oid, str],
               sizes: dict[Oid, int], out: Transfer, reporter: Reporter) -> None:
    """Many objects to a directory remote: it is a store on this machine with the cache's
    layout, so :func:`datavc.parallel.copy_objects` copies and verifies them as ``add``
    stores files (worker processes for small objects, whose per-file work holds the GIL;
    threads for big ones), then one publish makes them durable and visible together
    (barrier, renames, barrier), as a batch of puts would."""
    remote.prepare()
    results = parallel.copy_objects([(src[o], o.digest) for o in oids],
                                    remote.objects_dir, remote.tmp_dir,
                                    sum(sizes[o] for o in oids),
                                    jobs=parallel.default_jobs(), progress=reporter.advance)
    dest = ObjectStore(remote.root)
    dest.pending = [r.tmp for r in results if r.tmp]
    bad = [(o, r.error) for o, r in zip(oids, results, strict=True) if r.error]
    try:
        if bad:
            _refuse(remote, *bad[0])
        try:
            parallel.publish(dest, jobs=parallel.default_jobs())
        except OSError as exc:
            raise remote_oserror(exc, remote.objects_dir, "write objects") from None
    finally:
        for tmp in dest.pending:  # left only when nothing was published
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    for r in results:
        out.moved(r.size)


def _refuse(remote: Remote, oid: Oid, error: str | None) -> None:
    """Stop a push at a cache object that could not be read as its id."""
    if error == "corrupt":
        raise IntegrityError(f"cache object {oid} does not hold its id: not uploaded "
                             f"to {remote.describe()}",
                             hint="run `datavc fsck` to find and repair corrupt cache objects")
    raise ObjectMissingError(f"cache object {oid} disappeared during the push",
                             hint="run the command again")


def _put_packed(store: ObjectStore, remote: Remote, oids: list[Oid], sizes: dict[Oid, int],
                out: Transfer, reporter: Reporter, jobs: int) -> None:
    """Many small objects as packs (:mod:`datavc.pack`): a few files or requests instead
    of one per object. The packs are written from the cache, each object verified as it is
    read, by worker processes: into the remote's ``tmp/`` for a directory remote, which then
    renames them into place; for S3 into a private directory of the cache's ``tmp/`` (push
    runs without the lock), uploaded from there."""
    if isinstance(remote, LocalRemote):
        remote.prepare()
        _put_packs_from(store, remote, remote.tmp_dir, oids, sizes, out, reporter, jobs)
        return
    with store.private_tmp() as tmp_dir:
        _put_packs_from(store, remote, tmp_dir, oids, sizes, out, reporter, jobs)


def _put_packs_from(store: ObjectStore, remote: Remote, tmp_dir: str, oids: list[Oid],
                    sizes: dict[Oid, int], out: Transfer, reporter: Reporter,
                    jobs: int) -> None:
    local = isinstance(remote, LocalRemote)
    located = store.locate(o.digest for o in oids)

    def item(digest: bytes, size: int) -> tuple[str, int, bytes, int]:
        at = located.get(digest)  # in a cache pack, or a loose object (offset -1)
        if at is None:
            return store.path(Oid(digest)), -1, digest, size
        return store.pack_path(at.pack), at.offset, digest, size

    groups = [[item(d, n) for d, n in g]
              for g in pack.groups(sorted((o.digest, sizes[o]) for o in oids))]
    built = parallel.build_packs(groups, tmp_dir, jobs=parallel.default_jobs(),
                                 progress=reporter.advance if local else None)
    try:
        for b in built:
            if b.problems:
                _refuse(remote, Oid(b.problems[0][0]), b.problems[0][1])
        ready = [(b.tmp, pack.encode_index(b.digest, b.entries), b) for b in built if b.tmp]
        if local:
            remote.put_packs([(tmp, index) for tmp, index, _ in ready])
        else:
            def put(item: tuple[str, bytes, parallel.Built]) -> None:
                remote.put_packs([item[:2]])
                reporter.advance(len(item[2].entries), item[2].size)

            _run(jobs, put, ready)
    finally:
        for b in built:
            if b.tmp:
                with contextlib.suppress(OSError):
                    os.unlink(b.tmp)
    for b in built:
        for _, size in b.entries:
            out.moved(size)


def _batched(remote: Remote, work: Callable[[], object]) -> None:
    """``work`` (puts) inside one remote batch: its objects become durable and visible
    together when it succeeds, and none of those not yet visible do when it fails. Each
    batch ends before the next level's listings are put, so objects stay before the
    listings that name them."""
    remote.begin_batch()
    try:
        work()
    except BaseException:
        remote.end_batch(commit=False)
        raise
    remote.end_batch(commit=True)


def _cached(store: ObjectStore, oid: Oid) -> bytes | None:
    try:
        return store.read_bytes(oid)
    except ObjectMissingError:
        return None


def object_ids(store: ObjectStore, root: Root,
               read: Callable[[Oid], bytes] | None = None) -> tuple[set[Oid], int]:
    """Every id ``root`` names, as far as its listings can be read (``read``: verified
    listing bytes, ObjectMissingError when absent; default: from the cache), and how many
    listings could not be read (nothing below them is known)."""
    tree = _Tree()
    _walk_local(store, root, tree, read)
    return tree.files | set(tree.listings), len(tree.unknown)


def complete(store: ObjectStore, root: Root) -> bool:
    """Whether the cache holds every object of ``root``: its listings and their files."""
    tree = _Tree()
    _walk_local(store, root, tree)
    wanted = tree.files | set(tree.listings)
    return not tree.unknown and len(store.present(wanted)) == len(wanted)


def _walk_local(store: ObjectStore, root: Root, tree: _Tree,
                read: Callable[[Oid], bytes] | None = None) -> None:
    """Collect the objects of ``root``, reading listings with ``read`` (default: from the
    cache); unreadable listings go to ``tree.unknown`` (their subtrees cannot be pushed)."""
    read = read or store.read_bytes
    if root.kind == listing.FILE:
        tree.files.add(root.oid)
        return
    budget = Budget.for_pointer(root.nfiles)
    level = [root.oid]
    for _depth in range(MAX_DEPTH + 2):
        if not level:
            return
        nxt: list[Oid] = []
        for oid in level:
            if oid in tree.listings:
                continue
            tree.listings[oid] = 1
            budget.spend(oid)
            try:
                entries = listing.decode(read(oid), where=str(oid))
            except ObjectMissingError:
                tree.unknown.add(oid)
                continue
            tree.kids[oid] = [e.oid for e in entries]
            for e in entries:
                if e.kind == listing.DIR:
                    nxt.append(e.oid)
                else:
                    tree.files.add(e.oid)
        level = nxt
    raise InvalidInputError(f"the tree of {root.oid} is nested deeper than {MAX_DEPTH} levels")


# ----------------------------------------------------------------- fetch

def fetch(store: ObjectStore, remote: Remote, roots: list[Root], *, jobs: int,
          reporter: Reporter) -> Transfer:
    """Download every object of ``roots`` that the cache lacks, verified, and stage it (the
    caller publishes). Listings are fetched level by level to learn what they name."""
    out = Transfer()
    files: dict[Oid, int] = {}  # id -> size as the listings say (for progress and planning)
    for top in roots:
        root = _descend(top, lambda oid: _listing_bytes(store, remote, oid, out),
                        lambda oid: None)
        if root is None:
            continue
        if root.kind == listing.FILE:
            files.setdefault(root.oid, 0)
        else:
            files.update(_fetch_listings(store, remote, root, jobs, out))
    need = sorted(files.keys() - store.present(files), key=str)
    out.present += len(files) - len(need)
    total = sum(files[o] for o in need)
    reporter.begin(f"Fetching from {remote.describe()}", len(need), total)
    tries: dict[Oid, int] = {}
    try:
        located = remote.locate(need) if need else {}
        loose = [o for o in need if o not in located]
        alone = list(located)  # a few packed objects: ranged reads one by one
        if len(located) >= pack.MIN_OBJECTS:
            # arrived corrupt once (or the pack was gone): one more try, one by one
            tries = dict.fromkeys(_get_packed(store, remote, located, out, reporter, jobs), 1)
            alone = []
        if isinstance(remote, LocalRemote) and len(loose) >= parallel.MIN_FILES_FOR_POOL:
            more = _get_local(store, remote, loose, sum(files[o] for o in loose), out,
                              reporter)
            tries.update(dict.fromkeys(more, 1))  # arrived corrupt once: one more try
            loose = []
        _run(jobs, lambda oid: _download(store, remote, oid, out, reporter,
                                         tries=tries.get(oid, 2)), [*loose, *alone, *tries])
    finally:
        reporter.end()
    return out


def _fetch_listings(store: ObjectStore, remote: Remote, root: Root, jobs: int,
                    out: Transfer) -> dict[Oid, int]:
    budget = Budget.for_pointer(root.nfiles)
    files: dict[Oid, int] = {}
    seen: set[Oid] = set()
    level = [root.oid]
    for _depth in range(MAX_DEPTH + 2):
        level = [o for o in dict.fromkeys(level) if o not in seen]
        if not level:
            return files
        seen.update(level)
        for oid in level:
            budget.spend(oid)
        got: dict[Oid, bytes | None] = {}

        def one(oid: Oid, got: dict[Oid, bytes | None] = got) -> None:
            got[oid] = _listing_bytes(store, remote, oid, out)

        _run(jobs, one, level)
        nxt: list[Oid] = []
        for oid in level:
            data = got.get(oid)
            if data is None:
                continue
            for e in listing.decode(data, where=str(oid)):
                if e.kind == listing.DIR:
                    nxt.append(e.oid)
                else:
                    files[e.oid] = e.size
        level = nxt
    raise InvalidInputError(f"the tree of {root.oid} is nested deeper than {MAX_DEPTH} levels")


def _listing_bytes(store: ObjectStore, remote: Remote, oid: Oid,
                   out: Transfer) -> bytes | None:
    """A listing's verified bytes, from the cache or else downloaded (and staged)."""
    if store.has(oid):
        return store.read_bytes(oid)
    keep: list[bytes] = []
    if not _download(store, remote, oid, out, None, keep=keep):
        return None
    return b"".join(keep)


class _Tee:
    """Passes downloaded bytes on to the staging sink, keeping a copy when asked."""

    def __init__(self, sink: Any, keep: list[bytes] | None) -> None:
        self.sink, self.keep = sink, keep

    def write(self, data: bytes, /) -> object:
        if self.keep is not None:
            self.keep.append(bytes(data))
        return self.sink.write(data)


def _get_local(store: ObjectStore, remote: LocalRemote, oids: list[Oid], total_bytes: int,
               out: Transfer, reporter: Reporter) -> list[Oid]:
    """Many objects from a directory remote, copied and verified as in :func:`_put_local`
    and staged in the cache; returns those that arrived corrupt, for one more try."""
    results = parallel.copy_objects([(remote.path_of(o), o.digest) for o in oids],
                                    store.objects_dir, store.tmp_dir, total_bytes,
                                    jobs=parallel.default_jobs(), progress=reporter.advance)
    again = []
    for oid, r in zip(oids, results, strict=True):
        if r.error == "missing":
            out.lost(oid)
        elif r.error == "corrupt":
            again.append(oid)
        else:
            if r.tmp:
                store.pending.append(r.tmp)
            out.moved(r.size)
    return again


ROUND = 256 << 20
"""Bytes of pack ranges an S3 fetch downloads (into temp files) before cutting them up."""


def _get_packed(store: ObjectStore, remote: Remote, located: dict[Oid, pack.Packed],
                out: Transfer, reporter: Reporter, jobs: int) -> list[Oid]:
    """Fetch packed objects by ranged reads of their packs (nearby objects in one read),
    then cut each object out, verify it and stage it in the cache, in worker processes
    (:func:`datavc.parallel.unpack_objects`). A directory remote's packs are read in place;
    S3 ranges are downloaded into temp files in the cache's ``tmp/`` first, a round of at
    most ROUND bytes at a time. Returns the objects that arrived damaged or whose pack was
    gone, for one more try one by one."""
    by_digest = {o.digest: o for o in located}
    local = isinstance(remote, LocalRemote)
    rounds: list[list[pack.Read]] = [[]]
    held = 0
    for r in pack.plan_reads(located):
        if rounds[-1] and held + r.length > ROUND and not local:
            rounds.append([])
            held = 0
        rounds[-1].append(r)
        held += r.length
    again: list[Oid] = []
    for reads in rounds:
        temps: list[str] = []
        try:
            if isinstance(remote, LocalRemote):
                items = [(remote.pack_path(r.pack), r.start + off, n, d)
                         for r in reads for d, off, n in r.objects]
            else:
                temps = [os.path.join(store.tmp_dir, f"range-{fsutil.tmp_name()}")
                         for _ in reads]
                _run(jobs, lambda job: _download_range(remote, *job),
                     list(zip(reads, temps, strict=True)))
                items = [(tmp, off, n, d) for r, tmp in zip(reads, temps, strict=True)
                         for d, off, n in r.objects]
            results = parallel.unpack_objects(items, store.objects_dir, store.tmp_dir,
                                              sum(n for _, _, n, _ in items),
                                              jobs=parallel.default_jobs(),
                                              progress=reporter.advance)
        finally:
            for tmp in temps:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        for (_, _, _, digest), got in zip(items, results, strict=True):
            if got.error:
                again.append(by_digest[digest])
                continue
            if got.tmp:
                store.pending.append(got.tmp)
            out.moved(got.size)
    return again


def _download_range(remote: Remote, read: pack.Read, tmp: str) -> None:
    """One ranged read of a pack into a new file ``tmp``; a pack that is gone leaves no
    file (its objects then count as missing and are tried one by one)."""
    try:
        with open(tmp, "xb") as f:
            remote.read_range(read.pack, read.start, read.length, f)
    except ObjectMissingError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    except OSError as exc:
        raise from_oserror(exc, tmp, "write") from None


def _download(store: ObjectStore, remote: Remote, oid: Oid, out: Transfer,
              reporter: Reporter | None, keep: list[bytes] | None = None,
              tries: int = 2) -> bool:
    """Download, verify and stage one object, retrying once on a mismatch (``tries``
    attempts in all). False when the object is missing on the remote or arrived corrupt
    every time (recorded in ``out``)."""
    for attempt in range(1, tries + 1):
        got: list[bytes] | None = [] if keep is not None else None

        def fill(sink: Any, got: list[bytes] | None = got) -> None:
            remote.get(oid, _Tee(sink, got))

        try:
            size = store.receive(oid, fill)
        except ObjectMissingError:
            out.lost(oid)
            return False
        except IntegrityError:
            if attempt == tries:
                out.lost(oid, corrupt=True)
                return False
            continue
        if keep is not None and got is not None:
            keep.extend(got)
        out.moved(size)
        if reporter is not None:
            reporter.advance(1, size)
        return True
    return False


def read_remote_listing(remote: Remote, oid: Oid, *, limit: int = 64 << 20) -> bytes:
    """A listing's bytes straight from the remote, verified, not stored (for read-only
    walks such as ``check``): ObjectMissingError when absent, IntegrityError on mismatch."""
    got = Collect(limit, lambda: InvalidInputError(
        "a listing on the remote is larger than listings may be"))
    remote.get(oid, got)
    data = b"".join(got.parts)
    if xxhash.xxh3_128_digest(data) != oid.digest:
        raise IntegrityError(f"listing {oid} on the remote does not match its id")
    return data
