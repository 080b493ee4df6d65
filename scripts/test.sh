#!/usr/bin/env bash
# Runs every test of the project: the deploy validators (cfn-lint, the state machine run offline,
# systemd-analyze, hadolint, botocore's ECS schema; deploy/validate.sh installs them itself), then
# the Rust unit, integration and end-to-end tests (the real binary against the local endpoint).
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/validate.sh
cargo test --locked
