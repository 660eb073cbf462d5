#!/usr/bin/env bash
# The nightly photo-popularity pipeline, end to end, in a throw-away git repository: what a
# Makefile that reruns on dates gets wrong and datavc, which reruns on content, gets right.
#
#   bash examples/nightly/run.sh          # in a temporary directory, removed afterwards
#   bash examples/nightly/run.sh DIR      # in DIR (new or empty), kept: DIR/project is the
#                                         # repository, DIR/storage the remote, DIR/clone a clone
#
# Needs git, python3 and the `datavc` on PATH (`make demo` puts the project's there). Every
# claim it prints is checked: it exits non-zero, saying which, when datavc does otherwise.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
if [ $# -ge 1 ]; then
    work=$1
    mkdir -p "$work"
    [ -z "$(ls -A "$work")" ] || { echo "run.sh: $work is not empty" >&2; exit 2; }
    work=$(cd "$work" && pwd)
else
    work=$(mktemp -d "${TMPDIR:-/tmp}/datavc-nightly.XXXXXX")
    trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
fi
# `datavc trust` records its answer under $XDG_CONFIG_HOME: keep it in the work directory.
export XDG_CONFIG_HOME="$work/config"
json="$work/repro.json"   # the last `datavc repro --json`, outside the repository

if [ -t 1 ]; then bold=$'\033[1m' blue=$'\033[1;34m' plain=$'\033[0m'; else bold= blue= plain=; fi
step() { printf '\n%s== %s%s\n' "$blue" "$*" "$plain"; }
show() { printf '\n%s$ %s%s\n' "$bold" "$1" "$plain"; }
# say CMD ARGS...: print the command (arguments with spaces quoted), then run it.
say() {
    local a line=""
    for a in "$@"; do [[ $a == *[[:space:]]* ]] && line+=" '$a'" || line+=" $a"; done
    show "${line# }"
    "$@"
}
# run 'SHELL CODE': print it as written (globs, redirections), then run it.
run() { show "$1"; eval "$1"; }
die() { printf '\nrun.sh: FAILED: %s\n' "$*" >&2; exit 1; }

# repro ARGS...: `datavc repro ARGS --json`, shown as one line per stage (status, why);
# the stages' own output and datavc's progress go to stderr as usual.
repro() {
    show "datavc repro${*:+ $*}"
    datavc repro "$@" --json > "$json"
    python3 - "$json" <<'PY'
import json, sys
for s in json.load(open(sys.argv[1]))["stages"]:
    why = "; ".join(f"{r['kind']} '{r['path']}' {r['detail']}" if r["path"] else r["detail"]
                    for r in s["reasons"])
    print(f"  {s['name']:<14} {s['status']:<14} {why}".rstrip())
PY
}

# expect STAGE=STATUS...: exactly these stages, with these statuses, in the last repro.
expect() {
    local got want
    got=$(python3 -c 'import json, sys
print(" ".join(sorted(s["name"] + "=" + s["status"]
                     for s in json.load(open(sys.argv[1]))["stages"])))' "$json")
    want=$(printf '%s\n' "$@" | sort | xargs)
    [ "$got" = "$want" ] || die "expected $want, got $got"
    echo "  ok: $want"
}

sha() { sha256sum "$@" | cut -d' ' -f1; }

step "1. A repository, the raw data (photos table + 7 days of logs), the pipeline"
mkdir "$work/project"
cd "$work/project"
git init -q -b main
git config user.name "datavc nightly"
git config user.email "nightly@example.com"
say datavc init
say python3 "$here/generate.py" --seed 7 --days 7 --out data/raw
say datavc add data/raw
cp -r "$here/src" "$here/datavc.toml" "$here/params.toml" .
say cat datavc.toml
say datavc trust
say datavc dag
repro -j 2
expect user_features=ran classifier=ran train=ran evaluate=ran
say cat metrics.json
say git add -A
say git commit -qm "nightly pipeline, days 1-7"
git tag v1
model_v1=$(sha models/model.json)
metrics_v1=$(sha metrics.json)

step "2. touch everything: new timestamps, same content. make would rerun it all"
run 'touch data/raw/photos.csv data/raw/logs/*.jsonl src/*.py params.toml'
show "datavc repro"
out=$(datavc repro)
echo "$out"
[ "$out" = "Everything is up to date." ] || die "a touch made datavc rerun something"
echo "  ok: nothing ran"

step "3. Tomorrow's logs arrive: only what reads them reruns"
say python3 "$here/generate.py" --seed 7 --out data/raw --append-day
say datavc status
say datavc add data/raw
say datavc repro --dry-run
datavc repro --dry-run --json > "$json"
expect user_features=would-run classifier=up-to-date train=would-run evaluate=would-run
repro -j 2
expect user_features=ran classifier=up-to-date train=ran evaluate=ran
say cat metrics.json
say git add -A
say git commit -qm "day 8 of the logs"
model_day8=$(sha models/model.json)
metrics_day8=$(sha metrics.json)
cp metrics.json "$work/metrics-day8.json"

step "4. Edit the classifier without changing what it computes: it reruns, nothing after it"
run 'echo "# Reviewed: the weights are still those of the 2026 study." >> src/classifier.py'
repro
expect user_features=up-to-date classifier=ran train=up-to-date evaluate=up-to-date
say git add -A
say git commit -qm "classifier: a comment"

step "5. An experiment with the learning rate: only train and evaluate rerun"
run "sed 's/^learning_rate = .*/learning_rate = 0.05/' params.toml > p.new && mv p.new params.toml"
say datavc repro --dry-run
repro
expect user_features=up-to-date classifier=up-to-date train=ran evaluate=ran
say cat metrics.json
python3 -c 'import json, sys
new, old = (json.load(open(p))["log_loss"] for p in sys.argv[1:])
sys.exit(new <= old)' metrics.json "$work/metrics-day8.json" || die "0.05 was not worse"
echo "A higher log loss than with 0.5: put the learning rate back. That run is in the"
echo "run-cache, so nothing runs: datavc restores its outputs."
say git checkout -- params.toml
repro
expect user_features=up-to-date classifier=up-to-date train=restored evaluate=restored
[ "$(sha models/model.json)" = "$model_day8" ] || die "the restored model differs"
[ "$(sha metrics.json)" = "$metrics_day8" ] || die "the restored metrics differ"
[ -z "$(git status --porcelain)" ] || die "the work tree is not back at HEAD: $(git status)"
echo "  ok: model and metrics are byte for byte those of step 3; datavc.lock is HEAD's again"

step "6. Back to the first night: git checkout + datavc checkout, and nothing needs to run"
say git checkout -q v1
say datavc checkout
repro
expect user_features=up-to-date classifier=up-to-date train=up-to-date evaluate=up-to-date
[ "$(sha models/model.json)" = "$model_v1" ] || die "the model of v1 was not restored"
[ "$(sha metrics.json)" = "$metrics_v1" ] || die "the metrics of v1 were not restored"
echo "  ok: the model and metrics of v1, byte for byte"
say git checkout -q main
say datavc checkout
repro
expect user_features=up-to-date classifier=up-to-date train=up-to-date evaluate=up-to-date

step "7. The pipeline graph, for the README"
say datavc dag --format mermaid

step "8. Share it: push to a directory remote, pull into a fresh clone, nothing to rerun"
say datavc remote add storage "$work/storage" --default
say git add .datavc/config.toml
say git commit -qm "data remote"
# push sends the added data, the stage outputs datavc.lock records and, with --run-cache,
# every run this clone did (the learning-rate experiment of step 5 too)
say datavc push --run-cache
say git clone -q "$work/project" "$work/clone"
cd "$work/clone"
say datavc init
say datavc pull
say cat datavc.toml
say datavc trust
repro
expect user_features=up-to-date classifier=up-to-date train=up-to-date evaluate=up-to-date
[ "$(sha models/model.json)" = "$model_day8" ] || die "the clone's model differs"
echo "  ok: the clone has the same model, and nothing to rerun"

step "9. A teammate tries the learning rate of step 5: restored from the remote, not run"
run "sed 's/^learning_rate = .*/learning_rate = 0.05/' params.toml > p.new && mv p.new params.toml"
repro
expect user_features=up-to-date classifier=up-to-date train=restored evaluate=restored
echo "  ok: the run pushed from the project came back from the remote's run-cache"

echo
echo "run.sh: OK - reruns followed content, not timestamps; old runs came back without running"
