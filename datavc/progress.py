"""A progress bar on stderr for terminals; silent when stderr is not a terminal."""

from __future__ import annotations

import sys
import time

from .report import Reporter


class TerminalReporter(Reporter):
    def __init__(self, *, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.label, self.total, self.done, self.nbytes = "", 0, 0, 0
        self._last = 0.0

    def begin(self, label: str, total_files: int, total_bytes: int = 0) -> None:
        self.label, self.total, self.done, self.nbytes = label, total_files, 0, 0
        self._last = 0.0

    def advance(self, files: int, nbytes: int) -> None:
        self.done += files
        self.nbytes += nbytes
        now = time.monotonic()
        if self.enabled and self.total and now - self._last > 0.1:
            self._last = now
            self._draw()

    def _draw(self) -> None:
        width = 30
        frac = min(1.0, self.done / self.total)
        bar = "#" * int(frac * width)
        sys.stderr.write(f"\r{self.label} [{bar:<{width}}] {self.done}/{self.total} files "
                         f"{self.nbytes / 1e6:.1f} MB")
        sys.stderr.flush()

    def end(self) -> None:
        if self.enabled and self._last:
            self._draw()
            sys.stderr.write("\n")
            sys.stderr.flush()
        self._last = 0.0
