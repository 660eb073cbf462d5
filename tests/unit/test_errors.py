"""errors: exit codes (DESIGN.md §4), pickling across processes, OSError translation."""

from __future__ import annotations

import errno
import pickle

import pytest

from datavc import errors
from datavc.errors import (
    CheckoutConflictError,
    ConfigError,
    DatavcError,
    IntegrityError,
    Interrupted,
    InvalidInputError,
    LockedError,
    NotARepoError,
    ObjectMissingError,
    RemoteError,
    ResourceError,
    StageFailedError,
    UnknownFormatError,
    UnsafePathError,
    UntrustedPipelineError,
    UsageError,
    from_oserror,
)

EXIT_CODES = [
    (DatavcError, 1), (ObjectMissingError, 1), (CheckoutConflictError, 1), (UsageError, 2),
    (IntegrityError, 3), (LockedError, 4), (RemoteError, 5), (InvalidInputError, 6),
    (UnsafePathError, 6), (UnknownFormatError, 6), (ConfigError, 6), (ResourceError, 7),
    (NotARepoError, 10), (Interrupted, 130), (StageFailedError, 1),
    (UntrustedPipelineError, 6),
]


@pytest.mark.parametrize(("cls", "code"), EXIT_CODES)
def test_exit_codes_match_the_design(cls, code):
    assert cls.exit_code == code
    assert issubclass(cls, DatavcError)


def test_every_error_class_has_a_documented_exit_code():
    classes = {c for c in vars(errors).values()
               if isinstance(c, type) and issubclass(c, DatavcError)}
    assert classes == {cls for cls, _ in EXIT_CODES}


def test_str_appends_the_hint():
    assert str(DatavcError("boom", hint="do this")) == "boom\nhint: do this"
    assert str(DatavcError("boom")) == "boom"


@pytest.mark.parametrize(("cls", "_code"), EXIT_CODES)
def test_pickling_keeps_class_message_and_hint(cls, _code):
    if cls is CheckoutConflictError:
        exc = cls("conflict", paths=["a", "b"], hint="use --force")
    else:
        exc = cls("it broke", hint="try again")
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is cls
    assert back.message == exc.message and back.hint == exc.hint
    assert str(back) == str(exc) and back.args == exc.args
    assert back.exit_code == exc.exit_code


def test_pickling_keeps_checkout_conflict_paths():
    exc = CheckoutConflictError("c", paths=["x/1", "x/2"])
    assert pickle.loads(pickle.dumps(exc)).paths == ["x/1", "x/2"]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EFBIG, errno.EACCES, errno.EDQUOT,
                                  errno.EROFS, errno.EPERM, errno.EMFILE])
def test_from_oserror_maps_resource_errors_to_exit_7(code):
    exc = from_oserror(OSError(code, "x"), "data/f.bin", "write")
    assert isinstance(exc, ResourceError) and exc.exit_code == 7
    assert "data/f.bin" in exc.message and "cannot write" in exc.message
    assert exc.hint


def test_from_oserror_hints_are_specific():
    assert "free some space" in from_oserror(OSError(errno.ENOSPC, "x"), "p", "write").hint
    assert "ulimit -f" in from_oserror(OSError(errno.EFBIG, "x"), "p", "write").hint
    assert "permissions" in from_oserror(OSError(errno.EACCES, "x"), "p", "read").hint


def test_from_oserror_other_errors_exit_1_with_reason():
    exc = from_oserror(FileNotFoundError(errno.ENOENT, "No such file or directory"), "p", "read")
    assert type(exc) is DatavcError and exc.exit_code == 1
    assert exc.message == "cannot read 'p': No such file or directory"
