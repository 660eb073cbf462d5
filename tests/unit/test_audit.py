"""audit: unversioned data is found; tracked targets, git-lfs and tool directories are not."""

from __future__ import annotations

import os

from datavc import audit


def big(path, size=audit.LARGE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)  # sparse: costs no disk


def test_large_files_and_data_dirs_are_found(tmp_path):
    big(tmp_path / "model.ckpt")
    imgs = tmp_path / "raw" / "images"
    imgs.mkdir(parents=True)
    for i in range(audit.DATA_DIR_FILES):
        (imgs / f"{i}.jpg").write_bytes(b"x" * 10)
    (tmp_path / "src").mkdir()
    for i in range(150):
        (tmp_path / "src" / f"m{i}.py").write_text("pass\n")
    found, cut = audit.unversioned(str(tmp_path), [])
    assert not cut
    assert [(e.kind, e.path) for e in found] == [("large-file", "model.ckpt"),
                                                  ("data-dir", "raw/images")]
    assert found[1].files == audit.DATA_DIR_FILES and found[1].size == 10 * audit.DATA_DIR_FILES


def test_tracked_targets_lfs_and_tool_dirs_are_skipped(tmp_path):
    big(tmp_path / "data" / "x.bin")
    big(tmp_path / "weights" / "w.safetensors")
    big(tmp_path / ".venv" / "lib" / "huge.so")
    big(tmp_path / "assets" / "video.mp4")
    (tmp_path / ".gitattributes").write_text("*.mp4 filter=lfs diff=lfs merge=lfs -text\n"
                                             "weights/** filter=lfs\n")
    found, _ = audit.unversioned(str(tmp_path), ["data"])
    assert found == []


def test_symlinks_are_not_followed(tmp_path):
    big(tmp_path / "elsewhere" / "big.bin")
    (tmp_path / "repo").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "repo" / "link")
    found, _ = audit.unversioned(str(tmp_path / "repo"), [])
    assert found == []


def test_the_walk_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(audit, "MAX_ENTRIES", 5)
    for i in range(10):
        (tmp_path / f"f{i}").write_text("x")
    _, cut = audit.unversioned(str(tmp_path), [])
    assert cut
