"""Stage evaluate: the model on the held-out days, against a constant-rate baseline.

    python3 src/evaluate.py   # reads models/model.json and the held-out logs; writes metrics.json

Log loss per view (lower is better) for the model and for the training like rate alone,
and the AUC of the model's score over the held-out views (0.5: no better than chance).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from common import (
    counts,
    features,
    params,
    read_events,
    read_photos,
    read_table,
    sigmoid,
    split_days,
    write_json,
)


def predict(model: dict, x: list[float]) -> float:
    z = model["bias"] + sum(w * (xi - m) / s for w, xi, m, s in
                            zip(model["weights"], x, model["mean"], model["std"], strict=True))
    return sigmoid(z)


def log_loss(preds: dict[str, float], views: dict, likes: dict) -> float:
    total = sum(views.values())
    return -sum(likes[p] * math.log(q) + (views[p] - likes[p]) * math.log(1 - q)
                for p, q in preds.items()) / total


def auc(preds: dict[str, float], views: dict, likes: dict) -> float:
    """The chance that a liked view scores above a view that was not liked (ties: half)."""
    pos_below = worse = 0.0
    neg_total = sum(views[p] - likes[p] for p in preds)
    pos_total = sum(likes[p] for p in preds)
    for score in sorted(set(preds.values())):
        same = [p for p, q in preds.items() if q == score]
        neg = sum(views[p] - likes[p] for p in same)
        pos = sum(likes[p] for p in same)
        worse += neg * (pos_below + pos / 2)
        pos_below += pos
    return 1 - worse / (neg_total * pos_total) if neg_total and pos_total else 0.5


def main() -> None:
    model = json.loads(Path("models/model.json").read_text())
    _, held_out = split_days(Path("data/raw/logs"), params("data")["holdout_days"])
    photos = read_photos(Path("data/raw/photos.csv"))
    users = read_table(Path("data/features/users.csv"), "user")
    scores = read_table(Path("data/scores/tag_quality.csv"), "photo")
    views, likes = counts(read_events(held_out), "photo")
    preds = {p: predict(model, features(photos[p], users, scores)) for p in sorted(views)}
    base = {p: model["base_rate"] for p in preds}
    metrics = {
        "held_out_days": [p.stem for p in held_out], "photos": len(preds),
        "views": sum(views.values()), "likes": sum(likes.values()),
        "log_loss": round(log_loss(preds, views, likes), 4),
        "baseline_log_loss": round(log_loss(base, views, likes), 4),
        "auc": round(auc(preds, views, likes), 4),
    }
    write_json(Path("metrics.json"), metrics)
    print(f"evaluate: {metrics['held_out_days']}: log loss {metrics['log_loss']} "
          f"(baseline {metrics['baseline_log_loss']}), AUC {metrics['auc']} -> metrics.json")


if __name__ == "__main__":
    main()
