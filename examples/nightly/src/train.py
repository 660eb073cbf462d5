"""Stage train: a tiny logistic model of a photo's like rate, fit by gradient descent.

    python3 src/train.py   # reads data/raw, data/features, data/scores; writes models/model.json

One example per photo viewed in the training days: its features (common.FEATURES,
standardised) and its views and likes. The model predicts the chance that a view becomes a
like; the loss is the log loss over all views plus an L2 penalty. learning_rate, epochs and
l2 come from params.toml [train].
"""

from __future__ import annotations

import math
from pathlib import Path

from common import (
    FEATURES,
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


def standardise(rows: list[list[float]]) -> tuple[list[float], list[float]]:
    n = len(rows)
    mean = [sum(col) / n for col in zip(*rows, strict=True)]
    std = [math.sqrt(sum((x - m) ** 2 for x in col) / n) or 1.0
           for col, m in zip(zip(*rows, strict=True), mean, strict=True)]
    return mean, std


def fit(xs: list[list[float]], views: list[int], likes: list[int],
        hp: dict) -> tuple[list[float], float]:
    """Weights (bias first) after ``epochs`` full-batch steps, and the final loss."""
    w = [0.0] * (len(xs[0]) + 1)
    total = sum(views)
    loss = 0.0
    for _ in range(hp["epochs"]):
        grad = [2 * hp["l2"] * wi for wi in w]
        grad[0] = 0.0  # the bias is not penalised
        loss = hp["l2"] * sum(wi * wi for wi in w[1:])
        for x, v, k in zip(xs, views, likes, strict=True):
            p = sigmoid(w[0] + sum(wi * xi for wi, xi in zip(w[1:], x, strict=True)))
            loss -= (k * math.log(p) + (v - k) * math.log(1 - p)) / total
            g = (v * p - k) / total
            grad[0] += g
            for i, xi in enumerate(x, 1):
                grad[i] += g * xi
        w = [wi - hp["learning_rate"] * gi for wi, gi in zip(w, grad, strict=True)]
    return w, loss


def main() -> None:
    hp = params("train")
    train_days, _ = split_days(Path("data/raw/logs"), params("data")["holdout_days"])
    photos = read_photos(Path("data/raw/photos.csv"))
    users = read_table(Path("data/features/users.csv"), "user")
    scores = read_table(Path("data/scores/tag_quality.csv"), "photo")
    views, likes = counts(read_events(train_days), "photo")
    ids = sorted(views)
    raw = [features(photos[pid], users, scores) for pid in ids]
    mean, std = standardise(raw)
    xs = [[(x - m) / s for x, m, s in zip(row, mean, std, strict=True)] for row in raw]
    w, loss = fit(xs, [views[p] for p in ids], [likes[p] for p in ids], hp)
    model = {
        "features": FEATURES, "mean": [round(m, 6) for m in mean],
        "std": [round(s, 6) for s in std], "bias": round(w[0], 6),
        "weights": [round(wi, 6) for wi in w[1:]], "train_days": [p.stem for p in train_days],
        "examples": len(ids), "train_log_loss": round(loss, 6),
        "base_rate": round(sum(likes.values()) / sum(views.values()), 6), "params": hp,
    }
    write_json(Path("models/model.json"), model)
    print(f"train: {len(ids)} photos, {hp['epochs']} epochs, log loss {loss:.4f} -> "
          "models/model.json")


if __name__ == "__main__":
    main()
