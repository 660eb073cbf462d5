"""Synthetic raw data for the nightly photo-popularity example: the photos table (what the
photos database dumps each night) and one JSON-lines file of view and like events per day
(the logs). Standard library only.

    python3 generate.py --out data/raw --days 7       # photos.csv and logs/day-01..07.jsonl
    python3 generate.py --out data/raw --append-day   # tomorrow's logs: the next day-NN.jsonl

The same seed always gives the same bytes. Each day's logs depend only on the seed and the
day, so a day appended tomorrow is the file `--days 8` would have written, and
`--append-day` never touches photos.csv.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

FIRST_DAY = datetime.date(2026, 11, 1)
N_USERS = 250
N_PHOTOS = 400
VIEWS_PER_DAY = 420

# What people actually like, which no stage of the pipeline sees: the classifier's tag table
# (src/classifier.py) is another team's rough guess at it.
APPEAL = {
    "sunset": 0.9, "mountains": 0.7, "dog": 0.8, "cat": 0.8, "beach": 0.6, "food": 0.3,
    "street": 0.2, "portrait": 0.4, "macro": 0.5, "night": 0.3, "city": 0.1, "car": -0.1,
    "selfie": -0.2, "document": -1.2, "screenshot": -1.0, "receipt": -1.4, "blurry": -1.1,
    "meme": 0.0,
}
SIZES = [(4032, 3024), (3024, 4032), (1920, 1080), (1080, 1920), (1080, 1080), (800, 600),
         (640, 480), (6000, 4000), (2048, 1536), (1280, 720)]


@dataclass(frozen=True)
class User:
    id: str
    activity: float  # how much they browse
    fame: float  # how much their photos get shown
    taste: float  # how readily they like


@dataclass(frozen=True)
class Photo:
    id: str
    owner: str
    width: int
    height: int
    tags: tuple[str, ...]
    upload_day: str
    appeal: float


def world(seed: int) -> tuple[list[User], list[Photo]]:
    """The users and photos of ``seed``: the hidden truth behind every day's logs."""
    rng = random.Random(f"{seed}-world")
    users = [User(f"u{i:03}", rng.lognormvariate(0, 0.8), rng.gauss(0, 0.6), rng.gauss(0, 0.4))
             for i in range(N_USERS)]
    fame = [math.exp(u.fame) for u in users]
    photos = []
    for i in range(N_PHOTOS):
        owner = rng.choices(users, weights=fame)[0]
        width, height = rng.choice(SIZES)
        tags = tuple(sorted(rng.sample(sorted(APPEAL), rng.randint(1, 4))))
        upload = FIRST_DAY - datetime.timedelta(days=rng.randint(1, 90))
        appeal = (sum(APPEAL[t] for t in tags) + 0.3 * math.log2(width * height / 2e6)
                  - 0.6 * abs(math.log(width / height)) + rng.gauss(0, 0.4))
        photos.append(Photo(f"p{i:04}", owner.id, width, height, tags, upload.isoformat(),
                            appeal))
    return users, photos


def write_photos(path: Path, photos: list[Photo]) -> None:
    with path.open("w", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["id", "owner", "width", "height", "tags", "upload_day"])
        for p in photos:
            out.writerow([p.id, p.owner, p.width, p.height, ";".join(p.tags), p.upload_day])


def day_events(seed: int, day: int, users: list[User], photos: list[Photo]) -> list[dict]:
    """The views and likes of ``day`` (1 is FIRST_DAY), in time order."""
    rng = random.Random(f"{seed}-day-{day}")
    fame = {u.id: u.fame for u in users}
    shown = [math.exp(0.8 * fame[p.owner] + 0.4 * p.appeal) for p in photos]
    viewers = rng.choices(users, weights=[u.activity for u in users], k=VIEWS_PER_DAY)
    seen = rng.choices(photos, weights=shown, k=VIEWS_PER_DAY)
    date = FIRST_DAY + datetime.timedelta(days=day - 1)
    events = []
    for user, photo in zip(viewers, seen, strict=True):
        t = datetime.datetime.combine(date, datetime.time()) + datetime.timedelta(
            seconds=rng.randrange(86_390))
        events.append({"ts": t.isoformat() + "Z", "user": user.id, "photo": photo.id,
                       "event": "view"})
        if rng.random() < 1 / (1 + math.exp(-(photo.appeal + user.taste - 1.0))):
            liked = t + datetime.timedelta(seconds=rng.randint(1, 9))
            events.append({"ts": liked.isoformat() + "Z", "user": user.id, "photo": photo.id,
                           "event": "like"})
    return sorted(events, key=lambda e: (e["ts"], e["event"] == "like"))


def write_day(logs: Path, seed: int, day: int, users: list[User], photos: list[Photo]) -> Path:
    path = logs / f"day-{day:02}.jsonl"
    with path.open("w") as f:
        for event in day_events(seed, day, users, photos):
            f.write(json.dumps(event, sort_keys=True) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/raw"))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--days", type=int, default=7, help="days of logs to write")
    parser.add_argument("--append-day", action="store_true",
                        help="only write the next day's logs after those in OUT/logs")
    args = parser.parse_args()
    users, photos = world(args.seed)
    logs = args.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    if args.append_day:
        days = [int(p.stem.removeprefix("day-")) for p in logs.glob("day-*.jsonl")]
        print(f"wrote {write_day(logs, args.seed, max(days, default=0) + 1, users, photos)}")
        return
    write_photos(args.out / "photos.csv", photos)
    for day in range(1, args.days + 1):
        write_day(logs, args.seed, day, users, photos)
    print(f"wrote {args.out}/photos.csv ({len(photos)} photos) and {args.days} days of logs")


if __name__ == "__main__":
    main()
