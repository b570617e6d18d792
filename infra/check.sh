#!/usr/bin/env bash
# Static security checks of the Bicep templates with checkov, offline.
#
#   bash infra/check.sh
#
# checkov lives in its own venv (.venv-checkov at the repo root) so that its many dependencies
# never touch the app's pinned .venv. The venv is created on first use and reused after that.
# Every failed check fails this script; a check that does not apply is skipped inline in the
# Bicep with `// #checkov:skip=CKV_AZURE_XX: reason`. On success it prints one summary line.
set -euo pipefail

CHECKOV_VERSION=3.3.30
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv-checkov"
python="${PYTHON:-python3.11}"
stamp="$venv/.checkov-$CHECKOV_VERSION"

if [[ ! -f "$stamp" ]]; then
  command -v "$python" >/dev/null || { echo "infra/check.sh: $python not found" >&2; exit 2; }
  echo "infra/check.sh: installing checkov $CHECKOV_VERSION into .venv-checkov" >&2
  [[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
  log="$(mktemp)"
  if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
      "checkov==$CHECKOV_VERSION" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "infra/check.sh: could not install checkov $CHECKOV_VERSION" >&2
    exit 2
  fi
  rm -f "$log" "$venv"/.checkov-*
  touch "$stamp"
fi

report="$(mktemp)"
errors="$(mktemp)"
trap 'rm -f "$report" "$errors"' EXIT

# checkov exits 1 when a check fails; the report below decides, and also catches a crash.
"$venv/bin/checkov" --directory "$root/infra" --framework bicep --quiet --compact \
  --skip-download --output json >"$report" 2>"$errors" || true

"$venv/bin/python" - "$root/infra" "$report" "$errors" "$CHECKOV_VERSION" <<'PY'
"""Read checkov's JSON report; print one line, or every failure and exit 1."""
import json
import re
import sys
from pathlib import Path

from pycep import BicepParser

infra, report, errors, version = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
try:
    data = json.loads(report.read_text() or "null")
except json.JSONDecodeError:
    data = None
if isinstance(data, list):
    data = next((d for d in data if d.get("check_type") == "bicep"), None)
if not isinstance(data, dict) or "summary" not in data:
    sys.stderr.write(errors.read_text() + report.read_text()[:2000])
    sys.exit("infra/check.sh: checkov produced no bicep report (see above)")

summary = data["summary"]
problems = []
if summary.get("parsing_errors"):
    problems.append(f"{summary['parsing_errors']} Bicep file(s) could not be parsed by checkov")

# checkov only checks what its parser (pycep) returns, and pycep silently drops resources it
# cannot represent (several child resources nested in one parent, for example). Count the
# `resource` declarations ourselves so nothing escapes the checks unnoticed.
files = sorted(infra.rglob("*.bicep"))
for path in files:
    declared = len(re.findall(r"^\s*resource\s+\w+\s+'", path.read_text(), flags=re.M))
    parsed = len(BicepParser().parse(file_path=path).get("resources", {}))
    if parsed != declared:
        problems.append(
            f"{path.relative_to(infra.parent)}: checkov sees {parsed} of {declared} resources "
            "(declare child resources at the top level with `parent:`)"
        )

for check in data.get("results", {}).get("failed_checks", []):
    start, end = check.get("file_line_range", [0, 0])
    problems.append(
        f"{check['check_id']} {check['resource']} (infra{check['file_path']}:{start}-{end}): "
        f"{check['check_name']}"
    )

line = (
    f"infra/check.sh: checkov {version} on {len(files)} Bicep files: "
    f"{summary['passed']} passed, {summary['failed']} failed, {summary['skipped']} skipped inline"
)
if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(line)
print(line)
PY
