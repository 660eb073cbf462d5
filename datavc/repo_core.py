"""``RepoCore``: what every part of ``datavc.Repo`` stands on. Opening and ``init``, the lock,
scanning with the stat cache, targets and their pointer manifests, the pointer that holds a
path, the link type, and the plumbing commands (``hash_object``, ``cat_object``,
``ls_manifest``). ``Repo`` adds the work-tree commands (``datavc.worktree``), reading across
revisions (``datavc.history``) and remotes (``datavc.sync``) on top of it.
"""

from __future__ import annotations

import os
import stat
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Self

from . import config as config_mod
from . import fsutil, listing, manifest, scm, tree
from .errors import (
    DatavcError,
    NotARepoError,
    ObjectMissingError,
    UnsafePathError,
    UsageError,
    from_oserror,
)
from .hashing import Oid, hash_file
from .links import reflink_probe
from .lock import repo_lock
from .manifest import Pointer
from .objects import ObjectStore
from .parallel import default_jobs, publish
from .paths import split_relpath
from .report import Reporter
from .results import TargetStatus
from .state import GitIndexMemo, PresenceMemo, StatCache, fanout_stamp
from .treediff import Budget
from .walk import Walk, walk

DATAVC_DIR = ".datavc"
GITIGNORE = "/cache/\n/tmp/\n/state/\n/config.local.toml\n"


TREE_RULES = 1  # how a walk becomes a tree (names set aside, case and Unicode checks)


class RepoCore:
    """A datavc repository: a work tree with a ``.datavc`` directory at its root (the base of
    ``datavc.Repo``, which is the class to use)."""

    def __init__(self, path: str | os.PathLike[str] = ".", *,
                 reporter: Reporter | None = None) -> None:
        root = find_root(os.path.abspath(path))
        if root is None:
            raise NotARepoError(f"not inside a datavc repository: '{os.path.abspath(path)}'",
                                hint="run `datavc init` at the root of your git work tree")
        self.root = root
        self.dir = os.path.join(root, DATAVC_DIR)
        self.reporter = reporter or Reporter()
        self.config = config_mod.load(self.dir)
        self.store = ObjectStore(os.path.join(self.dir, "cache"))
        self.jobs = self.config.jobs or default_jobs()
        self._git: scm.Git | None = None
        self._git_checked = False
        self._link_type: str | None = None

    # ----------------------------------------------------------------- init

    reinitialized = False  # set by init() on a repository that already existed

    @classmethod
    def init(cls, path: str | os.PathLike[str] = ".", *, no_scm: bool = False,
             reporter: Reporter | None = None) -> Self:
        """Make ``path`` (a git work tree's root unless ``no_scm``) a datavc repository, and
        set up git's merge driver for pointer manifests (``.gitattributes``, staged, and this
        clone's ``.git/config``). On an existing repository (e.g. a fresh clone), only the
        git set-up is done, idempotently, and ``reinitialized`` is True."""
        path = os.path.abspath(path)
        root = path if no_scm else scm.discover_worktree(path)
        if root is None:
            raise DatavcError(f"'{path}' is not inside a git work tree",
                              hint="run `git init` first, or `datavc init --no-scm`")
        ddir = os.path.join(root, DATAVC_DIR)
        existed = os.path.isdir(ddir)
        if not existed:
            try:
                os.makedirs(ddir)
                config_mod.write(os.path.join(ddir, "config.toml"),
                                 {"core": {"format": config_mod.FORMAT}})
                fsutil.atomic_write(os.path.join(ddir, ".gitignore"), GITIGNORE.encode())
            except OSError as exc:
                raise from_oserror(exc, ddir, "create") from exc
        repo = cls(root, reporter=reporter)
        repo.reinitialized = existed
        repo.store.ensure_layout()
        if not no_scm:
            staged = [] if existed else [f"{DATAVC_DIR}/config.toml", f"{DATAVC_DIR}/.gitignore"]
            if scm.ensure_merge_attribute(root):
                staged.append(".gitattributes")
            repo.git.stage(staged)
            repo.git.configure(scm.merge_driver_config())
        return repo

    # ------------------------------------------------------------ internals

    @property
    def git(self) -> scm.Git:
        git = self.git_or_none
        if git is None:
            raise DatavcError("this datavc repository is not in a git work tree (--no-scm)",
                              hint="run `git init` to version the manifests")
        return git

    @property
    def in_git(self) -> bool:
        """Whether the repository is in a git work tree (as :attr:`git_or_none` decides,
        without loading git)."""
        return self._git is not None if self._git_checked else os.path.exists(
            os.path.join(self.root, ".git"))

    def _git_index_memo(self) -> GitIndexMemo:
        return GitIndexMemo.load(os.path.join(self.dir, "state", "gitindex"),
                                 scm.index_file(self.root))

    @property
    def git_or_none(self) -> scm.Git | None:
        if not self._git_checked:
            self._git_checked = True
            if os.path.exists(os.path.join(self.root, ".git")):
                self._git = scm.Git(self.root)
        return self._git

    @contextmanager
    def _locked(self, what: str) -> Iterator[None]:
        with repo_lock(os.path.join(self._tmp_dir, "lock"), what=what):
            self.store.ensure_layout()  # cheap, and a deleted cache directory comes back
            self.store.clear_tmp()
            for name in os.listdir(self._tmp_dir):  # temps of an interrupted manifest write
                if name.startswith(fsutil.TMP_MARK):
                    with suppress(OSError):
                        os.unlink(os.path.join(self._tmp_dir, name))
            try:
                yield
            except BaseException:
                self.store.pending.clear()
                self.store.pending_packs.clear()
                self.store.clear_tmp()  # staged objects of this failed operation
                raise

    @property
    def _tmp_dir(self) -> str:
        return os.path.join(self.dir, "tmp")

    def _scan(self, rel: str, state: StatCache, *, locked: bool,
              walked: Walk | None = None) -> tree.Scan:
        """The tree of ``rel`` from a walk of it (``walked``, or a new one) and the stat
        cache; the racy-clean rule counts from the walk's start."""
        walked = walked or self._walk(rel, state)
        scan = tree.build(walked, state, self.store.objects_dir, started_ns=walked.started_ns)
        if scan.root is not None and not self._tracks_exec:
            tree.clear_exec(scan.root)
        if locked:
            for path in scan.litter:
                with suppress(OSError):
                    os.unlink(path)
        return scan

    def _scan_hashed(self, rel: str, state: StatCache, *, locked: bool,
                     walked: Walk | None = None) -> tree.Scan:
        """Scan ``rel`` and hash what the stat cache does not know (nothing stored)."""
        walked = walked or self._walk(rel, state)
        scan = self._scan(rel, state, locked=locked, walked=walked)
        tree.resolve(scan, store=None, state=state, started_ns=walked.started_ns,
                     jobs=self.jobs, track_exec=self._tracks_exec)
        return scan

    def _walk(self, rel: str, state: StatCache,
              feed: Callable[[list[tuple[str, int]]], None] | None = None) -> Walk:
        """One ``lstat`` pass over ``rel``, in two processes when it held many files (or in
        this one, handing ``feed`` each directory's files as it goes)."""
        return walk(self.root, rel, jobs=self.jobs, expect_files=state.last_files(rel),
                    feed=feed)

    @property
    def _memo_salt(self) -> bytes:
        """What a tree's id depends on besides its walk: the format, the executable bits."""
        return (f"datavc tree memo {TREE_RULES} listing {listing.VERSION} unicode "
                f"{unicodedata.unidata_version} exec={int(self._tracks_exec)}").encode()

    def _known_tree(self, rel: str, walked: Walk, state: StatCache) -> tree.Node | None:
        """The tree memo's answer for a walk: a root with its id and no children, or None
        when the walk set anything aside or the memo does not know its fingerprint."""
        if not walked.plain:
            return None
        hit = state.known_tree(rel, walked.fingerprint(self._memo_salt))
        if hit is None:
            return None
        kind, digest, size, nfiles = hit
        there = (listing.DIR if walked.top is not None
                 else listing.FILE if walked.file is not None else None)
        if kind != there:
            return None  # a row that does not fit what is there now
        if kind == listing.DIR:
            return tree.DirNode(digest=digest, size=size, nfiles=nfiles)
        return tree.FileNode(digest, size)

    def _finish(self, rel: str, scan: tree.Scan, state: StatCache,
                store: ObjectStore | None = None) -> tree.Node:
        """Compute the listing ids of a scanned tree (writing listings to ``store`` if
        given) and remember its id against its walk when the scan allows."""
        root = tree.require(scan.root, rel)
        tree.finish(root, store=store, where=rel)
        if scan.memo_ok and scan.walked is not None:
            state.remember_tree(rel, scan.walked.fingerprint(self._memo_salt),
                                tree.root_kind(root), root.digest, root.size,
                                tree.file_count(root))
        return root

    def _state(self) -> StatCache:
        return StatCache.load(os.path.join(self.dir, "state", "stat"))

    def _presence_memo(self, started_ns: int) -> PresenceMemo:
        return PresenceMemo.load(os.path.join(self.dir, "state", "present"),
                                 fanout_stamp(self.store.objects_dir, started_ns))

    def _save_state_if_free(self, state: StatCache, memo: PresenceMemo | None = None) -> None:
        if not state.dirty and (memo is None or not memo.dirty):
            return
        try:
            with self._locked("status"):
                state.save()
                if memo is not None:
                    memo.save()
        except DatavcError:
            pass  # another writer is busy: these are only caches

    def target(self, arg: str | os.PathLike[str], *, cwd: str | None = None) -> str:
        """A user-given path as a validated repo-relative target (``x.datavc`` → ``x``)."""
        text = os.fspath(arg)
        full = os.path.normpath(os.path.join(cwd or os.getcwd(), text))
        rel = os.path.relpath(full, self.root)
        if rel == ".":
            raise UsageError(f"'{text}' is the repository root itself",
                             hint="track directories or files inside it, e.g. `datavc add data`")
        if rel.startswith(".." + os.sep) or rel == "..":
            raise UsageError(f"'{text}' is not inside the repository {self.root}")
        rel = rel.replace(os.sep, "/")
        if rel.split("/")[0].casefold() in (DATAVC_DIR, ".git"):
            raise UnsafePathError(f"'{text}' is inside {rel.split('/')[0]}, which datavc "
                                  "never tracks or writes")
        if rel.endswith(manifest.SUFFIX):
            rel = manifest.target_of(rel)
        parts = split_relpath(rel, where="the command line")
        self._check_no_symlink_parents(parts, text)
        return rel

    def _check_no_symlink_parents(self, parts: tuple[str, ...], text: str) -> None:
        path = self.root
        for part in parts[:-1]:
            path = os.path.join(path, part)
            if os.path.islink(path):
                raise UnsafePathError(f"'{text}' goes through the symlink '{path}'",
                                      hint="name the real path inside the work tree")

    def read_pointer(self, rel: str, rev: str | None = None) -> Pointer:
        """The pointer of target ``rel`` in the work tree, or at git revision ``rev`` (read
        from git objects, nothing checked out). Invalid manifests are refused (exit 6)."""
        pointer_rel = manifest.pointer_path(rel)
        if rev is not None:
            data = self.git.read_file(rev, pointer_rel, max_bytes=manifest.MAX_BYTES)
            if data is None:
                raise DatavcError(f"'{rel}' is not tracked by datavc at revision '{rev}' "
                                  f"(no {pointer_rel} there)",
                                  hint=f"see `git log --oneline -- {pointer_rel}`")
            return manifest.loads(data, where=f"{pointer_rel} at revision '{rev}'")
        path = os.path.join(self.root, pointer_rel)
        try:
            with open(path, "rb") as f:
                data = fsutil.read_limited(f, manifest.MAX_BYTES)
        except FileNotFoundError:
            raise DatavcError(f"'{rel}' is not tracked by datavc (no {rel}{manifest.SUFFIX})",
                              hint=f"run `datavc add {rel}`") from None
        except OSError as exc:
            raise from_oserror(exc, path, "read") from exc
        return manifest.loads(data, where=pointer_rel)

    def resolve(self, rev: str) -> str:
        """The commit id a git revision names (exit 1 naming it when git knows none)."""
        return self.git.resolve(rev)

    def tracked(self, rev: str | None = None, *, skip: set[str] | None = None) -> list[str]:
        """Every tracked target (each ``X`` that has an ``X.datavc``) in the work tree, or
        in the git tree of revision ``rev``; in the work tree, not looking inside the
        directories ``skip`` names."""
        if rev is not None:
            found = []
            for path in self.git.files(rev, suffix=manifest.SUFFIX):
                target = manifest.target_of(path)
                split_relpath(target, where=f"manifest name '{path}' at revision '{rev}'")
                found.append(target)
            return sorted(found)
        found = []
        self._find_pointers(self.root, "", found, skip or set())
        return sorted(found)

    def _find_pointers(self, path: str, rel: str, found: list[str], skip: set[str]) -> None:
        try:
            entries = list(os.scandir(path))
        except OSError:
            return
        names = {e.name for e in entries}
        for e in entries:
            if e.name.endswith(manifest.SUFFIX) and e.is_file(follow_symlinks=False):
                target = rel + e.name[: -len(manifest.SUFFIX)]
                split_relpath(target, where=f"manifest name '{rel}{e.name}'")
                found.append(target)
        for e in entries:
            if (e.name in (".git", DATAVC_DIR) or e.name + manifest.SUFFIX in names
                    or rel + e.name in skip):
                continue
            if e.is_dir(follow_symlinks=False):
                self._find_pointers(e.path, f"{rel}{e.name}/", found, skip)

    def _data_paths(self, sha: str | None = None) -> list[str]:
        """Every path whose data datavc stores at ``sha`` (None: the work tree): the tracked
        targets here; the pipeline part adds the stage outputs its lock records. What
        push, fetch, pull and checkout move when no target is named."""
        return self.tracked(sha)

    def _targets(self, targets: list[str] | None, rev: str | None = None) -> list[str]:
        if not targets:
            return self.tracked(rev)
        return [self.target(t) for t in targets]

    # ----------------------------------------------------------- link type

    @property
    def _tracks_exec(self) -> bool:
        """Hardlinked or symlinked files are the read-only cache objects: no exec bit."""
        return self.link_type not in ("hardlink", "symlink")

    @property
    def link_type(self) -> str:
        """The first configured link type that works here (reflink is probed once)."""
        if self._link_type is None:
            self._link_type = "copy"
            for kind in self.config.link_types:
                if kind != "reflink" or self._reflink_probe():
                    self._link_type = kind
                    break
        return self._link_type

    @property
    def _packs_small(self) -> bool:
        """Whether an add writes many small files as packs: only where workspace files are
        copies (``cache.pack``, default true); a hardlink, symlink or reflink needs an
        object file of its own."""
        return self.config.pack and self.link_type == "copy"

    def _reflink_probe(self) -> bool:
        return reflink_probe(self.store.root if os.path.isdir(self.store.root) else self.dir,
                             self.root)

    # ----------------------------------------------------- path resolution

    def _pointer_at(self, parts: tuple[str, ...], n: int, sha: str | None,
                    rev: str | None) -> Pointer | None:
        """The pointer of target ``parts[:n]`` at ``sha`` or in the work tree, or None."""
        target = "/".join(parts[:n])
        pointer_rel = manifest.pointer_path(target)
        if sha is not None:
            data = self.git.read_file(sha, pointer_rel, max_bytes=manifest.MAX_BYTES)
            if data is None:
                return None
            return manifest.loads(data, where=f"{pointer_rel} at revision '{rev}'")
        if n > 1 and os.path.islink(os.path.join(self.root, *parts[:n - 1])):
            raise UnsafePathError(f"'{'/'.join(parts)}' goes through the symlink "
                                  f"'{os.path.join(self.root, *parts[:n - 1])}'",
                                  hint="name the real path inside the work tree")
        try:
            st = os.lstat(os.path.join(self.root, pointer_rel))
        except OSError:
            return None
        return self.read_pointer(target) if stat.S_ISREG(st.st_mode) else None

    def _holder(self, rel: str, sha: str | None) -> tuple[Pointer, tuple[str, ...]] | None:
        """The pointer of the target that is ``rel`` or holds it, and the rest of the path
        below that target; None when no target holds ``rel``."""
        parts = tuple(rel.split("/"))
        for n in range(1, len(parts) + 1):
            pointer = self._pointer_at(parts, n, sha, sha)
            if pointer is not None:
                return pointer, parts[n:]
        return None

    def _load_tree(self, rel: str, pointer: Pointer, action: str = "check out") -> tree.Node:
        try:
            return tree.load(self.store, pointer.oid.digest, kind=pointer.kind,
                             size=pointer.size, nfiles=pointer.nfiles)
        except ObjectMissingError as exc:
            raise ObjectMissingError(f"cannot {action} '{rel}': {exc.message}",
                                     hint="the cache lacks this data: `datavc fetch "
                                          f"{rel}` (with the same --rev) gets it from the "
                                          "remote; or re-add it where it still exists"
                                     ) from None

    # ----------------------------------------------------------- plumbing

    def hash_object(self, path: str | os.PathLike[str], *, write: bool = False) -> Oid:
        """The id of one file's content; with ``write``, also store it in the cache."""
        try:
            if write:
                with self._locked("hash-object"):
                    oid = Oid(self.store.add_file(os.fspath(path)).digest)
                    publish(self.store, jobs=1)
                return oid
            return hash_file(path)[0]
        except OSError as exc:
            raise from_oserror(exc, path, "hash") from exc

    def cat_object(self, oid: str | Oid) -> Iterator[bytes]:
        """The verified bytes of one object, in chunks; IntegrityError if they do not match."""
        from .objects import read_verified

        oid = oid if isinstance(oid, Oid) else Oid.parse(oid)
        return read_verified(self.store, oid)

    def ls_manifest(self, pointer: str | os.PathLike[str], *,
                    recursive: bool = True) -> list[tuple[str, listing.Entry]]:
        """The entries named by a pointer manifest (recursively), as (path, entry)."""
        rel = self.target(pointer)
        ptr = self.read_pointer(rel)
        if ptr.kind == listing.FILE:
            return [(rel, listing.Entry(os.path.basename(rel), listing.FILE, ptr.oid, ptr.size))]
        out: list[tuple[str, listing.Entry]] = []
        self._walk_listing(ptr.oid, rel, recursive, out, Budget.for_pointer(ptr.nfiles))
        return out

    def _walk_listing(self, oid: Oid, prefix: str, recursive: bool,
                      out: list[tuple[str, listing.Entry]], budget: Budget) -> None:
        budget.spend(oid)
        for e in listing.decode(self.store.read_bytes(oid), where=str(oid)):
            path = f"{prefix}/{e.name}"
            out.append((path, e))
            if recursive and e.kind == listing.DIR:
                self._walk_listing(e.oid, path, recursive, out, budget)

    # ---------------------------------------------------------------- hooks

    def _fetch_object(self, oid: Oid) -> None:
        """Bring object ``oid``, missing from the cache, into it: the one place where reading
        falls back to a remote (implemented by ``datavc.sync.Sync``)."""
        raise NotImplementedError

    def _remote_status(self, found: list[TargetStatus],
                       remote: str | None) -> list[TargetStatus]:
        """``found`` with what remote ``remote`` (None: the default) lacks of each target
        (implemented by ``datavc.sync.Sync``)."""
        raise NotImplementedError


def find_root(start: str) -> str | None:
    path = start
    while True:
        if os.path.isdir(os.path.join(path, DATAVC_DIR)):
            return path
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent
