#!/usr/bin/env bash
# The quickstart, end to end, in a throw-away git repository: track a dataset, commit it,
# change it, see the change, commit again, and bring back the exact bytes of v1.
# Run it with `make demo` (which puts datavc on PATH), or directly with datavc installed.
set -euo pipefail

work=$(mktemp -d "${TMPDIR:-/tmp}/datavc-demo.XXXXXX")
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
cd "$work"
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

git init -q -b main
git config user.name "datavc demo"
git config user.email "demo@example.com"

python3 - <<'PY'
import os, random
rng = random.Random(42)
for d in range(5):
    os.makedirs(f"data/images/class{d}", exist_ok=True)
    for i in range(40):
        with open(f"data/images/class{d}/{i:03}.jpg", "wb") as f:
            f.write(rng.randbytes(rng.randint(1024, 8192)))
with open("model.bin", "wb") as f:
    f.write(rng.randbytes(3 << 20))
PY

say datavc init
say datavc add data/ model.bin
say datavc commit -m "v1: first dataset"
git tag v1
sum_v1=$(find data -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum)

echo "relabelled" > data/images/class0/000.jpg
rm data/images/class1/001.jpg
echo "a new image" > data/images/class4/new.jpg
say datavc status
say datavc commit -m "v2: relabelled"

say git checkout -q v1 -- data.datavc
say datavc checkout
sum_now=$(find data -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum)
[ "$sum_v1" = "$sum_now" ] || { echo "demo: v1 was not restored byte for byte" >&2; exit 1; }
git checkout -q main -- data.datavc
say datavc checkout
say datavc status
echo
echo "demo: OK - v1 and v2 restored byte for byte"
