#!/usr/bin/env bash
# Benchmark of reading a CSV with one very long field (issue 9): the time must grow linearly
# with the field's length (it was quadratic: 64 MB 3 s, 128 MB 10 s, 2 GB over 600 s).
#
# For each size S (MB) it generates long_S.csv: a header `id,g,note`, a first record whose
# quoted `note` is S MB (with a doubled quote inside), then 20,000 short records, of which
# record 10,001 (right after the 10,000-record type sample) carries a second quoted field of
# S/4 MB. It times
#   xngin assign --input long_S.csv --id-column id --strata g --arms a,b --seed 1 --output out.csv
# as a whole process with peak RSS (/usr/bin/time). Linear means the last column (seconds per
# MB) stays about constant across sizes.
#
# Usage: bench/long_field.sh [MB ...]        (default: 64 128 512)
# Builds the release binary (cargo build --release) unless XNGIN_BIN names a binary. Data goes
# to $BENCH_DIR (default /tmp/xngin-bench) and is reused across runs.
set -euo pipefail

cd "$(dirname "$0")/.."
SIZES=("${@:-64 128 512}")
# shellcheck disable=SC2206
SIZES=(${SIZES[*]})
BENCH_DIR=${BENCH_DIR:-/tmp/xngin-bench}
mkdir -p "$BENCH_DIR"

if [ -n "${XNGIN_BIN:-}" ]; then
    XNGIN=$XNGIN_BIN
else
    cargo build --release --quiet
    TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    XNGIN="$TARGET_DIR/release/xngin"
fi

gen() { # gen MB FILE
    python3 - "$1" "$2" <<'PY'
import sys
mb, path = int(sys.argv[1]), sys.argv[2]
chunk = "x" * (1 << 20)
with open(path, "w") as f:
    f.write("id,g,note\n")
    f.write('1,a,"')
    for _ in range(mb):
        f.write(chunk)
    f.write('""end"\n')
    for i in range(2, 20_002):
        if i == 10_001:
            f.write(f'{i},b,"')
            for _ in range(max(mb // 4, 1)):
                f.write(chunk)
            f.write('"\n')
        else:
            f.write(f"{i},{'ab'[i % 2]},n\n")
PY
}

printf '| field MB | file MB | wall s | peak RSS MB | s per MB |\n|---:|---:|---:|---:|---:|\n'
for mb in "${SIZES[@]}"; do
    f="$BENCH_DIR/long_$mb.csv"
    [ -f "$f" ] || gen "$mb" "$f"
    size=$(( $(stat -c %s "$f") / 1048576 ))
    log="$BENCH_DIR/long_$mb.time"
    /usr/bin/time -f '%e %M' -o "$log" "$XNGIN" -q assign --input "$f" --id-column id \
        --strata g --arms a,b --seed 1 --output "$BENCH_DIR/long_out.csv" --replace >/dev/null
    read -r wall rss <"$log"
    python3 -c "print(f'| $mb | $size | {$wall:.2f} | {$rss/1024:.0f} | {$wall/$size:.4f} |')"
done
