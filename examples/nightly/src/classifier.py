"""Stage classifier: another team's model, a tag-quality score per photo.

    python3 src/classifier.py data/raw/photos.csv data/scores   # data/scores/tag_quality.csv

A hand-written rule, standing in for a real image classifier: a weight per tag, a bonus
for resolution, squashed into (0, 1). It reads only the photos table, so new logs never
rerun it.
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

from common import read_photos, sigmoid

TAG_WEIGHTS = {
    "sunset": 1.0, "mountains": 0.8, "dog": 0.6, "cat": 0.6, "beach": 0.5, "macro": 0.4,
    "portrait": 0.3, "food": 0.2, "night": 0.2, "street": 0.1, "city": 0.0, "meme": 0.0,
    "car": 0.0, "selfie": -0.3, "screenshot": -1.0, "document": -1.0, "blurry": -1.0,
    "receipt": -1.0,
}


def tag_quality(photo: dict[str, str]) -> float:
    tags = [t for t in photo["tags"].split(";") if t]
    megapixels = int(photo["width"]) * int(photo["height"]) / 1e6
    z = sum(TAG_WEIGHTS.get(t, 0.0) for t in tags) + 0.25 * math.log2(megapixels)
    return round(sigmoid(z), 6)


def main(photos_csv: Path, out: Path) -> None:
    photos = read_photos(photos_csv)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "tag_quality.csv").open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["photo", "tag_quality"])
        for pid in sorted(photos):
            w.writerow([pid, tag_quality(photos[pid])])
    print(f"classifier: scored {len(photos)} photos -> {out}/tag_quality.csv")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
