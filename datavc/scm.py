"""Git, through pygit2: finding the work tree, asking what git tracks, keeping .gitignore
entries for tracked data, and committing manifests (DESIGN.md §7: objects, then manifests,
then the git commit that names them).
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from . import fsutil, manifest
from .errors import DatavcError, InvalidInputError, UnsafePathError, from_oserror

_SPECIAL = set("*?[]\\!#")
MERGE_ATTRIBUTE = "*.datavc merge=datavc"
_MAX_ATTRIBUTES = 100 << 20  # git ignores a bigger .gitattributes


@dataclass(frozen=True)
class CommitInfo:
    """What ``datavc log`` shows of one git commit."""

    id: str
    author: str
    email: str
    date: str  # ISO 8601 with the author's UTC offset
    message: str


def discover_worktree(start: str) -> str | None:
    """The root of the git work tree containing ``start``, or None outside git."""
    import pygit2

    found = pygit2.discover_repository(start)
    if not found:
        return None
    repo = pygit2.Repository(found)
    return os.path.normpath(repo.workdir) if repo.workdir else None


def index_file(root: str) -> str | None:
    """The git index of the work tree at ``root``, when where it is can be told without
    loading git: ``.git`` is a directory and neither GIT_DIR nor GIT_INDEX_FILE is set
    (a linked work tree or a submodule, whose ``.git`` is a file, gives None)."""
    if os.environ.get("GIT_DIR") or os.environ.get("GIT_INDEX_FILE"):
        return None
    git_dir = os.path.join(root, ".git")
    if os.path.islink(git_dir) or not os.path.isdir(git_dir):
        return None
    return os.path.join(git_dir, "index")


class Git:
    """The git repository whose work tree is the datavc repository's root."""

    def __init__(self, root: str) -> None:
        import pygit2

        self._pygit2 = pygit2
        self.root = root
        self.repo = pygit2.Repository(root)

    def resolve(self, rev: str) -> str:
        """The commit id (40 hex) that ``rev`` names; exit 1 naming it when git does not."""
        pygit2 = self._pygit2
        try:
            obj = self.repo.revparse_single(rev)
            commit = obj.peel(pygit2.Commit)
        except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError):
            raise DatavcError(f"unknown git revision '{rev}'",
                              hint="name a commit, branch or tag: see `git log --oneline`"
                              ) from None
        return str(commit.id)

    def _tree(self, rev: str) -> Any:
        return self.repo[self.resolve(rev)].peel(self._pygit2.Tree)

    def read_file(self, rev: str, path: str, *,
                  max_bytes: int = manifest.MAX_BYTES) -> bytes | None:
        """The bytes of the blob at ``path`` in revision ``rev`` (read from git objects,
        nothing checked out); None when no file is there. Blobs over ``max_bytes`` are
        refused (exit 6) before they are read."""
        tree = self._tree(rev)
        try:
            entry = tree[path]
        except (KeyError, ValueError):
            return None
        if entry.type_str != "blob" or entry.filemode == self._pygit2.GIT_FILEMODE_LINK:
            return None
        size = self.repo.odb.read_header(entry.id)[1]
        if size > max_bytes:
            raise InvalidInputError(
                f"'{path}' at revision '{rev}' is {size} bytes, more than {max_bytes}",
                hint="this is not a datavc manifest: check the revision")
        blob: Any = self.repo[entry.id]
        return bytes(blob.data)

    def hooks_dir(self) -> str:
        """Where git runs hooks from: ``core.hooksPath`` (relative to the work tree) when
        set, else ``<git dir>/hooks``."""
        try:
            custom = self.repo.config["core.hooksPath"]
        except KeyError:
            return os.path.join(self.repo.path, "hooks")
        return os.path.join(self.root, os.path.expanduser(str(custom)))

    def is_unborn(self) -> bool:
        """True before the first commit (HEAD names a branch with no commit yet)."""
        return bool(self.repo.head_is_unborn)

    def is_revision(self, rev: str) -> bool:
        try:
            self.resolve(rev)
        except DatavcError:
            return False
        return True

    def revisions(self, *, branches: bool = False, tags: bool = False,
                  commits: bool = False) -> list[str]:
        """Commit ids: the tips of local branches, the commits tags name, or every commit
        reachable from any ref (each once, in no particular order)."""
        repo = self.repo
        out: dict[str, None] = {}
        tips = []
        for ref in repo.references:
            if (ref.startswith("refs/heads/") and (branches or commits)) or (
                    ref.startswith("refs/tags/") and (tags or commits)):
                try:
                    tips.append(str(repo.revparse_single(ref).peel(self._pygit2.Commit).id))
                except (KeyError, ValueError, self._pygit2.GitError):
                    continue  # a tag of a tree or blob names no commit
        if commits:
            if not repo.head_is_unborn:
                tips.append(str(repo.head.target))
            unique = list(dict.fromkeys(tips))
            if unique:
                walker = repo.walk(unique[0])
                for tip in unique[1:]:
                    walker.push(tip)
                out.update((str(c.id), None) for c in walker)
        else:
            out.update(dict.fromkeys(tips))
        return list(out)

    def read_blob(self, blob_id: str, *, max_bytes: int = manifest.MAX_BYTES) -> bytes:
        """The bytes of one blob, refused (exit 6) when over ``max_bytes``."""
        size = self.repo.odb.read_header(blob_id)[1]
        if size > max_bytes:
            raise InvalidInputError(f"git blob {blob_id} is {size} bytes, more than {max_bytes}",
                                    hint="this is not a datavc manifest")
        blob: Any = self.repo[blob_id]
        return bytes(blob.data)

    def path_history(self, path: str, start: str = "HEAD"
                     ) -> Iterator[tuple[CommitInfo, str | None, list[str | None]]]:
        """The commits reachable from ``start``, newest first, whose blob at ``path`` differs
        from that of every parent (a root commit: where the blob exists), as
        (commit, blob id or None, parents' blob ids). Like ``git log --full-history`` without
        merges that kept one parent's version."""
        pygit2 = self._pygit2
        walker = self.repo.walk(self.resolve(start),
                                pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.TIME)
        for commit in walker:
            here = self._blob_at(commit, path)
            parents = [self._blob_at(p, path) for p in commit.parents]
            if (all(here != p for p in parents) if parents else here is not None):
                yield self._info(commit), here, parents

    def _blob_at(self, commit: Any, path: str) -> str | None:
        try:
            entry = commit.tree[path]
        except (KeyError, ValueError):
            return None
        if entry.type_str != "blob" or entry.filemode == self._pygit2.GIT_FILEMODE_LINK:
            return None
        return str(entry.id)

    @staticmethod
    def _info(commit: Any) -> CommitInfo:
        author = commit.author
        try:
            tz = timezone(timedelta(minutes=author.offset))
            date = datetime.fromtimestamp(author.time, tz).isoformat()
        except (ValueError, OverflowError, OSError):  # a forged date: show the raw number
            date = str(author.time)
        text = commit.raw_message.decode("utf-8", "replace")  # hostile history: never fail
        return CommitInfo(str(commit.id), author.raw_name.decode("utf-8", "replace"),
                          author.raw_email.decode("utf-8", "replace"), date, text.rstrip("\n"))

    def files(self, rev: str, *, suffix: str) -> list[str]:
        """Every regular file path whose name ends with ``suffix`` in revision ``rev``,
        ``/``-separated, without descending into ``.git``/``.datavc`` or symlinks."""
        found: list[str] = []
        stack: list[tuple[Any, str]] = [(self._tree(rev), "")]
        while stack:
            tree, prefix = stack.pop()
            for entry in tree:
                name = entry.name
                if entry.type_str == "tree":
                    if name.casefold() not in (".git", ".datavc"):
                        stack.append((self.repo[entry.id], f"{prefix}{name}/"))
                elif (entry.type_str == "blob" and name.endswith(suffix)
                      and entry.filemode != self._pygit2.GIT_FILEMODE_LINK):
                    found.append(prefix + name)
        return sorted(found)

    def index_paths(self) -> list[str]:
        """Every path in git's index."""
        index = self.repo.index
        index.read()
        return [e.path for e in index]

    def tracked_under(self, rel: str) -> list[str]:
        """Paths git tracks at ``rel`` or below it."""
        index = self.repo.index
        index.read()
        prefix = rel + "/"
        return [e.path for e in index if e.path == rel or e.path.startswith(prefix)]

    def stage(self, paths: Iterable[str]) -> None:
        index = self.repo.index
        index.read()
        for rel in paths:
            if os.path.lexists(os.path.join(self.root, rel)):
                index.add(rel)
            elif rel in index:
                index.remove(rel)
        index.write()

    def configure(self, values: dict[str, str]) -> bool:
        """Set ``values`` in this clone's git config (``.git/config``) where git's config
        does not already hold them; True when anything was written."""
        config = self.repo.config
        changed = False
        for key, value in values.items():
            try:
                current = config[key]
            except KeyError:
                current = None
            if current != value:
                config[key] = value
                changed = True
        return changed

    def commit(self, message: str, paths: Iterable[str]) -> str | None:
        """Stage ``paths`` and commit the index; None when there is nothing to commit."""
        self.stage(paths)
        repo = self.repo
        tree = repo.index.write_tree()
        parents = [] if repo.head_is_unborn else [repo.head.target]
        if parents and repo[parents[0]].peel(self._pygit2.Tree).id == tree:
            return None
        author, committer = self._signature("AUTHOR"), self._signature("COMMITTER")
        oid = repo.create_commit("HEAD", author, committer, message, tree, parents)
        return str(oid)

    def _signature(self, role: str) -> Any:
        """As git does: GIT_<ROLE>_NAME/EMAIL from the environment, else user.name/email."""
        name, email = os.environ.get(f"GIT_{role}_NAME"), os.environ.get(f"GIT_{role}_EMAIL")
        try:
            default = None if name and email else self.repo.default_signature
        except (KeyError, self._pygit2.GitError):
            default = None
        name = name or (default.name if default else None)
        email = email or (default.email if default else None)
        if name and email:
            return self._pygit2.Signature(name, email)
        raise DatavcError(
            "git does not know who you are: cannot create the commit",
            hint='run `git config user.name "Your Name"` and '
                 '`git config user.email you@example.com`')


def gitignore_pattern(name: str) -> str:
    """The .gitignore line that ignores exactly the entry ``name`` of its directory."""
    if "\n" in name or "\r" in name:
        raise UnsafePathError(f"cannot ignore {name!r} in git: the name has a line break")
    escaped = "".join("\\" + c if c in _SPECIAL else c for c in name)
    if escaped.endswith(" "):
        escaped = escaped[:-1] + "\\ "
    return "/" + escaped


def ensure_ignored(root: str, rel: str, *, tmp_dir: str | None = None) -> str | None:
    """Add ``rel`` to the .gitignore of its directory; return that .gitignore if changed."""
    parent, name = os.path.split(rel)
    ignore_rel = os.path.join(parent, ".gitignore") if parent else ".gitignore"
    path = os.path.join(root, ignore_rel)
    line = gitignore_pattern(name)
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "surrogateescape")
    except FileNotFoundError:
        text = ""
    if line in text.splitlines():
        return None
    if text and not text.endswith("\n"):
        text += "\n"
    fsutil.atomic_write(path, (text + line + "\n").encode("utf-8", "surrogateescape"),
                        tmp_dir=tmp_dir)
    return ignore_rel


def merge_driver_config() -> dict[str, str]:
    """The git config that defines the ``datavc`` merge driver (docs/format.md).

    The command is this interpreter with ``-m datavc``, by absolute path: git runs drivers
    through the shell with its own PATH, on which a virtualenv's ``datavc`` may not be.
    """
    exe = shlex.quote(sys.executable) + " -m datavc" if sys.executable else "datavc"
    return {"merge.datavc.name": "datavc pointer manifests (three-way merge of the data)",
            "merge.datavc.driver": f"{exe} merge-driver %O %A %B %P"}


def ensure_merge_attribute(root: str) -> bool:
    """Add ``*.datavc merge=datavc`` to the work tree's root ``.gitattributes`` unless it
    already has that line; True when the file changed."""
    path = os.path.join(root, ".gitattributes")
    if os.path.islink(path):
        raise UnsafePathError(f"'{path}' is a symlink; datavc will not write through it",
                              hint=f"add the line `{MERGE_ATTRIBUTE}` to it yourself")
    try:
        with open(path, "rb") as f:
            data = fsutil.read_limited(f, _MAX_ATTRIBUTES)
    except FileNotFoundError:
        data = b""
    except OSError as exc:
        raise from_oserror(exc, path, "read") from exc
    if len(data) > _MAX_ATTRIBUTES:  # git ignores such a file too
        raise InvalidInputError(f"'{path}' is larger than {_MAX_ATTRIBUTES} bytes",
                                hint=f"add the line `{MERGE_ATTRIBUTE}` to it yourself")
    text = data.decode("utf-8", "surrogateescape")
    if MERGE_ATTRIBUTE in (line.strip() for line in text.splitlines()):
        return False
    if text and not text.endswith("\n"):
        text += "\n"
    fsutil.atomic_write(path, (text + MERGE_ATTRIBUTE + "\n").encode("utf-8", "surrogateescape"))
    return True
