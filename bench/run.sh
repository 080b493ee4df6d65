#!/usr/bin/env bash
# The benchmark suite of orchestrator (issue 6): one command, bounded in time, loopback only.
#
#   bash bench/run.sh                        # N = 100, 1000, 10000, 100000
#   BENCH_SIZES="100 1000" bash bench/run.sh # a quick subset
#
# Builds the release binary, installs the AWS CLI into .venv-bench/ (for the cron comparison;
# skipped with a note when PyPI cannot be reached), then runs bench/bench.py, which starts its
# own `orchestrator sandbox` processes on 127.0.0.1 and writes:
#   - BENCHMARKS.md: the section between the bench:results markers is replaced;
#   - bench/results/latest.json: every raw figure.
# Other knobs: BENCH_IDLE_WINDOW (s, default 60), BENCH_BIG_IDLE_WINDOW (s at N > 10,000,
# default 30), BENCH_BUDGET (s for bench.py, default 1380; steps that would not fit are skipped
# and listed), BENCH_KEEP_LOGS=1 (keep the daemon logs in /tmp/orchestrator-bench-*),
# BENCH_PACING_N (size of the default-pacing run, default 1000).
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES="${BENCH_SIZES:-100 1000 10000 100000}"
suite_start=$(date +%s)

# The commit the binary is built from (the working tree may differ: then say so).
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  commit="$commit (+ uncommitted changes)"
fi
echo "[bench] cargo build --release ($commit)"
build_start=$(date +%s)
cargo build --release --bin orchestrator
build_seconds=$(( $(date +%s) - build_start ))

AWS_CLI=""
if [ -x .venv-bench/bin/aws ]; then
  AWS_CLI=.venv-bench/bin/aws
else
  echo "[bench] installing awscli into .venv-bench/"
  if python3 -m venv .venv-bench && timeout 300 .venv-bench/bin/pip install -q awscli; then
    AWS_CLI=.venv-bench/bin/aws
  else
    echo "[bench] could not install awscli: the cron comparison is skipped" >&2
  fi
fi

# Only loopback traffic: no proxy, no inherited AWS profile or endpoint (bench.py resets the
# children's environment again).
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy AWS_PROFILE AWS_ENDPOINT_URL
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 \
  AWS_EC2_METADATA_DISABLED=true

commands="BENCH_SIZES=\"$SIZES\" bash bench/run.sh"
# Hard stop well past the budget, in case a step hangs; bench.py's own budget comes first.
timeout --signal=INT --kill-after=30 1740 python3 bench/bench.py \
  --bin target/release/orchestrator \
  --sizes "$SIZES" \
  --aws "$AWS_CLI" \
  --results bench/results \
  --md BENCHMARKS.md \
  --idle-window "${BENCH_IDLE_WINDOW:-60}" \
  --big-idle-window "${BENCH_BIG_IDLE_WINDOW:-30}" \
  --budget "${BENCH_BUDGET:-1380}" \
  --build-seconds "$build_seconds" \
  --built-commit "$commit" \
  --commands "$commands"

echo "[bench] suite took $(( $(date +%s) - suite_start )) s (build ${build_seconds} s)"
