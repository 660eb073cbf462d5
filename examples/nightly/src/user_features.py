"""Stage user_features: per-user features from the training days of the logs.

    python3 src/user_features.py data/raw data/features   # writes data/features/users.csv

For each user: views and likes they gave, and views and likes their own photos received,
with smoothed like rates. The held-out days (params.toml [data]) are never read here.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from common import counts, params, read_events, read_photos, split_days


def smoothed(likes: int, views: int) -> float:
    return round((likes + 1) / (views + 4), 6)


def main(raw: Path, out: Path) -> None:
    train_days, _ = split_days(raw / "logs", params("data")["holdout_days"])
    events = read_events(train_days)
    photos = read_photos(raw / "photos.csv")
    given_views, given_likes = counts(events, "user")
    photo_views, photo_likes = counts(events, "photo")
    recv_views: dict[str, int] = {}
    recv_likes: dict[str, int] = {}
    for pid, photo in photos.items():
        owner = photo["owner"]
        recv_views[owner] = recv_views.get(owner, 0) + photo_views[pid]
        recv_likes[owner] = recv_likes.get(owner, 0) + photo_likes[pid]
    out.mkdir(parents=True, exist_ok=True)
    with (out / "users.csv").open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["user", "views_given", "likes_given", "like_rate_given", "views_received",
                    "likes_received", "like_rate_received"])
        for user in sorted(set(given_views) | set(recv_views)):
            gv, gl = given_views[user], given_likes[user]
            rv, rl = recv_views.get(user, 0), recv_likes.get(user, 0)
            w.writerow([user, gv, gl, smoothed(gl, gv), rv, rl, smoothed(rl, rv)])
    print(f"user_features: {len(train_days)} training days, {len(events)} events -> "
          f"{out}/users.csv")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
