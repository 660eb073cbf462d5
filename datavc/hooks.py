"""Git hooks that keep data in step with git, chained with the hooks a repository has.

``install`` writes three hooks into git's hooks directory (``core.hooksPath`` when set):

- ``post-checkout``: after a branch checkout, ``datavc checkout`` (the data of the manifests
  git just checked out; never loses uncached work, as checkout never does);
- ``pre-push``: ``datavc push`` to the default remote, so a pushed commit's data is there;
- ``pre-commit``: ``datavc check --no-remote --staged``, so a commit does not record a
  manifest whose data differs from the workspace, or leave a changed manifest unstaged.

A hook that is already there and is not datavc's is kept: it is renamed to
``<hook>.datavc-chained`` and datavc's hook runs it first (with the same arguments and
standard input), stopping when it fails. ``uninstall`` removes datavc's hooks and puts the
chained ones back. Both are idempotent.
"""

from __future__ import annotations

import os
import shlex
import stat
import sys
from dataclasses import dataclass

from . import fsutil
from .errors import DatavcError, UnsafePathError

MARK = "# datavc hook"
CHAINED = ".datavc-chained"
HOOKS = {
    "post-checkout": 'if [ "$3" = "1" ]; then {datavc} checkout; fi',
    "pre-push": "{datavc} push",
    "pre-commit": "{datavc} check --no-remote --staged",
}


@dataclass(frozen=True)
class HookChange:
    hook: str
    action: str  # "installed", "chained", "unchanged", "removed", "restored", "absent"

    def to_dict(self) -> dict[str, object]:
        return {"hook": self.hook, "action": self.action}


def script(hook: str, command: str) -> str:
    body = HOOKS[hook].format(datavc=command)
    return (f"#!/bin/sh\n{MARK} (installed by `datavc install`; `datavc uninstall` removes "
            "it)\n"
            f'chained="$0{CHAINED}"\n'
            'if [ -x "$chained" ]; then\n'
            '    if [ "$(basename "$0")" = "pre-push" ]; then\n'
            '        input=$(cat); printf "%s\\n" "$input" | "$chained" "$@" || exit $?\n'
            '    else\n'
            '        "$chained" "$@" || exit $?\n'
            "    fi\n"
            "fi\n"
            f"{body}\n")


def default_command() -> str:
    """How a hook runs datavc: this interpreter, by absolute path (a hook's PATH often
    lacks the virtualenv's ``datavc``)."""
    return f"{shlex.quote(sys.executable)} -m datavc"


def ours(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return MARK.encode() in f.read(4096)
    except OSError:
        return False


def install(hooks_dir: str, command: str | None = None) -> list[HookChange]:
    command = command or default_command()
    _check_dir(hooks_dir)
    os.makedirs(hooks_dir, exist_ok=True)
    out = []
    for hook in HOOKS:
        path = os.path.join(hooks_dir, hook)
        text = script(hook, command)
        if os.path.islink(path):
            raise UnsafePathError(f"git hook '{path}' is a symlink; datavc will not replace it",
                                  hint="chain datavc into it by hand, or remove the link")
        if os.path.exists(path) and ours(path):
            with open(path, encoding="utf-8", errors="replace") as f:
                same = f.read() == text
            action = "unchanged" if same else "installed"
        elif os.path.exists(path):
            if os.path.exists(path + CHAINED):
                raise DatavcError(f"both '{path}' and '{path}{CHAINED}' exist",
                                  hint="merge them by hand, then run `datavc install` again")
            os.rename(path, path + CHAINED)
            action = "chained"
        else:
            action = "installed"
        if action != "unchanged":
            fsutil.atomic_write(path, text.encode())
            os.chmod(path, 0o755)
        out.append(HookChange(hook, action))
    return out


def uninstall(hooks_dir: str) -> list[HookChange]:
    out = []
    for hook in HOOKS:
        path = os.path.join(hooks_dir, hook)
        chained = path + CHAINED
        if os.path.exists(path) and not os.path.islink(path) and ours(path):
            os.unlink(path)
            if os.path.exists(chained):
                os.rename(chained, path)
                out.append(HookChange(hook, "restored"))
            else:
                out.append(HookChange(hook, "removed"))
        else:
            out.append(HookChange(hook, "absent"))
    return out


def _check_dir(hooks_dir: str) -> None:
    if os.path.islink(hooks_dir):
        return  # a shared hooks directory is the user's choice
    if os.path.exists(hooks_dir) and not stat.S_ISDIR(os.stat(hooks_dir).st_mode):
        raise DatavcError(f"git's hooks path '{hooks_dir}' is not a directory")
