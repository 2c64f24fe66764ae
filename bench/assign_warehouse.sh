#!/usr/bin/env bash
# Benchmark of `xngin assign --in-warehouse` on PostgreSQL (issue 12): for each size N, loads
# N synthetic rows with `create-testing-dwh --rows N` (reused across runs), then times
#   xngin assign --participant-type bench --in-warehouse --strata gender,ethnicity \
#       --metrics income --arms control,treatment --seed 1 --write-table bench_inwh_out_N --replace
# as a whole process with the client's peak RSS (/usr/bin/time -v), against the floor on that
# engine: a hand-written CREATE TABLE AS SELECT with the same window sort (row numbers per
# stratum in key order, arms from the block position; income in quartile bins from
# percentile_cont, one more sort). Targets: within 1.3x of the floor; client peak RSS under
# 60 MB and the same at 1M and 10M rows.
#
# Usage: XNGIN_BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
#            bench/assign_warehouse.sh [N ...]          (default: 1000000 10000000)
# Needs psql. Builds the release binary itself (cargo build --release), unless XNGIN names a
# binary to time. Heavy: loading 10M
# rows takes minutes and about 2 GB of database space.
set -euo pipefail

cd "$(dirname "$0")/.."
URL=${XNGIN_BENCH_POSTGRES_URL:-${XNGIN_TEST_POSTGRES_URL:-}}
if [ -z "$URL" ]; then
    echo "set XNGIN_BENCH_POSTGRES_URL (e.g. postgres://postgres@127.0.0.1:5432/test)" >&2
    exit 2
fi
case "$URL" in *sslmode*) ;; *\?*) URL="$URL&sslmode=disable" ;; *) URL="$URL?sslmode=disable" ;; esac
SIZES=("${@:-1000000 10000000}")
# shellcheck disable=SC2206
SIZES=(${SIZES[*]})
BENCH_DIR=${BENCH_DIR:-/tmp/xngin-bench-wh}
mkdir -p "$BENCH_DIR"

if [ -z "${XNGIN:-}" ]; then
    cargo build --release --quiet
    TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    XNGIN="$TARGET_DIR/release/xngin"
fi
export XNGIN_HOME="$BENCH_DIR/home"
cp fixtures/testing_sheet.csv "$BENCH_DIR/sheet.csv"

now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.2f}')"; }

echo "$("$XNGIN" --version) on $(nproc) cores; $(psql "$URL" -Atc 'SELECT version()' | cut -d, -f1)"
printf '%-10s %10s %10s %7s %12s\n' rows xngin_s floor_s ratio client_rss_MB
for n in "${SIZES[@]}"; do
    src="bench_inwh_$n"
    "$XNGIN" -q create-testing-dwh --dsn "$URL" --rows "$n" --table-name "$src" --allow-existing
    cat > "$BENCH_DIR/settings_$n.toml" <<TOML
[[datasources]]
id = "bench"
[datasources.config]
type = "remote"
dwh = "$URL"
[[datasources.config.participants]]
participant_type = "bench"
table_name = "$src"
sheet = { url = "$BENCH_DIR/sheet.csv", worksheet = "bench" }
TOML
    psql "$URL" -qAtc "VACUUM ANALYZE \"$src\"" > /dev/null
    # The floor: the same window sort, written with CREATE TABLE AS SELECT.
    psql "$URL" -qAtc "DROP TABLE IF EXISTS bench_inwh_floor_$n" > /dev/null
    t0=$(now)
    psql "$URL" -qAtc "CREATE TABLE bench_inwh_floor_$n AS
        SELECT 'bench'::text AS experiment_id, id AS participant_id,
               (j % 2)::int AS arm_id, sid AS stratum_id, now() AS created_at, ethnicity, gender, income
        FROM (SELECT id, gender, ethnicity, income,
                     DENSE_RANK() OVER (ORDER BY ethnicity COLLATE \"C\", gender COLLATE \"C\", bin NULLS LAST) - 1 AS sid,
                     ROW_NUMBER() OVER (PARTITION BY ethnicity, gender, bin
                                        ORDER BY md5('1:' || id::text) COLLATE \"C\", id) - 1 AS j
              FROM (SELECT t.*, width_bucket(income, e.q) AS bin FROM \"$src\" t CROSS JOIN
                      (SELECT percentile_cont(ARRAY[0.25, 0.5, 0.75]) WITHIN GROUP (ORDER BY income) AS q
                       FROM \"$src\") e) b) s;
        ALTER TABLE bench_inwh_floor_$n ADD PRIMARY KEY (experiment_id, participant_id)" > /dev/null
    floor=$(secs "$t0" "$(now)")
    # A new table each time, as the floor creates one.
    psql "$URL" -qAtc "DROP TABLE IF EXISTS bench_inwh_out_$n; DELETE FROM xngin_experiments WHERE assignment_table = 'bench_inwh_out_$n'" > /dev/null 2>&1 || true
    /usr/bin/time -v "$XNGIN" -q --settings "$BENCH_DIR/settings_$n.toml" assign --participant-type bench \
        --in-warehouse --strata gender,ethnicity --metrics income --arms control,treatment --seed 1 \
        --experiment-id bench --write-table "bench_inwh_out_$n" --replace \
        2> "$BENCH_DIR/time_$n.txt" > /dev/null || { cat "$BENCH_DIR/time_$n.txt" >&2; exit 1; }
    wall=$(grep 'Elapsed (wall clock)' "$BENCH_DIR/time_$n.txt" | awk '{print $NF}')
    wall_s=$(python3 -c "p='$wall'.split(':'); print(sum(float(x) * 60 ** i for i, x in enumerate(reversed(p))))")
    rss=$(grep 'Maximum resident set size' "$BENCH_DIR/time_$n.txt" | awk '{print $NF}')
    printf '%-10s %10.2f %10s %7.2f %12d\n' "$n" "$wall_s" "$floor" \
        "$(python3 -c "print($wall_s / $floor)")" "$((rss / 1024))"
done
