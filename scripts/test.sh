#!/usr/bin/env bash
# Runs every test of the project: Rust unit, integration and end-to-end tests (the real binary
# against the local AWS endpoint), then the deploy validators (cfn-lint, systemd-analyze,
# botocore's ECS schema, Dockerfile lint), which deploy/validate.sh installs itself.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --locked
bash deploy/validate.sh
