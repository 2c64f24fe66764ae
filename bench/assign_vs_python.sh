#!/usr/bin/env bash
# xngin assign against pandas + stochatreat on the same participants file, in the same run.
#
# The file (issue 12's shape): N rows of id; text columns with 2, 4 and 50 levels and a few %
# NULLs; an integer, a float and a boolean (about 175 MB at 5M rows). Both tools read the CSV,
# stratify on the three text columns, assign two arms with seed 1 and write a CSV. Each is timed
# as a whole process with its peak RSS (/usr/bin/time -v), best of REPEAT runs (default 3).
# Target: xngin at least 8x faster and at most a quarter of the Python peak memory.
#
# Usage: bench/assign_vs_python.sh [N]          (default 5000000)
# Builds the release binary itself; pandas and stochatreat go into a virtual environment under
# $BENCH_DIR (default /tmp/xngin-bench), as does the data (reused across runs).
set -euo pipefail

cd "$(dirname "$0")/.."
N=${1:-5000000}
REPEAT=${REPEAT:-3}
BENCH_DIR=${BENCH_DIR:-/tmp/xngin-bench}
mkdir -p "$BENCH_DIR"

cargo build --release --quiet
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
XNGIN="$TARGET_DIR/release/xngin"

VENV="$BENCH_DIR/py-venv"
if ! "$VENV/bin/python" -c "import pandas, stochatreat" 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check pandas stochatreat
fi

csv="$BENCH_DIR/people7_$N.csv"
if [ ! -s "$csv" ]; then
    echo "generating $csv"
    python3 - "$N" "$csv" <<'PY'
import random, sys
n, path = int(sys.argv[1]), sys.argv[2]
rnd = random.Random(20261204)
c4 = ["north", "south", "east", "west"]
c50 = ["district_%02d" % i for i in range(50)]
with open(path, "w") as f:
    f.write("id,gender,region,district,age,income,active\n")
    buf = []
    for i in range(1, n + 1):
        g = "" if rnd.random() < 0.03 else ("female" if rnd.random() < 0.5 else "male")
        r = "" if rnd.random() < 0.04 else c4[rnd.randrange(4)]
        d = "" if rnd.random() < 0.02 else c50[rnd.randrange(50)]
        buf.append("%d,%s,%s,%s,%d,%.2f,%s\n" % (i, g, r, d, rnd.randrange(18, 90),
                   rnd.lognormvariate(10, 0.6), "true" if rnd.random() < 0.4 else "false"))
        if len(buf) >= 100000:
            f.write("".join(buf)); buf = []
    f.write("".join(buf))
PY
fi
cat "$csv" > /dev/null  # warm the page cache: time the tools, not the disk

cat > "$BENCH_DIR/stochatreat_run.py" <<'PY'
import sys
import pandas as pd
from stochatreat import stochatreat
src, out = sys.argv[1], sys.argv[2]
df = pd.read_csv(src, dtype={"gender": "string", "region": "string", "district": "string"})
for c in ("gender", "region", "district"):
    df[c] = df[c].fillna("__NULL__")
t = stochatreat(data=df, stratum_cols=["gender", "region", "district"], treats=2,
                idx_col="id", random_state=1, misfit_strategy="stratum")
df.merge(t, on="id").to_csv(out, index=False)
PY

best() { # best "label" command...: min wall seconds and max RSS over REPEAT runs
    local label=$1; shift
    local best_wall="" best_cpu="" rss=0
    for _ in $(seq 1 "$REPEAT"); do
        /usr/bin/time -v "$@" > /dev/null 2> "$BENCH_DIR/time.txt"
        local w r c
        w=$(grep 'Elapsed (wall clock)' "$BENCH_DIR/time.txt" | awk '{print $NF}' | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
        r=$(grep 'Maximum resident set size' "$BENCH_DIR/time.txt" | awk '{print $NF}')
        # CPU time (user + system, all threads): not inflated by other work on the cores.
        c=$(awk -F': ' '/User time|System time/ {s += $2} END {printf "%.2f", s}' "$BENCH_DIR/time.txt")
        if [ -z "$best_wall" ] || [ "$(echo "$w < $best_wall" | bc)" = 1 ]; then best_wall=$w; fi
        if [ -z "$best_cpu" ] || [ "$(echo "$c < $best_cpu" | bc)" = 1 ]; then best_cpu=$c; fi
        [ "$r" -gt "$rss" ] && rss=$r
    done
    printf '%-28s wall %7.2f s   cpu %7.2f s   peak RSS %6d MB\n' "$label" "$best_wall" "$best_cpu" $((rss / 1024)) >&2
    echo "$best_wall $rss"
}

echo "$("$XNGIN" --version) on $(nproc) cores, $N rows ($(du -m "$csv" | cut -f1) MB)" >&2
read -r xw xr < <(best "xngin assign" "$XNGIN" -q assign --input "$csv" --id-column id \
    --strata gender,region,district --arms control,treatment --seed 1 \
    --output "$BENCH_DIR/xngin_out.csv" --replace)
read -r pw pr < <(best "pandas + stochatreat" "$VENV/bin/python" "$BENCH_DIR/stochatreat_run.py" "$csv" "$BENCH_DIR/py_out.csv")
printf 'speed-up %.1fx (target >= 8x); memory %.2f of Python peak (target <= 0.25)\n' \
    "$(echo "$pw / $xw" | bc -l)" "$(echo "$xr / $pr" | bc -l)"
