#!/usr/bin/env bash
# Validate every tenant settings file of a tenant-config repository with xngin.
#
#   examples/ci/validate-settings.sh [--deep] [ROOT]
#
# Finds *.settings.json and *.settings.toml (and xngin.settings.json/.toml) under ROOT
# (default: the current directory), validates them all in one xngin run, prints one
# FILE:LINE:COL: path: message line per problem (GitHub Actions also gets ::error annotations),
# writes the machine report to $XNGIN_REPORT (default: xngin-settings-report.json), and exits
# with xngin's code: 0 all valid, 3 some file invalid, 1 some check could not run
# (unreadable file; with --deep: a warehouse or sheet unreachable).
#
# --deep resolves ${secret:NAME} from the environment (export the CI secrets as environment
# variables), connects to each warehouse and checks each sheet against its live table.
set -euo pipefail

deep=()
if [[ "${1:-}" == "--deep" ]]; then
  deep=(--deep)
  shift
fi
root="${1:-.}"
xngin="${XNGIN:-xngin}"
report="${XNGIN_REPORT:-xngin-settings-report.json}"

mapfile -d '' files < <(find "$root" -type f \( -name '*.settings.json' -o -name '*.settings.toml' \) \
  -not -path '*/.git/*' -not -path '*/node_modules/*' -print0 | sort -z)
if [[ ${#files[@]} -eq 0 ]]; then
  echo "no *.settings.json / *.settings.toml files under $root" >&2
  exit 0
fi
echo "validating ${#files[@]} settings file(s)${deep:+ (deep)}" >&2

set +e
"$xngin" validate-settings "${deep[@]}" --format json "${files[@]}" >"$report"
code=$?
set -e

if [[ $code -ne 0 && $code -ne 1 && $code -ne 3 ]]; then
  echo "xngin validate-settings failed with exit code $code" >&2
  exit "$code"
fi

# One line per problem, from the JSON report (jq when available, else python3).
summarize() {
  if command -v jq >/dev/null 2>&1; then
    jq -r '.files[] | (.errors + .failures)[] |
      "\(.file):\(.line):\(.column): \(if .path == "" then "" else .path + ": " end)\(.message)"' "$report"
  else
    python3 - "$report" <<'PY'
import json, sys
for f in json.load(open(sys.argv[1]))["files"]:
    for d in f["errors"] + f["failures"]:
        path = d["path"] + ": " if d["path"] else ""
        print(f'{d["file"]}:{d["line"]}:{d["column"]}: {path}{d["message"]}')
PY
  fi
}

while IFS= read -r line; do
  [[ -z "$line" ]] && continue
  echo "$line" >&2
  if [[ -n "${GITHUB_ACTIONS:-}" ]]; then
    # FILE:LINE:COL: rest  ->  ::error file=FILE,line=LINE,col=COL::rest
    if [[ "$line" =~ ^(.*):([0-9]+):([0-9]+):\ (.*)$ ]]; then
      echo "::error file=${BASH_REMATCH[1]},line=${BASH_REMATCH[2]},col=${BASH_REMATCH[3]}::${BASH_REMATCH[4]}"
    else
      echo "::error::$line"
    fi
  fi
done < <(summarize)

case $code in
  0) echo "all ${#files[@]} settings file(s) are valid" >&2 ;;
  3) echo "some settings files are invalid (report: $report)" >&2 ;;
  1) echo "some checks could not run (report: $report)" >&2 ;;
esac
exit "$code"
