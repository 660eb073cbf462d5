"""Stored trees from nested dicts, without a workspace: for tests of code that reads stored
listings (merge). A spec is a dict (a directory) whose values are bytes/str (a file),
``Exec(content)`` (an executable file) or dicts."""

from __future__ import annotations

from dataclasses import dataclass

import xxhash

from datavc import tree
from datavc.objects import ObjectStore
from datavc.treediff import Ref


@dataclass(frozen=True)
class Exec:
    content: bytes | str


def node(spec) -> tree.Node:
    if isinstance(spec, dict):
        return tree.DirNode({name: node(value) for name, value in spec.items()})
    executable = isinstance(spec, Exec)
    data = spec.content if executable else spec
    data = data.encode() if isinstance(data, str) else data
    return tree.FileNode(xxhash.xxh3_128_digest(data), len(data), executable)


def stored(store: ObjectStore | None, spec) -> Ref:
    """Store the listings of ``spec`` (file objects are not needed to merge) as a Ref;
    without a store, only compute its ids."""
    root = node(spec)
    tree.finish(root, store=store, where="d")
    if isinstance(root, tree.FileNode):
        return Ref("file", root.digest, root.size, root.executable)
    return Ref("dir", root.digest, root.size, False, root.nfiles)


def spec_of(store: ObjectStore, ref: Ref):
    """The spec of a stored tree, files as (digest, size, executable), for comparisons."""
    return _spec(tree.load(store, ref.digest, kind=ref.kind, size=ref.size,
                           nfiles=ref.nfiles if ref.kind == "dir" else None))


def _spec(n: tree.Node):
    if isinstance(n, tree.FileNode):
        return (n.digest, n.size, n.executable)
    return {name: _spec(child) for name, child in n.children.items()}
