"""``datavc.Repo``: the library behind every command. One method per command, typed results,
no printing. The CLI is a thin shell over this class.

``Repo`` is assembled from parts, one module each, every one importing only those before it:

- ``datavc.results``: the result records (``AddResult``, ``TargetStatus``, …), re-exported here;
- ``datavc.repo_core``: ``RepoCore``: opening and ``init``, the lock, scanning with the stat
  cache, targets and pointer manifests, path resolution, the link type, the plumbing
  commands, and the two hooks the remote part fills in; ``find_root`` and ``DATAVC_DIR``;
- ``datavc.worktree``: ``Worktree``: ``add``, ``commit``, ``checkout``, ``status``;
- ``datavc.history``: ``History``: ``diff``, ``log``, ``ls`` (and ``write_ls_parquet``),
  ``open``/``read_bytes``, ``merge_pointers``;
- ``datavc.sync``: ``Sync``: remote configuration, ``push``, ``fetch``, ``pull``,
  ``status --remote`` and the fallback of reading to the default remote;
- ``datavc.maintain``: ``Maintenance``: ``check``, ``level``, ``install``/``uninstall``,
  ``gc``, ``fsck`` (and their records ``CheckResult``, ``LevelReport``, ``GcResult``,
  ``FsckResult``);
- ``datavc.pipelines_api``: ``Pipelines``: ``repro``, ``dag``, ``stage_add``, ``trust``,
  ``pipeline``, and stage outputs in ``checkout`` (records ``ReproResult``, ``StageRun``,
  ``Reason``, ``DagResult``, ``StageAddResult``, ``TrustResult``).

Layers below them: hashing → objects → listing/manifest → tree/state → workspace → scm →
remotes/transfer.
"""

from __future__ import annotations

from .history import LS_SCHEMA, History, write_ls_parquet
from .maintain import CheckResult, FsckResult, GcResult, LevelReport
from .pipelines_api import (
    DagResult,
    Pipelines,
    Reason,
    ReproResult,
    StageAddResult,
    StageRun,
    TrustResult,
)
from .repo_core import DATAVC_DIR, GITIGNORE, find_root
from .results import (
    AddResult,
    CheckoutResult,
    CommitResult,
    DiffStat,
    LogEntry,
    LsEntry,
    TargetStatus,
    TransferResult,
)

__all__ = [
    "DATAVC_DIR", "GITIGNORE", "LS_SCHEMA", "AddResult", "CheckResult", "CheckoutResult",
    "CommitResult", "DagResult", "DiffStat", "FsckResult", "GcResult", "LevelReport",
    "LogEntry", "LsEntry", "Reason", "Repo", "ReproResult", "StageAddResult", "StageRun",
    "TargetStatus", "TransferResult", "TrustResult", "find_root", "write_ls_parquet",
]


class Repo(History, Pipelines):
    """A datavc repository: a work tree with a ``.datavc`` directory at its root."""
