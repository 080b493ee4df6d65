#!/usr/bin/env bash
# Runs every test of the project: the deploy validators (cfn-lint, the state machine run offline,
# systemd-analyze, hadolint, botocore's ECS schema; deploy/validate.sh installs them itself), the
# Debian package (scripts/package-deb.sh, checked by deploy/debian/check-deb.sh), then
# the Rust unit, integration and end-to-end tests (the real binary against the local endpoint).
# Ends with one line that totals the Rust tests: "tests: N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/validate.sh
# The Debian package: the release build (5-8 min on 2 cores, the bulk of this step), then
# dpkg-deb, lintian, and the unpacked tree's checks (~1 min).
deb="$(bash scripts/package-deb.sh | tail -n 1)"
bash deploy/debian/check-deb.sh "$deb"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --locked --workspace --no-fail-fast 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
