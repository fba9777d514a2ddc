#!/usr/bin/env bash
# The Jumpstarter driver's tests, as .ci/run runs them: builds the tftplab
# binary, makes a virtual environment (target/jumpstarter-venv) with
# jumpstarter 0.9.0 and this package from PyPI, and runs tests/ with
# TFTPLAB_REQUIRE_JUMPSTARTER=1 (a missing piece fails instead of skipping).
set -euo pipefail
cd "$(dirname "$0")/../.."

python=
for candidate in ${PYTHON:-} python3.11 python3.12 python3.13 python3 /root/.pyenv/versions/3.11.7/bin/python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
        "$candidate" -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        python=$candidate
        break
    fi
done
if [ -z "$python" ]; then
    echo "no Python >= 3.11 with venv found (set PYTHON=...)" >&2
    exit 1
fi

cargo build -p tftplab --bin tftplab
venv=target/jumpstarter-venv
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e "hw-tests/jumpstarter[test]"

export TFTPLAB_BIN="$PWD/target/debug/tftplab"
export TFTPLAB_REQUIRE_JUMPSTARTER=1
cd hw-tests/jumpstarter
"../../target/jumpstarter-venv/bin/python" -m pytest -q "$@"
