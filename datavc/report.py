"""How the core tells a caller about long work and warnings, without knowing terminals.

The CLI passes a reporter that draws a progress bar on a terminal; the Python API's default
reporter keeps quiet but for warnings, which go to stderr.
"""

from __future__ import annotations

import sys


class Reporter:
    """Receives progress and warnings; this base class prints warnings only."""

    def begin(self, label: str, total_files: int, total_bytes: int = 0) -> None:
        pass

    def advance(self, files: int, nbytes: int) -> None:
        pass

    def end(self) -> None:
        pass

    def warn(self, message: str) -> None:
        print(f"datavc: warning: {message}", file=sys.stderr)

    def info(self, message: str) -> None:
        """A step of long work a person may follow (e.g. which stage runs now)."""
        print(f"datavc: {message}", file=sys.stderr)
