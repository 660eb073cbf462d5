"""One exception root for every expected failure, carrying its exit code (DESIGN.md §4).

The CLI turns a :class:`DatavcError` into ``datavc: error: <message>`` on stderr and its
``exit_code``; nothing else in datavc prints tracebacks for expected failures. Every message
names the file, path or object concerned and what to do next.
"""

from __future__ import annotations

import errno


class DatavcError(Exception):
    """A failure datavc expected and can explain."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __reduce__(self) -> tuple[object, ...]:  # keep hint and fields across processes
        return (_restore, (type(self), self.message, dict(self.__dict__)))

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\nhint: {self.hint}"
        return self.message


class UsageError(DatavcError):
    """The command line itself is wrong."""

    exit_code = 2


class IntegrityError(DatavcError):
    """Content does not match its object id (cache, remote or download)."""

    exit_code = 3


class LockedError(DatavcError):
    """Another datavc process holds the repository lock."""

    exit_code = 4


class RemoteError(DatavcError):
    """A remote is unreachable or keeps failing after retries."""

    exit_code = 5


class InvalidInputError(DatavcError):
    """Invalid or unsafe input refused: bad manifest, unknown format, unsafe path, bad config."""

    exit_code = 6


class UnsafePathError(InvalidInputError):
    """A path that would escape the work tree or touch .git/.datavc."""


class UnknownFormatError(InvalidInputError):
    """A file written by a format version this datavc does not know."""


class ConfigError(InvalidInputError):
    """The configuration is invalid."""


class UntrustedPipelineError(InvalidInputError):
    """The pipeline's commands are not trusted in this clone (``datavc trust``)."""


class StageFailedError(DatavcError):
    """A pipeline stage's command failed; its dependents did not run."""

    def __init__(self, message: str, *, result: object = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.result = result


class ResourceError(DatavcError):
    """No space, permission denied, file too large, read-only file system."""

    exit_code = 7


class NotARepoError(DatavcError):
    """Not inside a datavc repository."""

    exit_code = 10


class ObjectMissingError(DatavcError):
    """An object is not in the store that was asked for it."""


class CheckoutConflictError(DatavcError):
    """Checkout refused to replace or delete workspace files not safely in the cache."""

    def __init__(self, message: str, *, paths: list[str], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.paths = paths


class Interrupted(DatavcError):
    """SIGINT or SIGTERM."""

    exit_code = 130


def _restore(cls: type[DatavcError], message: str, state: dict[str, object]) -> DatavcError:
    obj = cls.__new__(cls)
    Exception.__init__(obj, message)
    obj.__dict__.update(state)
    return obj


_RESOURCE_ERRNOS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.EMFILE: "too many open files",
}


def from_oserror(exc: OSError, path: object, action: str) -> DatavcError:
    """Translate an OSError met while doing ``action`` on ``path`` into a DatavcError."""
    what = _RESOURCE_ERRNOS.get(exc.errno or 0)
    if what is not None:
        return ResourceError(
            f"cannot {action} '{path}': {what}",
            hint=_resource_hint(exc.errno or 0),
        )
    reason = exc.strerror or str(exc)
    return DatavcError(f"cannot {action} '{path}': {reason}")


def _resource_hint(code: int) -> str:
    if code in (errno.ENOSPC, errno.EDQUOT):
        return "free some space and run the command again; nothing was lost"
    if code == errno.EFBIG:
        return "raise the file-size limit (ulimit -f) or use a file system that allows the size"
    if code == errno.EROFS:
        return "the file system is mounted read-only"
    if code == errno.EMFILE:
        return "raise the open-file limit (ulimit -n)"
    return "check the file's owner and permissions"
