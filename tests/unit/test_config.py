"""config: config.toml overlaid by config.local.toml, validated once; a small TOML writer."""

from __future__ import annotations

import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datavc import config
from datavc.config import Config, dumps, load
from datavc.errors import ConfigError, UnknownFormatError


@pytest.fixture
def ddir(tmp_path):
    (tmp_path / ".datavc").mkdir()
    return tmp_path / ".datavc"


def write(ddir, text, name="config.toml"):
    (ddir / name).write_text(text)


def test_defaults_without_files(ddir):
    cfg = load(str(ddir))
    assert (cfg.format, cfg.link_types, cfg.jobs) == (1, ("reflink", "copy"), None)


def test_known_keys(ddir):
    write(ddir, '[core]\nformat = 1\n[cache]\ntype = ["hardlink", "copy"]\njobs = 3\n'
                '[remote.s3]\nurl = "s3://b/p"\n')
    cfg = load(str(ddir))
    assert cfg.link_types == ("hardlink", "copy") and cfg.jobs == 3
    assert cfg.raw["remote"] == {"s3": {"url": "s3://b/p"}}


def test_single_link_type_string(ddir):
    write(ddir, '[cache]\ntype = "symlink"\n')
    assert load(str(ddir)).link_types == ("symlink",)


def test_local_overrides_tracked(ddir):
    write(ddir, '[cache]\njobs = 2\ntype = ["copy"]\n[remote.r]\nurl = "a"\n')
    write(ddir, '[cache]\njobs = 8\n[remote.r]\nsecret_access_key = "s"\n',
          "config.local.toml")
    cfg = load(str(ddir))
    assert cfg.jobs == 8 and cfg.link_types == ("copy",)
    assert cfg.raw["remote"]["r"] == {"url": "a", "secret_access_key": "s"}


@pytest.mark.parametrize("text", [
    '[remote.r]\nurl = "s3://b/p"\nsecret_access_key = "x"\n',
    '[remote.r]\nurl = "s3://b/p"\nsession_token = "x"\n',
    '[remote.r]\nurl = "s3://key:pw@b/p"\n',
    '[remote.r]\nurl = "s3://b/p"\nregion = 3\n',
    '[remote.r]\nurl = "gopher://b/p"\n',
    '[remote.r]\nprofile = "p"\n',  # no url
    '[core]\nremote = "nope"\n[remote.r]\nurl = "/x"\n',
    '[remote."bad name"]\nurl = "/x"\n',
])
def test_remote_tables_are_validated(ddir, text):
    write(ddir, text)
    with pytest.raises(ConfigError) as info:
        load(str(ddir))
    assert "pw" not in info.value.message


def test_redact_hides_user_info_and_query():
    assert config.redact("s3://AKIA:secret@bucket/p?sig=abc") == "s3://***@bucket/p?***"
    assert config.redact("/plain/path") == "/plain/path"
    assert config.redact("file:///abs") == "file:///abs"


def _refused(ddir, text, cls=ConfigError, name="config.toml"):
    write(ddir, text, name)
    with pytest.raises(cls) as info:
        load(str(ddir))
    assert info.value.exit_code == 6 and name in info.value.message
    return info.value


@pytest.mark.parametrize("text", [
    "[nope]\nx = 1\n", "[core]\nfmt = 1\n", "[cache]\nsize = 1\n", "core = 1\n",
    '[cache]\ntype = ["teleport"]\n', "[cache]\ntype = []\n", "[cache]\ntype = 1\n",
    "[cache]\njobs = 0\n", "[cache]\njobs = 257\n", '[cache]\njobs = "2"\n',
    "[cache]\njobs = true\n", "[cache]\njobs = 2.0\n",
])
def test_invalid_config_is_refused(ddir, text):
    _refused(ddir, text)


def test_invalid_local_config_is_refused(ddir):
    _refused(ddir, "[nope]\n", name="config.local.toml")


@pytest.mark.parametrize("fmt", [0, 2, '"1"'])
def test_unknown_format_is_refused(ddir, fmt):
    err = _refused(ddir, f"[core]\nformat = {fmt}\n", UnknownFormatError)
    assert "upgrade" in err.hint


def test_bad_toml_is_refused_with_a_hint(ddir):
    assert "restore" in _refused(ddir, "[core\n").hint


def test_non_utf8_is_refused(ddir):
    (ddir / "config.toml").write_bytes(b'[core]\n# \xff\n')
    with pytest.raises(ConfigError):
        load(str(ddir))


def test_oversized_config_is_refused(ddir):
    assert "larger" in _refused(ddir, "# " + "x" * config.MAX_BYTES).message


def test_dumps_is_deterministic_toml():
    doc = {"core": {"format": 1}, "cache": {"type": ["reflink", "copy"], "jobs": 2},
           "remote": {"my s3": {"url": 's3://b/"q"\\x', "flag": True}}}
    text = dumps(doc)
    assert text == ('[core]\nformat = 1\n\n[cache]\ntype = ["reflink", "copy"]\njobs = 2\n\n'
                    '[remote."my s3"]\nurl = "s3://b/\\"q\\"\\\\x"\nflag = true\n')
    assert tomllib.loads(text) == doc


def test_dumps_refuses_unsupported_values():
    with pytest.raises(ConfigError):
        dumps({"cache": {"ratio": 1.5}})


def test_write_then_load(ddir):
    config.write(str(ddir / "config.toml"), {"core": {"format": 1}, "cache": {"jobs": 4}})
    assert load(str(ddir)) == Config(1, ("reflink", "copy"), 4,
                                     {"core": {"format": 1}, "cache": {"jobs": 4}})


chars = st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from("\n\t")
keys = st.text(chars, max_size=12)
printable = st.text(chars, max_size=30)
scalars = (st.booleans() | st.integers(-(2**63), 2**63 - 1) | printable
           | st.lists(printable, max_size=4))
leaf_tables = st.dictionaries(keys, scalars, min_size=1, max_size=4)
tables = st.dictionaries(keys, scalars, min_size=1, max_size=4).flatmap(
    lambda scal: st.dictionaries(keys.filter(lambda k: k not in scal), leaf_tables,
                                 max_size=3).map(lambda sub: {**scal, **sub}))


@settings(deadline=None)
@given(st.dictionaries(keys, tables, max_size=4))
def test_dumps_tomllib_round_trip(doc):
    assert tomllib.loads(dumps(doc)) == doc


@pytest.mark.parametrize("char", ["\r", "\x00", "\x1b", "\x7f"])
def test_dumps_escapes_control_characters(char):
    doc = {"remote": {"r": {"url": f"a{char}b"}}}
    assert tomllib.loads(dumps(doc)) == doc
