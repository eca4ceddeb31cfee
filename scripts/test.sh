#!/usr/bin/env bash
# The test suite: creates (or reuses) .venv, installs the project with its test extras, runs pytest.
# Extra arguments go to pytest, e.g.  bash scripts/test.sh -k shards
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/venv.sh
source scripts/venv.sh
ensure_venv
python -m pytest "$@"
