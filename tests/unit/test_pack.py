"""The pack format (datavc.pack): index encoding, the hostile-input decoder, planning of
ranged reads, grouping; and parallel.build_packs / unpack_objects on real files."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import msgpack
import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

from datavc import pack, parallel
from datavc.errors import UnknownFormatError
from datavc.hashing import Oid


def digest(data: bytes) -> bytes:
    return xxhash.xxh3_128_digest(data)


def index_of(blobs: list[bytes]) -> tuple[bytes, bytes]:
    """(the pack's name as 16 bytes, its index)."""
    whole = b"".join(blobs)
    index = pack.encode_index(digest(whole), [(digest(b), len(b)) for b in blobs])
    return bytes.fromhex(pack.index_name(index)), index


def with_trailer(body: bytes) -> bytes:
    return body + digest(body)


def test_index_round_trip_gives_entries_in_pack_order() -> None:
    blobs = [b"alpha", b"", b"b" * 1000]
    name, index = index_of(blobs)
    got, entries = pack.decode_index(index, name.hex())
    assert got == digest(b"".join(blobs)) and digest(entries) == name
    info = pack.PackInfo(name.hex(), sum(map(len, blobs)), 0.0, entries)
    assert list(info.objects()) == [(digest(b"alpha"), 0, 5), (digest(b""), 5, 0),
                                    (digest(b"b" * 1000), 5, 1000)]


@pytest.mark.parametrize("damage", [
    "trailer", "name", "cut", "duplicate", "huge entry", "not canonical", "not msgpack",
    "too long", "empty", "wrong magic", "extra field",
])
def test_decoder_refuses_damaged_or_hostile_indexes(damage: str) -> None:
    name, index = index_of([b"one", b"two"])
    body = index[:-16]
    entries = struct.pack(">16sQ", digest(b"one"), 3) + struct.pack(">16sQ", digest(b"two"), 3)
    bad = {
        "trailer": body + bytes(16),
        "name": index,  # decoded under another name
        "cut": with_trailer(msgpack.packb(["datavc.pack", 1, name, entries[:-1]],
                                          use_bin_type=True)),
        "duplicate": with_trailer(msgpack.packb(["datavc.pack", 1, name, entries[:24] * 2],
                                                use_bin_type=True)),
        "huge entry": with_trailer(msgpack.packb(
            ["datavc.pack", 1, name, struct.pack(">16sQ", name, pack.MAX_OBJECT + 1)],
            use_bin_type=True)),
        # a str where bin belongs: same values, another encoding
        "not canonical": with_trailer(msgpack.packb(["datavc.pack", 1, name, entries],
                                                    use_bin_type=False)),
        "not msgpack": with_trailer(b"\xc1\xc1"),
        "too long": b"\0" * (pack.MAX_INDEX + 1),
        "empty": with_trailer(msgpack.packb(["datavc.pack", 1, name, b""], use_bin_type=True)),
        "wrong magic": with_trailer(msgpack.packb(["datavc.listing", 1, name, entries],
                                                  use_bin_type=True)),
        "extra field": with_trailer(msgpack.packb(["datavc.pack", 1, name, entries, 0],
                                                  use_bin_type=True)),
    }[damage]
    with pytest.raises(pack.PackError):
        pack.decode_index(bad, "0" * 32 if damage == "name" else None)


def test_packs_of_the_same_bytes_but_other_objects_have_other_names() -> None:
    """[A, empty, B] and [A, B] are the same bytes: the name covers the entries, so two
    writers of one name always write the same index."""
    with_empty = index_of([b"alpha", b"", b"beta"])
    without = index_of([b"alpha", b"beta"])
    assert with_empty[0] != without[0]
    assert pack.decode_index(with_empty[1], None)[0] == pack.decode_index(without[1], None)[0]


def test_a_reader_keeps_a_bounded_number_of_packed_objects(monkeypatch) -> None:
    from datavc.errors import RemoteError

    monkeypatch.setattr(pack, "MAX_PACKED", 3)
    found = pack.PackSet()
    for blobs in ([b"a", b"b"], [b"c", b"d"]):
        name, index = index_of(blobs)
        info = pack.PackInfo(name.hex(), 2, 0.0, pack.decode_index(index, None)[1])
        if blobs[0] == b"a":
            found.add(info)
        else:
            with pytest.raises(RemoteError):
                found.add(info)


def test_an_index_of_another_version_is_an_unknown_format() -> None:
    name, _ = index_of([b"x"])
    newer = with_trailer(msgpack.packb(["datavc.pack", 2, name, b""], use_bin_type=True))
    with pytest.raises(UnknownFormatError) as err:
        pack.decode_index(newer, name.hex())
    assert err.value.exit_code == 6 and "upgrade datavc" in (err.value.hint or "")


@given(st.lists(st.binary(max_size=64), min_size=1, max_size=30, unique=True))
def test_any_index_written_decodes_to_what_was_written(blobs: list[bytes]) -> None:
    name, index = index_of(blobs)
    _, entries = pack.decode_index(index, name.hex())
    assert [(d, s) for d, s in pack.iter_entries(entries)] == \
        [(digest(b), len(b)) for b in blobs]


def test_plan_reads_merges_near_objects_and_splits_far_or_long_runs() -> None:
    located = {
        Oid(bytes([1]) * 16): pack.Packed("a" * 32, 0, 10),
        Oid(bytes([2]) * 16): pack.Packed("a" * 32, 20, 10),  # gap 10: merged
        Oid(bytes([3]) * 16): pack.Packed("a" * 32, 1000, 10),  # gap 970: a read of its own
        Oid(bytes([4]) * 16): pack.Packed("b" * 32, 5, 5),
    }
    reads = pack.plan_reads(located, gap=100, most=1 << 20)
    assert [(r.pack[0], r.start, r.length) for r in reads] == [("a", 0, 30), ("a", 1000, 10),
                                                                ("b", 5, 5)]
    assert reads[0].objects == [(bytes([1]) * 16, 0, 10), (bytes([2]) * 16, 20, 10)]
    # a read never grows past `most`
    assert [(r.start, r.length) for r in pack.plan_reads(located, gap=100, most=25)][:2] == \
        [(0, 10), (20, 10)]


def test_groups_close_a_pack_at_the_target_or_the_count() -> None:
    items = [(bytes([i]) * 16, 100) for i in range(10)]
    assert [len(g) for g in pack.groups(items, target=300, most=100)] == [3, 3, 3, 1]
    assert [len(g) for g in pack.groups(items, target=10_000, most=4)] == [4, 4, 2]


def objects_in(tmp_path: Path, n: int) -> list[tuple[str, int, bytes, int]]:
    """``n`` small object files, as build_packs takes them: (path, -1, digest, size)."""
    src = tmp_path / "src"
    src.mkdir()
    items = []
    for i in range(n):
        data = f"object {i}\n".encode() * (i % 5 + 1)
        p = src / f"{i}"
        p.write_bytes(data)
        items.append((str(p), -1, digest(data), len(data)))
    return items


@pytest.mark.parametrize("n", [3, 600])  # in this process; in worker processes
def test_build_then_unpack_round_trips_and_verifies(tmp_path: Path, n: int) -> None:
    items = objects_in(tmp_path, n)
    (tmp_path / "tmp").mkdir()
    built = parallel.build_packs([items[: n // 2], items[n // 2:]], str(tmp_path / "tmp"),
                                 jobs=2)
    assert [len(b.entries) for b in built] == [n // 2, n - n // 2]
    for b in built:
        assert b.tmp is not None and not b.problems
        data = Path(b.tmp).read_bytes()
        assert digest(data) == b.digest and len(data) == b.size
        assert os.stat(b.tmp).st_mode & 0o222 == 0
    store = tmp_path / "store"
    (store / "tmp").mkdir(parents=True)
    wanted = []
    for b in built:
        info = pack.PackInfo("x", b.size, 0, pack.decode_index(
            pack.encode_index(b.digest, b.entries), None)[1])
        wanted += [(b.tmp, off, size, d) for d, off, size in info.objects()]
    got = parallel.unpack_objects(wanted, str(store / "objects"), str(store / "tmp"), 0, jobs=2)
    assert all(c.error is None and c.tmp for c in got)
    assert {Path(c.tmp).read_bytes() for c in got if c.tmp} == \
        {Path(p).read_bytes() for p, _, _, _ in items}


def test_build_leaves_out_a_damaged_or_vanished_source(tmp_path: Path) -> None:
    items = objects_in(tmp_path, 4)
    Path(items[1][0]).write_bytes(b"changed")
    os.unlink(items[2][0])
    (tmp_path / "tmp").mkdir()
    [b] = parallel.build_packs([items], str(tmp_path / "tmp"), jobs=1)
    assert b.problems == [(items[1][2], "corrupt"), (items[2][2], "missing")]
    assert [d for d, _ in b.entries] == [items[0][2], items[3][2]]


def test_build_reads_objects_out_of_a_cache_pack(tmp_path: Path) -> None:
    """Items with an offset are places in a pack file (the cache's packs): read there,
    verified like loose ones."""
    blobs = [b"alpha", b"", b"gamma" * 100, b"delta"]
    body = b"".join(blobs)
    (tmp_path / "p.pack").write_bytes(body[:-1] + b"!")  # the last one is damaged
    items, offset = [], 0
    for data in blobs:
        items.append((str(tmp_path / "p.pack"), offset, digest(data), len(data)))
        offset += len(data)
    items.append((str(tmp_path / "gone.pack"), 0, digest(b"x"), 1))
    (tmp_path / "tmp").mkdir()
    [b] = parallel.build_packs([items], str(tmp_path / "tmp"), jobs=1)
    assert [d for d, _ in b.entries] == [digest(x) for x in blobs[:3]]
    assert sorted(b.problems) == sorted([(digest(b"delta"), "corrupt"),
                                         (digest(b"x"), "missing")])
    assert b.tmp and Path(b.tmp).read_bytes() == b"".join(blobs[:3])


def test_unpack_reports_a_short_or_flipped_object_as_corrupt(tmp_path: Path) -> None:
    data = b"hello world"
    p = tmp_path / "p"
    p.write_bytes(data + b"!")
    (tmp_path / "tmp").mkdir()
    got = parallel.unpack_objects(
        [(str(p), 0, 11, digest(data)), (str(p), 1, 11, digest(data)),
         (str(p), 5, 11, digest(b"x")), (str(tmp_path / "gone"), 0, 1, digest(b"y"))],
        str(tmp_path / "objects"), str(tmp_path / "tmp"), 0, jobs=1)
    assert [c.error for c in got] == [None, "corrupt", "corrupt", "missing"]


def test_big_objects_are_packed_and_cut_on_threads(tmp_path: Path, monkeypatch) -> None:
    """Objects big on average go to threads (no worker processes and their memory), with the
    same results."""
    calls: list[tuple[bool, bool]] = []
    real = parallel.run_chunks

    def spy(*args, **kwargs):
        calls.append((kwargs["pool"], kwargs.get("threads", False)))
        return real(*args, **kwargs)

    monkeypatch.setattr(parallel, "run_chunks", spy)
    src = tmp_path / "src"
    src.mkdir()
    items = []
    for i in range(parallel.MIN_FILES_FOR_POOL):
        data = bytes([i % 251]) * (parallel.MIN_MEAN_FOR_THREADS + i)
        (src / str(i)).write_bytes(data)
        items.append((str(src / str(i)), -1, digest(data), len(data)))
    (tmp_path / "tmp").mkdir()
    built = parallel.build_packs([items[:200], items[200:]], str(tmp_path / "tmp"), jobs=2)
    wanted = []
    for b in built:
        assert b.tmp and not b.problems
        info = pack.PackInfo("x", b.size, 0, pack.decode_index(
            pack.encode_index(b.digest, b.entries), None)[1])
        wanted += [(b.tmp, off, size, d) for d, off, size in info.objects()]
    got = parallel.unpack_objects(wanted, str(tmp_path / "objects"), str(tmp_path / "tmp"),
                                  sum(n for _, _, n, _ in wanted), jobs=2)
    assert all(c.error is None for c in got) and len(got) == len(items)
    assert calls == [(False, True), (False, True)]
