"""paths: validation of every path and name that comes from outside (pure functions)."""

from __future__ import annotations

import unicodedata

import pytest

from datavc.errors import UnsafePathError
from datavc.paths import check_name, find_collisions, fold, is_reserved, split_relpath

BAD_NAMES = ["", ".", "..", "a/b", "a\\b", "a\0b", ".git", ".GIT", ".Git", ".datavc",
             ".DataVC", ".git.", ".git ", ".git. .", "GIT~1", "git~1", "DATAVC~1", "datavc~2",
             "x" * 256, "é" * 128]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_check_name_refuses(name):
    with pytest.raises(UnsafePathError) as info:
        check_name(name, where="listing X")
    assert info.value.exit_code == 6
    assert "listing X" in info.value.message


@pytest.mark.parametrize("name", ["a", "a.txt", "...", ".gitignore", ".github", "git",
                                  "datavc", ".git2", "x" * 255, "é" * 127, "a b", "\udcff"])
def test_check_name_accepts(name):
    assert check_name(name) == name


def test_is_reserved_case_and_aliases():
    assert is_reserved(".GIT") and is_reserved(".datavc..") and is_reserved("Git~1")
    assert not is_reserved(".gitignore") and not is_reserved("git")


@pytest.mark.parametrize("path", ["", "/abs", "/", "C:/x", "c:x", "a//b", "a/", "./a",
                                  "a/./b", "a/../b", "..", "a/.git/b", "a/.DATAVC",
                                  "a\\b", "a" * 4097])
def test_split_relpath_refuses(path):
    with pytest.raises(UnsafePathError):
        split_relpath(path)


def test_split_relpath_returns_components():
    assert split_relpath("data/images/cat.png") == ("data", "images", "cat.png")
    assert split_relpath("x") == ("x",)


def test_split_relpath_refuses_non_strings():
    with pytest.raises(UnsafePathError):
        split_relpath(b"a/b")  # type: ignore[arg-type]


def test_find_collisions_case_and_normalisation():
    nfc, nfd = unicodedata.normalize("NFC", "é"), unicodedata.normalize("NFD", "é")
    assert nfc != nfd
    assert find_collisions(["A", "b", "a"]) == [("A", "a")]
    assert find_collisions([nfc, nfd]) == [(nfc, nfd)]
    assert find_collisions(["Straße", "STRASSE"]) == [("Straße", "STRASSE")]
    assert find_collisions(["a", "b", "c"]) == []
    assert fold("ÉCOLE") == fold("e\u0301cole")
