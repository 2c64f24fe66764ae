#!/usr/bin/env bash
# Benchmark: `xngin create-testing-dwh --rows N` into PostgreSQL against `psql \copy` of the same
# rows from a CSV file into a table with the same DDL. Target: xngin within 1.2x of \copy.
#
# Usage: bench/load.sh [ROWS] (default 1000000). Needs a running PostgreSQL; set
# XNGIN_BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test). Builds the release
# binary first (cargo build --release). Results are printed as a Markdown table row.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-1000000}
PG=${XNGIN_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
OUT=bench/out
mkdir -p "$OUT"
cargo build --release --quiet
BIN=${CARGO_TARGET_DIR:-target}/release/xngin
[ -x "$BIN" ] || BIN=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys;print(json.load(sys.stdin)["target_directory"])')/release/xngin

"$BIN" create-testing-dwh --rows "$ROWS" --export-csv "$OUT/load_$ROWS.csv" --replace >/dev/null

secs() { python3 -c 'import sys,time,subprocess; t=time.perf_counter(); subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); print(f"{time.perf_counter()-t:.2f}")' "$@"; }

best() { # best of 3 runs of a command
  local b=999999
  for _ in 1 2 3; do
    local t; t=$(secs "$@")
    b=$(python3 -c "print(min($b, $t))")
  done
  echo "$b"
}

# The same DDL xngin creates, for \copy.
"$BIN" create-testing-dwh --dsn "$PG" --rows 1 --table-name bench_copy_target --replace >/dev/null
psql "$PG" -qc "TRUNCATE bench_copy_target"

t_xngin=$(best "$BIN" -q create-testing-dwh --dsn "$PG" --rows "$ROWS" --table-name bench_load --replace)
t_copy=$(best bash -c "psql '$PG' -qc 'TRUNCATE bench_copy_target' && psql '$PG' -qc \"\\copy bench_copy_target FROM '$OUT/load_$ROWS.csv' WITH (FORMAT csv, HEADER true)\"")
ratio=$(python3 -c "print(f'{$t_xngin/$t_copy:.2f}')")
echo "| rows | xngin create-testing-dwh (s) | psql \\copy (s) | ratio |"
echo "|---:|---:|---:|---:|"
echo "| $ROWS | $t_xngin | $t_copy | ${ratio}x |"
psql "$PG" -qc "DROP TABLE IF EXISTS bench_load; DROP TABLE IF EXISTS bench_copy_target"
