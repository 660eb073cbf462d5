"""What the stages share: reading the raw data, the train/held-out split of the days, the
model's features. Every stage that imports it lists it as a dependency in datavc.toml, so a
change here reruns them all."""

from __future__ import annotations

import csv
import json
import math
import tomllib
from collections import Counter
from pathlib import Path

FEATURES = ["tag_quality", "log2_megapixels", "abs_log_aspect", "owner_log_views",
            "owner_like_rate"]


def params(section: str) -> dict:
    with open("params.toml", "rb") as f:
        return tomllib.load(f)[section]


def read_photos(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as f:
        return {row["id"]: row for row in csv.DictReader(f)}


def split_days(logs: Path, holdout_days: int) -> tuple[list[Path], list[Path]]:
    """The day files used to train and the newest ``holdout_days`` ones, held out."""
    days = sorted(logs.glob("day-*.jsonl"))
    if len(days) <= holdout_days:
        raise SystemExit(f"need more than {holdout_days} day(s) of logs in {logs}")
    return days[:-holdout_days], days[-holdout_days:]


def read_events(days: list[Path]) -> list[dict[str, str]]:
    return [json.loads(line) for day in days for line in day.open()]


def counts(events: list[dict[str, str]], key: str) -> tuple[Counter, Counter]:
    """Views and likes per ``key`` (``photo`` or ``user``)."""
    views = Counter(e[key] for e in events if e["event"] == "view")
    likes = Counter(e[key] for e in events if e["event"] == "like")
    return views, likes


def read_table(path: Path, key: str) -> dict[str, dict[str, str]]:
    with path.open(newline="") as f:
        return {row[key]: row for row in csv.DictReader(f)}


def features(photo: dict[str, str], users: dict[str, dict[str, str]],
             scores: dict[str, dict[str, str]]) -> list[float]:
    """The model's inputs for one photo, in the order of FEATURES."""
    width, height = int(photo["width"]), int(photo["height"])
    owner = users.get(photo["owner"], {})
    return [float(scores[photo["id"]]["tag_quality"]),
            math.log2(width * height / 1e6),
            abs(math.log(width / height)),
            math.log1p(float(owner.get("views_received", 0))),
            float(owner.get("like_rate_received", 0.0))]


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))


def write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
