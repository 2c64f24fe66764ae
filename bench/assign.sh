#!/usr/bin/env bash
# Benchmark of `xngin assign` (issue 6): generates a participants CSV of N rows (id; 3
# categorical columns with 2, 5 and 50 levels and some NULLs; 2 numeric; 1 boolean), then times
#   xngin assign --input ... --strata c2,c5,c50 --arms a,b --seed 1 --output out.csv
# as a whole process with peak RSS (/usr/bin/time -v). Targets at 5M rows on 2 cores: under
# 1.0 s wall and under 400 MB peak RSS.
#
# With XNGIN_BENCH_POSTGRES_URL set (e.g. postgres://postgres@127.0.0.1:5432/test) it also
# times `--write-table` of 1M assignments against `psql \copy` of the same CSV.
#
# Usage: bench/assign.sh [N ...]        (default: 1000000 5000000)
# Builds the release binary itself (cargo build --release). Data goes to $BENCH_DIR
# (default /tmp/xngin-bench) and is reused across runs.
set -euo pipefail

cd "$(dirname "$0")/.."
SIZES=("${@:-1000000 5000000}")
# shellcheck disable=SC2206
SIZES=(${SIZES[*]})
BENCH_DIR=${BENCH_DIR:-/tmp/xngin-bench}
mkdir -p "$BENCH_DIR"

cargo build --release --quiet
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
XNGIN="$TARGET_DIR/release/xngin"

gen() { # gen N FILE
    python3 - "$1" "$2" <<'PY'
import random, sys
n, path = int(sys.argv[1]), sys.argv[2]
rnd = random.Random(20261129)
c5 = ["a", "b", "c", "d", "e"]
c50 = ["region_%02d" % i for i in range(50)]
with open(path, "w") as f:
    f.write("id,c2,c5,c50,x1,x2,flag\n")
    buf = []
    for i in range(1, n + 1):
        r = rnd.random()
        c2v = "" if r < 0.02 else ("yes" if r < 0.5 else "no")
        c5v = "" if rnd.random() < 0.05 else c5[rnd.randrange(5)]
        c50v = "" if rnd.random() < 0.01 else c50[rnd.randrange(50)]
        buf.append("%d,%s,%s,%s,%.3f,%d,%s\n" % (i, c2v, c5v, c50v, rnd.gauss(50, 10), rnd.randrange(1000), "true" if rnd.random() < 0.3 else "false"))
        if len(buf) >= 100000:
            f.write("".join(buf)); buf = []
    f.write("".join(buf))
PY
}

echo "$("$XNGIN" --version) on $(nproc) cores"
for n in "${SIZES[@]}"; do
    csv="$BENCH_DIR/participants_$n.csv"
    [ -s "$csv" ] || { echo "generating $csv"; gen "$n" "$csv"; }
    out="$BENCH_DIR/out_$n.csv"
    rm -f "$out" "$out.design.json"
    # Warm the page cache so that the timing is of xngin, not of the disk.
    cat "$csv" > /dev/null
    /usr/bin/time -v "$XNGIN" -q assign --input "$csv" --id-column id --strata c2,c5,c50 --arms a,b \
        --seed 1 --output "$out" --replace 2> "$BENCH_DIR/time_$n.txt" > /dev/null
    wall=$(grep 'Elapsed (wall clock)' "$BENCH_DIR/time_$n.txt" | awk '{print $NF}')
    rss=$(grep 'Maximum resident set size' "$BENCH_DIR/time_$n.txt" | awk '{print $NF}')
    # CPU time (user + system, all threads): unlike the wall time, not inflated by other
    # processes sharing the cores.
    cpu=$(awk -F': ' '/User time|System time/ {s += $2} END {printf "%.2f", s}' "$BENCH_DIR/time_$n.txt")
    printf '%9d rows: wall %s, cpu %s s, peak RSS %d MB, %s rows written\n' "$n" "$wall" "$cpu" $((rss / 1024)) "$(($(wc -l < "$out") - 1))"
done

if [ -n "${XNGIN_BENCH_POSTGRES_URL:-}" ]; then
    n=1000000
    csv="$BENCH_DIR/participants_$n.csv"
    [ -s "$csv" ] || gen "$n" "$csv"
    out="$BENCH_DIR/out_$n.csv"
    [ -s "$out" ] || "$XNGIN" -q assign --input "$csv" --id-column id --strata c2,c5,c50 --arms a,b --seed 1 --output "$out" --replace > /dev/null
    psql -q "$XNGIN_BENCH_POSTGRES_URL" -c 'DROP TABLE IF EXISTS bench_assign, bench_copy' \
        -c "DELETE FROM xngin_experiments WHERE assignment_table = 'bench_assign'" 2>/dev/null || true
    start=$(date +%s.%N)
    "$XNGIN" -q assign --input "$csv" --id-column id --strata c2,c5,c50 --arms a,b --seed 1 \
        --write-table bench_assign --dsn "$XNGIN_BENCH_POSTGRES_URL" --experiment-id bench > /dev/null
    t_x=$(echo "$(date +%s.%N) - $start" | bc)
    psql -q "$XNGIN_BENCH_POSTGRES_URL" -c 'CREATE TABLE bench_copy (participant_id BIGINT, arm_id INTEGER, arm_name VARCHAR, stratum_id INTEGER, c2 VARCHAR, c5 VARCHAR, c50 VARCHAR)'
    start=$(date +%s.%N)
    psql -q "$XNGIN_BENCH_POSTGRES_URL" -c "\\copy bench_copy FROM '$out' WITH (FORMAT csv, HEADER true)"
    t_p=$(echo "$(date +%s.%N) - $start" | bc)
    printf 'PostgreSQL, 1M rows: xngin assign --write-table %.2f s (whole run), psql \\copy %.2f s, ratio %.2f\n' \
        "$t_x" "$t_p" "$(echo "$t_x / $t_p" | bc -l)"
    # The same rows as xngin writes them (experiment_id, created_at, primary key) through psql.
    awk -F, 'NR>1{print "bench," $1 "," $2 "," $3 "," $4 ",2026-01-01 00:00:00.000000+00:00," $5 "," $6 "," $7}' "$out" > "$BENCH_DIR/full_$n.csv"
    PGOPTIONS='-c client_min_messages=warning' psql -q "$XNGIN_BENCH_POSTGRES_URL" -c 'DROP TABLE IF EXISTS bench_full' -c 'CREATE TABLE bench_full (experiment_id VARCHAR NOT NULL,
        participant_id BIGINT NOT NULL, arm_id INTEGER, arm_name VARCHAR, stratum_id INTEGER, created_at TIMESTAMPTZ NOT NULL,
        c2 VARCHAR, c5 VARCHAR, c50 VARCHAR, PRIMARY KEY (experiment_id, participant_id))'
    start=$(date +%s.%N)
    psql -q "$XNGIN_BENCH_POSTGRES_URL" -c "\\copy bench_full FROM '$BENCH_DIR/full_$n.csv' WITH (FORMAT csv)"
    t_f=$(echo "$(date +%s.%N) - $start" | bc)
    printf 'PostgreSQL, 1M rows: psql \\copy of the same 9 columns into the same keyed table %.2f s (xngin / that = %.2f)\n' \
        "$t_f" "$(echo "$t_x / $t_f" | bc -l)"
    psql -q "$XNGIN_BENCH_POSTGRES_URL" -c 'DROP TABLE IF EXISTS bench_full'
    psql -q "$XNGIN_BENCH_POSTGRES_URL" -c 'DROP TABLE IF EXISTS bench_assign, bench_copy' \
        -c "DELETE FROM xngin_experiments WHERE assignment_table = 'bench_assign'"
fi
