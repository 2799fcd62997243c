#!/usr/bin/env bash
# Runs the whole test suite: sets up the environment first if needed (scripts/setup.sh), then pytest.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -k diff2lip`).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh" || exit $?
cd "$ROOT"
.venv/bin/python -m pytest -q -ra --durations=15 tests "$@"
rc=$?
if [ "$rc" = 5 ]; then
  echo "scripts/test.sh: pytest collected no tests - treating that as a failure" >&2
  exit 1
fi
exit "$rc"
