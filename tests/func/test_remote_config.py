"""`datavc remote add/list/modify/remove/default`: remotes in config.toml, credentials only in
config.local.toml, nothing secret ever printed."""

from __future__ import annotations

import json
import tomllib

import pytest

from tests.func.helpers import fails, ok

CONFIG = ".datavc/config.toml"
LOCAL = ".datavc/config.local.toml"


def toml(root, name=CONFIG):
    path = root / name
    return tomllib.loads(path.read_text()) if path.exists() else {}


def listing(run):
    return {r["name"]: r for r in json.loads(ok(run("remote", "list", "--json")).out)}


def test_add_list_default_remove(root, run):
    assert "No remotes" in ok(run("remote", "list")).out
    ok(run("remote", "add", "storage", "s3://ml-data/project", "--default"))
    ok(run("remote", "add", "backup", "/mnt/nas/datavc"))
    assert toml(root)["remote"] == {"storage": {"url": "s3://ml-data/project"},
                                    "backup": {"url": "/mnt/nas/datavc"}}
    assert toml(root)["core"] == {"format": 1, "remote": "storage"}
    remotes = listing(run)
    assert remotes["storage"]["default"] and not remotes["backup"]["default"]
    assert set(remotes["storage"]) == {"name", "url", "default", "settings", "local"}
    assert ok(run("remote", "default")).out.strip() == "storage"
    ok(run("remote", "default", "backup"))
    assert ok(run("remote", "default")).out.strip() == "backup"
    ok(run("remote", "remove", "backup"))
    assert "backup" not in toml(root)["remote"] and "remote" not in toml(root)["core"]
    fails(run("remote", "default"), 1)


def test_modify_sets_and_unsets_typed_values(root, run):
    ok(run("remote", "add", "s", "s3://b/p"))
    ok(run("remote", "modify", "s", "endpoint_url", "http://127.0.0.1:9000"))
    ok(run("remote", "modify", "s", "path_style", "true"))
    assert toml(root)["remote"]["s"] == {"url": "s3://b/p",
                                         "endpoint_url": "http://127.0.0.1:9000",
                                         "path_style": True}
    ok(run("remote", "modify", "s", "path_style", "--unset"))
    assert "path_style" not in toml(root)["remote"]["s"]
    fails(run("remote", "modify", "s", "path_style", "maybe"), 6)
    fails(run("remote", "modify", "s", "colour", "blue"), 6)
    fails(run("remote", "modify", "s", "region"), 2)  # neither a value nor --unset


def test_credentials_only_in_the_local_file_and_never_shown(root, run):
    ok(run("remote", "add", "s", "s3://b/p", "--default"))
    r = fails(run("remote", "modify", "s", "secret_access_key", "SEKRIT"), 6)
    assert "SEKRIT" not in r.err and "--local" in r.err
    assert "secret_access_key" not in toml(root)["remote"]["s"]
    ok(run("remote", "modify", "s", "--local", "secret_access_key", "SEKRIT"))
    ok(run("remote", "modify", "s", "--local", "profile", "ml-team"))
    assert toml(root, LOCAL)["remote"]["s"] == {"secret_access_key": "SEKRIT",
                                                "profile": "ml-team"}
    text = ok(run("remote", "list")).out + ok(run("remote", "list", "--json")).out
    assert "SEKRIT" not in text and "***" in text and "ml-team" in text
    assert listing(run)["s"]["local"] is True


def test_a_tracked_config_holding_a_secret_is_refused_everywhere(root, run):
    (root / CONFIG).write_text('[core]\nformat = 1\n[remote.s]\nurl = "s3://b/p"\n'
                               'access_key_id = "AKIA-LEAK"\n')
    for args in (["status"], ["remote", "list"]):
        r = fails(run(*args), 6)
        assert "credential" in r.err and "AKIA-LEAK" not in r.err


@pytest.mark.parametrize("url", ["s3://AKIA:hunter2@bucket/p", "http://example.com/x",
                                 "s3:///no-bucket", "ftp://x/y"])
def test_bad_urls_are_refused_without_echoing_secrets(root, run, url):
    r = fails(run("remote", "add", "s", url), 6)
    assert "hunter2" not in r.err
    assert "remote" not in toml(root)


def test_relative_directory_is_stored_relative_to_the_root(root, run):
    (root / "sub").mkdir()
    ok(run("remote", "add", "nas", "../../elsewhere", cwd=root / "sub"))
    assert toml(root)["remote"]["nas"]["url"] == "../elsewhere"


def test_names_and_duplicates(root, run):
    ok(run("remote", "add", "s", "s3://b/p"))
    fails(run("remote", "add", "s", "s3://b/q"), 1)
    ok(run("remote", "add", "s", "s3://b/q", "--force"))
    assert toml(root)["remote"]["s"]["url"] == "s3://b/q"
    for bad in ("-x", "a b", "a/b", "x" * 65, ""):
        r = run("remote", "add", bad, "s3://b/p")
        assert r.code in (2, 6), r
    fails(run("remote", "remove", "nope"), 1)
    fails(run("remote", "default", "nope"), 1)


def test_remove_local_keeps_the_tracked_remote(root, run):
    ok(run("remote", "add", "s", "s3://b/p"))
    ok(run("remote", "modify", "s", "--local", "profile", "p"))
    ok(run("remote", "remove", "s", "--local"))
    assert "s" in toml(root)["remote"] and "s" not in toml(root, LOCAL).get("remote", {})


def test_remote_help_has_examples(run):
    for sub in ("add", "modify", "list", "remove", "default"):
        assert "Example" in ok(run("remote", sub, "--help")).out
