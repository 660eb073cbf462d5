"""Running per-file work in worker processes.

Per-file Python work holds the GIL, so small-file hashing and checkout scale with
processes, not threads. Work is sent as chunks to a fork-started pool; results come back in
order. Few or small inputs stay in this process: a pool costs more than it saves there.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, TypeVar

import xxhash

from . import crash, fsutil, lock, pack
from .errors import DatavcError, from_oserror
from .objects import (
    ObjectStore,
    Stored,
    discard_pack,
    object_path,
    open_for_read,
    read_pack_objects,
    rename_into_place,
    store_fd,
    write_pack,
    write_tmp,
)

MIN_FILES_FOR_POOL = 512
START_METHOD = "forkserver"  # workers start clean: no copy of the parent's 100k-file heap
# (fork made every worker's RSS count it: 470 MB summed for a 100k-file add, 250 MB now),
# and they inherit no fd but their pipes
MIN_BYTES_FOR_POOL = 256 << 20
T = TypeVar("T")
Progress = Callable[[int, int], None]


def default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def run_chunks(fn: Callable[..., list[T]], chunks: Sequence[tuple[Any, ...]], *, jobs: int,
               pool: bool, measure: Callable[[list[T]], tuple[int, int]],
               progress: Progress | None = None, threads: bool = False) -> list[T]:
    """``fn(*chunk)`` for every chunk, in worker processes when ``pool``, else on up to
    ``min(jobs, MAX_THREADS)`` threads when ``threads``, else here; results in order."""

    def collect(parts: Iterable[list[T]]) -> list[T]:
        results: list[T] = []
        for part in parts:
            results.extend(part)
            if progress:
                progress(*measure(part))
        return results

    if not pool and threads and jobs > 1 and len(chunks) > 1:
        from concurrent.futures import ThreadPoolExecutor

        return_big_buffers()  # threads each reading objects of up to MiBs: no per-thread hoard

        # big files keep the disk busy with a few threads; each chunk may hold PREFETCH
        # descriptors and OPENERS threads of its own, all in this one process
        with ThreadPoolExecutor(min(jobs, MAX_THREADS)) as threaded:
            try:
                return collect(threaded.map(lambda chunk: fn(*chunk), chunks))
            except BaseException:  # an error or Ctrl-C: the chunks not started never run
                threaded.shutdown(wait=True, cancel_futures=True)
                raise
    if not pool or jobs <= 1 or len(chunks) < 2:
        return collect(fn(*chunk) for chunk in chunks)
    from concurrent.futures.process import BrokenProcessPool

    with _process_pool(jobs) as executor:
        futures = [executor.submit(fn, *chunk) for chunk in chunks]
        try:
            return collect(fut.result() for fut in futures)
        except BrokenProcessPool:
            raise _worker_died() from None
        except BaseException:
            executor.shutdown(wait=False, cancel_futures=True)
            raise


def _process_pool(jobs: int) -> Any:
    """A ``ProcessPoolExecutor`` of ``jobs`` workers set up by :func:`_worker_signals`."""
    import multiprocessing  # here: a command that runs no pool does not pay for them
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context(START_METHOD)
    if START_METHOD == "forkserver":
        ctx.set_forkserver_preload(["datavc.parallel", "datavc.workspace"])
    return ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_signals,
                               initargs=(os.getpid(),))


def _worker_died() -> DatavcError:
    return DatavcError("a worker process died unexpectedly (out of memory or killed?)",
                       hint="run the command again; `[cache] jobs = 1` in "
                            ".datavc/config.toml uses less memory")


def _worker_signals(owner: int) -> None:
    """Set up a worker: no inherited lock, Ctrl-C left to the parent (which cancels the rest
    and exits 130), and death with the datavc process that started the pool (``owner``),
    so a kill -9 leaves no orphan behind.

    A worker's parent is the fork server, not ``owner``; and the fork server lives on while
    any worker holds its pipe. So each worker watches ``owner`` itself (a pidfd, readable
    once the process has ended) and exits when it does; the fork server then follows."""
    parent = os.getppid()
    lock.close_inherited()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    fsutil.die_with_parent()
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)
    import threading

    threading.Thread(target=_exit_with, args=(owner,), daemon=True,
                     name="datavc-owner-watch").start()


def _exit_with(owner: int) -> None:
    """Block until process ``owner`` has ended, then end this one."""
    try:
        import select

        watch = select.poll()
        watch.register(os.pidfd_open(owner), select.POLLIN)
        while not watch.poll():  # readable once the owner has ended
            pass
    except (AttributeError, OSError):  # no pidfd here: look once a second
        import time

        while True:
            try:
                os.kill(owner, 0)
            except OSError:  # gone (or the pid now belongs to another user's process)
                break
            time.sleep(1)
    os._exit(1)


MIN_MEAN_FOR_THREADS = 64 << 10
MAX_THREADS = 4  # chunks at once on threads: 4 x 64 prefetched fds stay far below 1024


def processes_or_threads(count: int, total_bytes: int) -> tuple[bool, bool]:
    """``(pool, threads)`` for ``run_chunks`` over ``count`` files of ``total_bytes``.

    Processes when there are many files and they are small on average: the per-file Python
    work, which holds the GIL, is then the cost. When they are big on average, the disk and
    the kernel's copy are the cost, and hashing and copying release the GIL: threads overlap
    them as well, without the memory of more interpreters (a 1 GiB push of 5,000 mixed files
    took 2.1 s and 102 MB summed over its processes, 2.4 s and 34 MB on one thread).
    """
    if count < MIN_FILES_FOR_POOL:
        return False, count > 1 and total_bytes >= MIN_BYTES_FOR_POOL
    if total_bytes >= count * MIN_MEAN_FOR_THREADS:
        return False, True
    return True, False


_MMAP_THRESHOLD = 128 << 10


def return_big_buffers() -> None:
    """Have glibc map every allocation of 128 KiB or more on its own and unmap it when freed.

    By default glibc raises that threshold each time such a block is freed, after which
    blocks of a few MiB come from its heaps; with many threads, each has its own heap and
    keeps what it once held. Sixteen threads streaming an S3 push of 1 GiB of mixed files
    held 257 MB that way, 104 MB with the threshold fixed. Elsewhere (no glibc), nothing.
    """
    with contextlib.suppress(Exception):
        fsutil.libc().mallopt(-3, _MMAP_THRESHOLD)  # M_MMAP_THRESHOLD


def split(items: Sequence[T], jobs: int, *, most: int = 1024) -> list[Sequence[T]]:
    size = chunk_size(len(items), jobs, most)
    return [items[i:i + size] for i in range(0, len(items), size)]


def chunk_size(count: int, jobs: int, most: int = 1024) -> int:
    """Items per chunk when ``count`` are shared among ``jobs`` workers: about eight chunks
    each (so a slow chunk does not hold the rest up), 16 to ``most``."""
    return max(16, min(most, count // (jobs * 8) or 1))


def hash_files(paths: list[str], *, store: ObjectStore | None, jobs: int,
               progress: Progress | None = None) -> list[Stored]:
    """Hash each path; with ``store``, also stage its content there (pending until
    :func:`publish`). Results in the order of ``paths``."""
    objects_dir = store.objects_dir if store else ""
    tmp_dir = store.tmp_dir if store else None
    # packs only while the cache's own reader will read them all (pack.MAX_PACKED)
    packing = store is not None and _may_pack(store, len(paths))
    chunks = [(list(c), objects_dir, tmp_dir, packing) for c in split(paths, jobs)]
    results = run_chunks(_hash_chunk, chunks, jobs=jobs, pool=worth_a_pool(paths),
                         measure=lambda part: (len(part), sum(r.size for r in part)),
                         progress=progress)
    if store is not None:
        _keep_staged(store, results)
    return results


def _keep_staged(store: ObjectStore, results: list[Stored]) -> None:
    """Record in ``store`` the temps and packs that hashing ``results`` staged. A temp of
    an object that the cache holds in a pack already is removed instead: workers look
    only for a loose copy, so a file hashed again (one that was racily new when it was
    added, say) would otherwise be stored a second time, loose."""
    packed = store.packed() if any(r.tmp for r in results) else None
    for i, r in enumerate(results):
        if not r.tmp:
            continue
        if packed is not None and r.digest in packed:
            with contextlib.suppress(OSError):
                os.unlink(r.tmp)
            results[i] = r._replace(tmp=None)
        else:
            store.pending.append(r.tmp)
    _keep_new_packs(store, results)


def _may_pack(store: ObjectStore, more: int) -> bool:
    """Whether ``more`` objects may go into packs: only while the cache's own reader will
    read them all (pack.MAX_PACKED), counting the packs staged in this operation too."""
    staged = sum(len(d) for d in store.pending_packs.values())
    return store.pack_small and (len(store.packed().where) + staged + more <= pack.MAX_PACKED)


class Prehash:
    """Hashing that starts while a walk is still listing directories (a first ``add``:
    the walk's inode reads and the workers' data reads then share the disk, and a cold
    100k-file add no longer waits for the whole walk before the first read).

    :meth:`feed` takes each directory's files, with their sizes, as the walk lists them;
    every PREHASH_CHUNK files or PREHASH_BYTES, worker processes get a chunk to hash and
    stage (as :func:`hash_files` does). :meth:`finish` sends what is left, split among the
    workers, and returns what was hashed, by absolute path, with everything staged recorded
    in the store as pending; when too little came for a pool to pay (:func:`pool_pays`)
    and none was started, it returns nothing and the caller hashes the files as usual.
    :meth:`abandon` (on any failure before ``finish``) stops the workers and removes
    whatever they staged."""

    def __init__(self, store: ObjectStore, jobs: int) -> None:
        self.store, self.jobs = store, jobs
        self.waiting: list[str] = []
        self.waiting_bytes = 0
        self.sent: list[tuple[list[str], Any]] = []  # (paths, future)
        self.count = 0  # files sent to the workers
        self.pool: Any = None

    def feed(self, files: list[tuple[str, int]]) -> None:
        for path, size in files:
            self.waiting.append(path)
            self.waiting_bytes += size
            if len(self.waiting) >= PREHASH_CHUNK or self.waiting_bytes >= PREHASH_BYTES:
                self._send(self.waiting)
                self.waiting, self.waiting_bytes = [], 0

    def _send(self, paths: list[str]) -> None:
        from concurrent.futures.process import BrokenProcessPool

        store = self.store
        if self.pool is None:
            self.pool = _process_pool(self.jobs)
        self.count += len(paths)
        packing = _may_pack(store, self.count)
        try:
            fut = self.pool.submit(_hash_chunk, paths, store.objects_dir, store.tmp_dir,
                                   packing)
        except BrokenProcessPool:  # a worker died (out of memory?) while the walk went on
            self.abandon()
            raise _worker_died() from None
        self.sent.append((paths, fut))

    def finish(self, progress: Progress | None = None) -> dict[str, Stored]:
        from concurrent.futures.process import BrokenProcessPool

        paths: list[str] = []
        results: list[Stored] = []
        try:
            fed = self.count + len(self.waiting)
            if self.pool is None and not pool_pays(fed, self.waiting_bytes):
                return {}
            # what is left, in chunks sized as :func:`split` sizes them for all the files
            # fed (so an add of a few hundred files is chunked, and packed, as before)
            size = chunk_size(fed, self.jobs, PREHASH_CHUNK)
            for i in range(0, len(self.waiting), size):
                self._send(self.waiting[i:i + size])
            self.waiting = []
            for sent, fut in self.sent:
                got = fut.result()
                paths += sent
                results += got
                if progress:
                    progress(len(got), sum(r.size for r in got))
        except BrokenProcessPool:
            self.abandon()
            raise _worker_died() from None
        except BaseException:
            self.abandon()
            raise
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None
        self.sent = []
        _keep_staged(self.store, results)  # drops the temps it removes from the results too
        return dict(zip(paths, results, strict=True))

    def abandon(self) -> None:
        """Stop the workers at once (a chunk they are on is not finished) and remove what
        finished chunks staged; nothing was recorded in the store. A chunk cut short leaves
        temps that the next command's clearing of the staging area removes (the repo lock
        is held until then)."""
        pool, self.pool = self.pool, None
        if pool is None:
            return
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            with contextlib.suppress(Exception):  # workers only ever write into tmp/
                proc.terminate()
        with contextlib.suppress(Exception):
            pool.shutdown(wait=True, cancel_futures=True)
        for _, fut in self.sent:
            if not fut.done() or fut.cancelled() or fut.exception() is not None:
                continue
            for r in fut.result():
                if r.pack:
                    discard_pack(r.pack)
                if r.tmp:
                    with contextlib.suppress(OSError):
                        os.unlink(r.tmp)
        self.sent = []


PREHASH_CHUNK = 1024
PREHASH_BYTES = 64 << 20  # a chunk of big files is closed sooner: every worker gets some


def _keep_new_packs(store: ObjectStore, results: list[Stored]) -> None:
    """Record the packs the workers wrote as pending in ``store``. One of which a quarter
    or more of the objects are in the cache's packs already (files touched but unchanged)
    is rewritten without them, or removed when that leaves nothing."""
    stems: dict[str, list[bytes]] = {}
    for r in results:
        if r.pack:
            stems.setdefault(r.pack, []).append(r.digest)
    if not stems:
        return
    where = store.packed().where
    for stem, digests in stems.items():
        new = [d for d in digests if d not in where]
        if (len(digests) - len(new)) * 4 >= len(digests) > len(new):
            # a quarter or more are packed already (files touched but unchanged): keep
            # only the others; fewer duplicates stay, rather than rewrite every pack
            if not new:
                discard_pack(stem)
                continue
            stem, digests = _repack_tmp(store.tmp_dir, stem, set(new)), new
        store.pending_packs[stem] = digests


def _repack_tmp(tmp_dir: str, stem: str, keep: set[bytes]) -> str:
    """A temp pack holding only the ``keep`` objects of temp pack ``stem`` (removed); its
    stem. The objects are verified again as they are copied."""
    try:
        with open(stem + pack.INDEX_SUFFIX, "rb") as f:
            _, info = pack.own_index(f.read(), 0.0)
        objects = read_pack_objects(stem + pack.PACK_SUFFIX,
                                    [p for p in info.objects() if p[0] in keep])
        if objects is None:
            raise DatavcError(f"a staged pack in '{tmp_dir}' changed on disk",
                              hint="check the disk, then run the command again")
        return write_pack(tmp_dir, objects)
    except OSError as exc:
        raise from_oserror(exc, tmp_dir, "store objects in") from exc
    finally:
        discard_pack(stem)


def worth_a_pool(paths: list[str]) -> bool:
    if len(paths) >= MIN_FILES_FOR_POOL:
        return True
    if len(paths) < 2:
        return False
    total = 0
    for p in paths:
        try:
            total += os.stat(p).st_size
        except OSError:
            return False
    return pool_pays(len(paths), total)


def pool_pays(count: int, nbytes: int) -> bool:
    """Whether worker processes pay for hashing ``count`` files of ``nbytes`` in all."""
    return count >= MIN_FILES_FOR_POOL or (count >= 2 and nbytes >= MIN_BYTES_FOR_POOL)


PREFETCH = 64


def _hash_chunk(paths: list[str], objects_dir: str, tmp_dir: str | None,
                packing: bool = False) -> list[Stored]:
    """Hash a chunk, asking the kernel to read ahead a batch of files at a time.

    Files are opened and announced with POSIX_FADV_WILLNEED in batches, so cold small-file
    reads are queued to the disk together instead of waiting one by one. With ``packing``,
    new small objects are written as packs (:class:`_Packer`) rather than one file each.
    """
    packer = (_Packer(tmp_dir) if packing and tmp_dir and len(paths) >= pack.MIN_OBJECTS
              else None)
    keep = packer.keep if packer else None
    out: list[Stored] = []
    try:
        for start in range(0, len(paths), PREFETCH):
            batch = paths[start:start + PREFETCH]
            fds: list[int] = []
            try:
                for p in batch:
                    fds.append(open_for_read(p))
                    with contextlib.suppress(OSError):
                        os.posix_fadvise(fds[-1], 0, 0, os.POSIX_FADV_WILLNEED)
                for p in batch:
                    out.append(store_fd(fds.pop(0), p, objects_dir, tmp_dir, keep))
            finally:
                for fd in fds:
                    os.close(fd)
        if packer is not None:
            out = packer.finish(out)
    except BaseException:
        if packer is not None:
            packer.discard()
        for r in out:  # loose temps this chunk wrote: no one else knows of them
            if r.tmp:
                with contextlib.suppress(OSError):
                    os.unlink(r.tmp)
        raise
    return out


class _Packer:
    """The new small objects of one chunk of an ``add``, written as packs of about
    ``pack.TARGET`` bytes: a few files instead of one per object (creating 100k files and
    renaming them into place was most of a 100k-file add). A chunk with fewer than
    ``pack.MIN_OBJECTS`` of them stores them loose after all."""

    def __init__(self, tmp_dir: str) -> None:
        self.tmp_dir = tmp_dir
        self.held: dict[bytes, bytes] = {}
        self.nbytes = 0
        self.packed: dict[bytes, str] = {}  # digest -> stem of the pack holding it
        self.stems: list[str] = []

    def keep(self, digest: bytes, data: bytes) -> None:
        if digest in self.held or digest in self.packed:
            return
        self.held[digest] = data
        self.nbytes += len(data)
        if self.nbytes >= pack.TARGET or len(self.held) >= pack.MOST_OBJECTS:
            self._flush()

    def _flush(self) -> None:
        try:
            stem = write_pack(self.tmp_dir, list(self.held.items()))
        except OSError as exc:
            raise from_oserror(exc, self.tmp_dir, "store objects in") from exc
        self.stems.append(stem)
        self.packed.update(dict.fromkeys(self.held, stem))
        self.held, self.nbytes = {}, 0

    def finish(self, out: list[Stored]) -> list[Stored]:
        """``out`` with each kept object's pack, or its loose temp when few were left."""
        loose: dict[bytes, str] = {}
        if len(self.held) >= pack.MIN_OBJECTS:
            self._flush()
        else:
            try:
                for digest, data in self.held.items():
                    loose[digest] = write_tmp(self.tmp_dir, digest, data)
            except OSError as exc:
                for tmp in loose.values():
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
                raise from_oserror(exc, self.tmp_dir, "store objects in") from exc
            self.held = {}
        done = set()
        for i, r in enumerate(out):
            if r.digest in done:
                continue
            if r.digest in self.packed:
                out[i] = r._replace(pack=self.packed[r.digest])
                done.add(r.digest)  # one result per object names its pack
            elif r.digest in loose:
                out[i] = r._replace(tmp=loose.pop(r.digest))
        return out

    def discard(self) -> None:
        for stem in self.stems:
            discard_pack(stem)


def publish(store: ObjectStore, *, jobs: int) -> None:
    """Make the store's pending objects and packs durable and give them their names.

    One sync barrier (their bytes are on disk), the renames (in threads when there are
    many), a second barrier (the names are on disk). Only then may a manifest name them.
    """
    if len(store.pending) < MIN_FILES_FOR_POOL or jobs <= 1:
        store.publish()
        return

    def rename(tmps: list[str]) -> None:
        chunks = [(store.objects_dir, list(c)) for c in split(tmps, jobs)]
        # a rename is a system call, which releases the GIL: threads do it as fast as
        # processes
        run_chunks(rename_into_place, chunks, jobs=jobs, pool=False, threads=True,
                   measure=lambda part: (0, 0))

    store.publish(rename)


class Copied(NamedTuple):
    """One object copied into a store by :func:`copy_objects`: its size and temp file, or
    ``error``: ``missing`` (no source file) or ``corrupt`` (the bytes are another id's)."""

    size: int
    tmp: str | None
    error: str | None = None


def copy_objects(items: list[tuple[str, bytes]], objects_dir: str, tmp_dir: str,
                 total_bytes: int, *, jobs: int,
                 progress: Progress | None = None) -> list[Copied]:
    """Copy each ``(path, digest)`` into the store at ``objects_dir``/``tmp_dir`` as a temp
    file (to be published by the caller), hashing as it goes, in worker processes or threads
    as :func:`processes_or_threads` picks for ``total_bytes`` (what the objects hold, as far
    as the caller knows): how a directory remote and the cache exchange objects. A copy whose
    bytes do not hash to ``digest`` is removed and reported ``corrupt``; a source that does
    not exist is ``missing``. Results in the order of ``items``."""
    chunks = [(list(c), objects_dir, tmp_dir) for c in split(items, jobs)]
    pool, threads = processes_or_threads(len(items), total_bytes)
    return run_chunks(_copy_chunk, chunks, jobs=jobs, pool=pool, threads=threads,
                      measure=lambda part: (len(part), sum(c.size for c in part)),
                      progress=progress)


def _copy_chunk(items: list[tuple[str, bytes]], objects_dir: str,
                tmp_dir: str) -> list[Copied]:
    """Copy a chunk: files are opened by a few threads at a time (an open of a file whose
    inode is not cached waits on the disk: in flight together, those waits overlap) and
    announced with POSIX_FADV_WILLNEED, then copied and hashed in order."""
    from concurrent.futures import ThreadPoolExecutor

    out: list[Copied] = []
    with ThreadPoolExecutor(OPENERS) as openers:
        for start in range(0, len(items), PREFETCH):
            batch = items[start:start + PREFETCH]
            fds = list(openers.map(_open_advised, [path for path, _ in batch]))
            try:
                for i, (path, digest) in enumerate(batch):
                    fd, fds[i] = fds[i], -1
                    if isinstance(fd, OSError):
                        raise from_oserror(fd, path, "read")
                    if fd < 0:
                        out.append(Copied(0, None, "missing"))
                        continue
                    got = store_fd(fd, path, objects_dir, tmp_dir)  # closes the fd
                    if got.digest != digest:
                        if got.tmp:
                            os.unlink(got.tmp)
                        out.append(Copied(got.size, None, "corrupt"))
                    else:
                        out.append(Copied(got.size, got.tmp))
            finally:
                for fd in fds:
                    if isinstance(fd, int) and fd >= 0:
                        os.close(fd)
    return out


OPENERS = 8


class Built(NamedTuple):
    """A pack written by :func:`build_packs`: its temp file, digest, size and index (the
    objects that made it in, in order), and the objects left out: ``(digest, error)``,
    error ``missing`` or ``corrupt`` as in :class:`Copied`."""

    tmp: str | None
    digest: bytes
    size: int
    entries: list[tuple[bytes, int]]
    problems: list[tuple[bytes, str]]


def build_packs(groups: list[list[tuple[str, int, bytes, int]]], tmp_dir: str, *, jobs: int,
                progress: Progress | None = None) -> list[Built]:
    """Write one pack per group of ``(path, offset, digest, size)`` (small cache objects:
    a loose object file with offset -1, or a place in a cache pack) into ``tmp_dir``,
    verifying each object as it is read: a pack never holds bytes that are not their id's.
    In worker processes when there are many objects (per-object work holds the GIL), or on
    threads when they are big on average (:func:`processes_or_threads`). Results in the
    order of ``groups``; the caller publishes or removes the temps."""
    chunks = [(g, tmp_dir) for g in groups]
    pool, threads = processes_or_threads(sum(len(g) for g in groups),
                                         sum(n for g in groups for _, _, _, n in g))
    return run_chunks(_pack_chunk, chunks, jobs=jobs, pool=pool, threads=threads,
                      measure=lambda part: (sum(len(b.entries) for b in part),
                                            sum(b.size for b in part)),
                      progress=progress)


def _pack_chunk(items: list[tuple[str, int, bytes, int]], tmp_dir: str) -> list[Built]:
    # objects of cache packs in the order they lie there: each pack read front to back,
    # one open at a time (a push touching 1,000 packs once ran out of descriptors); loose
    # object files (offset -1) first, in the order given (the sort is stable)
    items = sorted(items, key=lambda item: (item[1] >= 0, item[0] if item[1] >= 0 else "",
                                            item[1]))
    tmp = os.path.join(tmp_dir, f"pack-{fsutil.tmp_name()}")
    out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    hasher = xxhash.xxh3_128()
    entries: list[tuple[bytes, int]] = []
    problems: list[tuple[bytes, str]] = []
    buf: list[bytes] = []
    packs: dict[str, int | OSError] = {}  # cache packs read from, by path
    held = size = 0
    try:
        for start in range(0, len(items), PREFETCH):
            batch = items[start:start + PREFETCH]
            fds = [_open_advised(path) if offset < 0 else -2 for path, offset, _, _ in batch]
            try:
                for i, (path, offset, digest, want) in enumerate(batch):
                    fd, fds[i] = fds[i], -1
                    if offset >= 0:
                        data = _read_packed(packs, path, offset, want)
                    else:
                        data = _read_loose(fd, path, want)
                    if data is None:
                        problems.append((digest, "missing"))
                        continue
                    if len(data) != want or xxhash.xxh3_128_digest(data) != digest:
                        problems.append((digest, "corrupt"))
                        continue
                    hasher.update(data)
                    entries.append((digest, len(data)))
                    buf.append(data)
                    held += len(data)
                    size += len(data)
                    if held >= CHUNK_OUT:
                        fsutil.write_all(out, b"".join(buf))
                        buf, held = [], 0
            finally:
                for fd in fds:
                    if isinstance(fd, int) and fd >= 0:
                        os.close(fd)
        fsutil.write_all(out, b"".join(buf))
    except BaseException:
        os.close(out)
        os.unlink(tmp)
        raise
    finally:
        _close_all(packs)
    os.close(out)
    crash.point("pack-tmp-written")
    if not entries:
        os.unlink(tmp)
        return [Built(None, b"", 0, [], problems)]
    return [Built(tmp, hasher.digest(), size, entries, problems)]


def _read_loose(fd: int | OSError, path: str, want: int) -> bytes | None:
    """The bytes of an object file opened by :func:`_open_advised` (closed here)."""
    if isinstance(fd, OSError):
        raise from_oserror(fd, path, "read")
    if fd < 0:
        return None
    try:
        return os.read(fd, min(want, pack.MAX_OBJECT) + 1)
    except OSError as exc:
        raise from_oserror(exc, path, "read") from None
    finally:
        os.close(fd)


def _read_packed(fds: dict[str, int | OSError], path: str, offset: int,
                 size: int) -> bytes | None:
    """``size`` bytes at ``offset`` of pack ``path`` (its fd kept in ``fds``, with at most
    MAX_OPEN_PACKS others: callers read pack by pack)."""
    fd = fds.get(path)
    if fd is None:
        if len(fds) >= MAX_OPEN_PACKS:
            _close_all(fds)
        fd = fds[path] = _open_advised(path)
    if isinstance(fd, OSError):
        raise from_oserror(fd, path, "read")
    if fd < 0:
        return None
    try:
        return os.pread(fd, size, offset)
    except OSError as exc:
        raise from_oserror(exc, path, "read") from None


def _close_all(fds: dict[str, int | OSError]) -> None:
    """Close the open pack files of :func:`_read_packed` and forget them."""
    for fd in fds.values():
        if isinstance(fd, int) and fd >= 0:
            os.close(fd)
    fds.clear()


CHUNK_OUT = 1 << 20
MAX_OPEN_PACKS = 8


def unpack_objects(items: list[tuple[str, int, int, bytes]], objects_dir: str, tmp_dir: str,
                   total_bytes: int, *, jobs: int,
                   progress: Progress | None = None) -> list[Copied]:
    """Stage each ``(path, offset, size, digest)``, the object at that place of a pack
    file (a directory remote's pack, or a ranged download of one), in the store at
    ``objects_dir``/``tmp_dir`` as a temp file to be published by the caller, verified as in
    :func:`copy_objects` (a short read is ``corrupt``; a pack file that is gone,
    ``missing``). Results in the order of ``items``."""
    chunks = [(list(c), objects_dir, tmp_dir) for c in split(items, jobs)]
    pool, threads = processes_or_threads(len(items), total_bytes)
    return run_chunks(_unpack_chunk, chunks, jobs=jobs, pool=pool, threads=threads,
                      measure=lambda part: (len(part), sum(c.size for c in part)),
                      progress=progress)


def _unpack_chunk(items: list[tuple[str, int, int, bytes]], objects_dir: str,
                  tmp_dir: str) -> list[Copied]:
    fds: dict[str, int | OSError] = {}
    out: list[Copied] = []
    try:
        for path, offset, size, digest in items:
            data = _read_packed(fds, path, offset, size)
            if data is None:
                out.append(Copied(0, None, "missing"))
                continue
            if len(data) != size or xxhash.xxh3_128_digest(data) != digest:
                out.append(Copied(len(data), None, "corrupt"))
                continue
            tmp = None
            if not os.path.exists(object_path(objects_dir, digest)):
                try:
                    tmp = write_tmp(tmp_dir, digest, data)
                except OSError as exc:
                    raise from_oserror(exc, tmp_dir, "store object") from None
            out.append(Copied(size, tmp))
    finally:
        _close_all(fds)
    return out


def _open_advised(path: str) -> int | OSError:
    """An fd of ``path`` with read-ahead requested; -1 when it does not exist, the error
    when it cannot be opened (raised by the caller, in order)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return -1
    except OSError as exc:
        return exc
    with contextlib.suppress(OSError):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
    return fd
