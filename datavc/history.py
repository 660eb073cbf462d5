"""``History``: reading data across git revisions: ``diff``, ``log``, ``ls`` (and
``write_ls_parquet``), ``open``/``read_bytes`` of one tracked file, and ``merge_pointers``,
git's merge driver. Part of ``datavc.Repo``."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from . import fsutil, listing, manifest, tree
from .errors import DatavcError, ObjectMissingError, from_oserror
from .hashing import Oid
from .manifest import Pointer
from .parallel import publish
from .repo_core import RepoCore
from .results import LogEntry, LsEntry
from .state import StatCache
from .treediff import Budget, Change, Ref, Side, diff, lookup, with_renames

if TYPE_CHECKING:  # both are imported where used: most commands never need them
    from . import merge, reader


@dataclass(frozen=True)
class _At:
    """One side of a diff: a commit (``sha`` None for the empty history before the first
    commit), or the workspace."""

    sha: str | None = None
    workspace: bool = False


class History(RepoCore):
    """diff, log, ls, open/read_bytes and merge_pointers (see ``datavc.Repo``)."""

    # ---------------------------------------------------------------- diff

    def diff(self, a: str | None = None, b: str | None = None,
             targets: str | os.PathLike[str] | list[str | os.PathLike[str]] | None = None
             ) -> list[Change]:
        """File-level changes from revision ``a`` (default HEAD) to revision ``b`` (default:
        the workspace data), for ``targets`` (tracked targets, paths inside them, or
        directories holding them; default: every target tracked on either side).

        Only the subtrees whose ids differ are read. A deleted file whose content reappears
        at another path is one ``renamed`` change.
        """
        old = self._diff_side(a or "HEAD")
        new = self._diff_side(b) if b is not None else _At(workspace=True)
        if isinstance(targets, (str, os.PathLike)):
            targets = [targets]
        state = self._state() if new.workspace else None
        out: list[Change] = []
        for rel in self._diff_paths(targets, old, new):
            before, n_before = self._stored_at(rel, old)
            if state is not None:
                after: Side | None = self._workspace_at(rel, state)
                n_after = 0
            else:
                after, n_after = self._stored_at(rel, new)
            budget = Budget.for_pointer(n_before + n_after)
            check_mode = self._tracks_exec if new.workspace else True
            try:
                out.extend(diff(self.store, rel, before, after, check_mode=check_mode,
                                budget=budget))
            except ObjectMissingError as exc:
                raise ObjectMissingError(
                    f"cannot diff '{rel}': {exc.message}",
                    hint="the listings of that revision are not in this cache: add or check "
                         "out its data where it exists, or copy the objects from another "
                         "clone's .datavc/cache") from None
        if state is not None:
            self._save_state_if_free(state)
        return with_renames(out)

    def _diff_side(self, rev: str) -> _At:
        if rev == "HEAD" and self.git.is_unborn():
            return _At(None)
        return _At(self.resolve(rev))

    def _tracked_at(self, at: _At) -> list[str]:
        if at.workspace:
            return self.tracked()
        return self.tracked(at.sha) if at.sha is not None else []

    def _diff_paths(self, targets: list[str | os.PathLike[str]] | None,
                    old: _At, new: _At) -> list[str]:
        known = sorted(set(self._tracked_at(old)) | set(self._tracked_at(new)))
        if not targets:
            return known
        out: list[str] = []
        for arg in targets:
            rel = self.target(arg)
            below = [t for t in known if t == rel or t.startswith(rel + "/")]
            inside = [t for t in known if rel.startswith(t + "/")]
            if not below and not inside:
                raise DatavcError(f"'{rel}' is not tracked by datavc on either side of the diff",
                                  hint="name a tracked target or a path inside one; "
                                       "see `datavc ls`")
            out.extend(below or [rel])
        return sorted(set(out))

    def _stored_at(self, rel: str, at: _At) -> tuple[Ref | None, int]:
        """The stored node at work-tree path ``rel`` as of ``at``'s manifests (a target, or a
        path inside one: only the listings on the way are read), with its target's nfiles."""
        if at.sha is None and not at.workspace:
            return None, 0
        sha = None if at.workspace else at.sha
        for target in self._tracked_at(at):
            if rel == target or rel.startswith(target + "/"):
                pointer = self.read_pointer(target, sha)
                ref = Ref(pointer.kind, pointer.oid.digest, pointer.size)
                parts = rel[len(target) + 1:].split("/") if rel != target else []
                budget = Budget.for_pointer(pointer.nfiles)
                try:
                    return lookup(self.store, ref, parts, budget), pointer.nfiles
                except ObjectMissingError as exc:
                    raise ObjectMissingError(f"cannot diff '{rel}': {exc.message}",
                                             hint="the listings of that revision are not in "
                                                  "this cache") from None
        return None, 0

    def _workspace_at(self, rel: str, state: StatCache) -> tree.Node | None:
        scan = self._scan_hashed(rel, state, locked=False)
        if scan.root is not None:
            tree.finish(scan.root, store=None, where=rel)
        return scan.root

    # ----------------------------------------------------------------- log

    def log(self, target: str | os.PathLike[str], *, rev: str = "HEAD") -> list[LogEntry]:
        """The commits reachable from ``rev``, newest first, where ``target``'s id changed,
        with its size and file count at each. A manifest that fails validation at some
        commit is reported in that entry's ``error``, never read further."""
        rel = self.target(target)
        if rev == "HEAD" and self.git.is_unborn():
            return []
        pointer_rel = manifest.pointer_path(rel)
        parsed: dict[str, Pointer | str] = {}

        def pointer(blob: str | None) -> Pointer | str | None:
            if blob is None:
                return None
            if blob not in parsed:
                try:
                    parsed[blob] = manifest.loads(self.git.read_blob(blob),
                                                  where=f"{pointer_rel} (git blob {blob})")
                except DatavcError as exc:
                    parsed[blob] = exc.message
                    self.reporter.warn(f"{pointer_rel} in git blob {blob} is invalid and was "
                                       f"not read: {exc.message}")
            return parsed[blob]

        out: list[LogEntry] = []
        for info, here, parents in self.git.path_history(pointer_rel, rev):
            now = pointer(here)
            before = [pointer(p) for p in parents]
            if isinstance(now, Pointer) and any(
                    isinstance(p, Pointer) and p.oid == now.oid and p.kind == now.kind
                    for p in before):
                continue  # only the manifest's metadata changed, not the data
            if now is None:
                change = "deleted"
            elif any(p is not None for p in before):
                change = "modified"
            else:
                change = "added"
            ok = now if isinstance(now, Pointer) else None
            out.append(LogEntry(info.id, info.author, info.email, info.date, info.message,
                                change, ok.oid if ok else None, ok.size if ok else None,
                                ok.nfiles if ok else None,
                                now if isinstance(now, str) else None))
        if not out:
            raise DatavcError(f"'{rel}' has no history as a datavc target (no commit reachable "
                              f"from '{rev}' has {pointer_rel})",
                              hint="name a tracked target: see `datavc ls` or "
                                   "`git log --stat -- '*.datavc'`")
        return out

    # --------------------------------------------------------------- merge

    def merge_pointers(self, base: str | os.PathLike[str], ours: str | os.PathLike[str],
                       theirs: str | os.PathLike[str], path: str) -> merge.PointerMerge:
        """Three-way merge of the pointer manifest ``path`` from the files ``base``, ``ours``
        and ``theirs`` (git's merge driver: ``%O %A %B %P``; an empty or absent file is a
        side without the manifest).

        Clean: the new listings are stored (under the lock, taken only when some are not in
        the cache yet), then the merged pointer is written into ``ours``, atomically.
        Otherwise ``ours`` is left as it is, and the conflicts say why; an invalid side, a
        missing listing or a corrupt one is a conflict too, naming it.
        """
        from . import merge  # here: only the merge driver needs it

        target = path.removesuffix(manifest.SUFFIX) or path
        try:
            sides = [merge.read_side(f, where=f"{path} ({side})")
                     for f, side in ((base, "base"), (ours, "ours"), (theirs, "theirs"))]
            result = merge.merge_pointers(self.store, *sides, target=target)
        except DatavcError as exc:
            return merge.PointerMerge(target, None, [merge.Conflict(target, exc.message)])
        if result.pointer is None:
            return result if result.conflicts else merge.PointerMerge(
                target, None, [merge.Conflict(target, "the merge removes it")])
        missing = result.listings.keys() - self.store.present_digests(set(result.listings))
        if missing:
            with self._locked("merge-driver"):
                for digest in missing:
                    self.store.add_bytes(result.listings[digest])
                publish(self.store, jobs=1)
        fsutil.atomic_write(os.path.abspath(ours), result.pointer.dumps())
        return result

    # ------------------------------------------------------------------ ls

    def ls(self, target: str | os.PathLike[str] | None = None, *,
           rev: str | None = None) -> list[LsEntry]:
        """Every tracked file of ``target`` (default: of every target), recursively, as the
        manifests of the work tree or of git revision ``rev`` name them, sorted by path."""
        sha = self.resolve(rev) if rev is not None else None
        rels = [self.target(target)] if target is not None else self.tracked(sha)
        out: list[LsEntry] = []
        for rel in rels:
            pointer = self.read_pointer(rel, sha)
            root = self._load_tree(rel, pointer, action="list")
            out.extend(sorted((LsEntry(path, listing.FILE, Oid(node.digest), node.size,
                                       node.executable)
                               for path, node in tree.walk_files(root, rel)),
                              key=lambda e: e.path))
        return out

    # ----------------------------------------------------------------- read

    def open(self, path: str | os.PathLike[str], rev: str | None = None, *,
             mode: str = "rb") -> io.BufferedReader:
        """One tracked file as a read-only binary file, as of git revision ``rev`` (its
        manifests read from git objects, nothing checked out) or, without ``rev``, as the
        work-tree manifests record it. The bytes come from the cache, verified against
        their id (docs/api.md); a missing object goes through :meth:`_fetch_object`.

        ``path`` is relative to the repository root (or absolute inside it), whatever the
        current directory: a file target, or a file inside a directory target. Only the
        listings on its path are read.
        """
        from . import reader

        reader.check_mode(mode)
        parts = reader.data_path(self.root, path)
        sha = self.resolve(rev) if rev is not None else None
        try:
            found = self._find_file(parts, sha, rev)
            try:
                return self._open_object(found)
            except ObjectMissingError:
                self._fetch_object(found.oid)
            return self._open_object(found)
        except ObjectMissingError as exc:
            at = f" at revision '{rev}'" if rev is not None else ""
            raise ObjectMissingError(f"cannot read '{'/'.join(parts)}'{at}: {exc.message}",
                                     hint=exc.hint) from None

    def _open_object(self, found: reader.Found) -> io.BufferedReader:
        from . import reader

        at = self.store.locate([found.oid.digest]).get(found.oid.digest)
        if at is not None:  # a packed object: small, read and verified whole
            return reader.open_bytes(self.store.read_bytes(found.oid, limit=at.size), found,
                                     self.store.pack_path(at.pack))
        return reader.open_object(self.store.path(found.oid), found)

    def read_bytes(self, path: str | os.PathLike[str], rev: str | None = None) -> bytes:
        """The whole verified content of one tracked file (see :meth:`open`)."""
        with self.open(path, rev) as f:
            return f.read()

    def _find_file(self, parts: tuple[str, ...], sha: str | None,
                   rev: str | None) -> reader.Found:
        """The target that is a prefix of ``parts`` (the outermost, as discovery finds
        targets), then the file below it."""
        from . import reader

        for n in range(1, len(parts) + 1):
            pointer = self._pointer_at(parts, n, sha, rev)
            if pointer is not None:
                mode = 0o755 if pointer.kind == listing.DIR else 0o644
                top = listing.Entry(parts[n - 1], pointer.kind, pointer.oid, pointer.size,
                                    mode, pointer.nfiles)
                return reader.lookup(self._listings, top, "/".join(parts[:n]), parts[n:],
                                     path="/".join(parts), rev=rev)
        at = f" at revision '{rev}'" if rev is not None else ""
        raise DatavcError(f"'{'/'.join(parts)}' is not tracked by datavc{at}: no pointer "
                          "manifest names it or a directory above it",
                          hint=f"`datavc ls{'' if rev is None else ' --rev ' + rev}` lists "
                               "the tracked files")

    @cached_property
    def _listings(self) -> reader.Listings:
        from . import reader

        return reader.Listings(self._listing_bytes)

    def _listing_bytes(self, oid: Oid) -> bytes:
        try:
            return self.store.read_bytes(oid)
        except ObjectMissingError:
            self._fetch_object(oid)
        return self.store.read_bytes(oid)

LS_SCHEMA = (("path", "string"), ("kind", "string"), ("oid", "string"), ("size", "int64"),
             ("executable", "bool"))


def write_ls_parquet(entries: list[LsEntry], path: str | os.PathLike[str]) -> None:
    """Write ``entries`` as a Parquet file with the columns of LS_SCHEMA (docs/json.md),
    through a temp file renamed into place. pyarrow is imported only here."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq

    except ImportError as exc:
        raise DatavcError(f"cannot write Parquet: {exc}", hint="pip install pyarrow") from None
    schema = pa.schema([(name, getattr(pa, "bool_" if t == "bool" else t)())
                        for name, t in LS_SCHEMA])
    columns = {
        # a name that is not valid UTF-8 keeps its undecodable bytes as \udcXX text
        "path": [e.path.encode("utf-8", "backslashreplace").decode() for e in entries],
        "kind": [e.kind for e in entries],
        "oid": [str(e.oid) for e in entries],
        "size": [e.size for e in entries],
        "executable": [e.executable for e in entries],
    }
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(columns, schema=schema), sink)
    target = os.path.abspath(os.fspath(path))
    try:
        fsutil.atomic_write(target, sink.getvalue().to_pybytes())
    except OSError as exc:
        raise from_oserror(exc, target, "write") from exc
