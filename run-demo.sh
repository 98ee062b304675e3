#!/usr/bin/env bash
# The main job on a fresh machine: set up .venv once (same as CI), then run the ColorRL demo on
# the bundled synthetic sample. Extra arguments go to `colorrl demo` (e.g. --headless).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source .ci/setup-env
exec colorrl demo "$@"
