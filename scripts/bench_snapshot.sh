#!/usr/bin/env bash
# make bench-snapshot: the snapshot engine against restic (bench/snapshot_bench.py), installing
# Debian's restic when it is missing. Arguments go to the benchmark: make bench-snapshot ARGS="--size 7G"
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

command -v restic >/dev/null || apt_install restic
exec .venv/bin/python bench/snapshot_bench.py "$@"
