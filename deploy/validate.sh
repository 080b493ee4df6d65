#!/usr/bin/env bash
# Validates every deploy artifact with its own ecosystem's validator. The CI entry point:
#
#   bash deploy/validate.sh
#
# Installs what it needs on a fresh machine: a virtualenv at .venv-deploy/ with the pinned
# tools of deploy/requirements.txt (PyPI), Debian's systemd package if systemd-analyze is
# missing and Debian's prometheus package if promtool is missing (apt-get). Runs every validator, prints each one's output, and exits non-zero if any
# reported an error or a warning (cfn-lint informational findings count too).
#
#   cfn-lint           deploy/cloudformation/*.yaml (CloudFormation schemas, IAM, ASL definition)
#   checkov            deploy/cloudformation (security scanner; each skipped check is in the
#                      resource's Metadata with its reason, and printed below)
#   state machines     deploy/tests/test_*.py (run the ASL offline: moto's interpreter; the
#                      backup and restore machines, and the transition budgets)
#   systemd-analyze    verify + offline security score of deploy/systemd/orchestrator.service
#   hadolint           deploy/container/Dockerfile
#   botocore           deploy/ecs/task-definition.json vs ecs:RegisterTaskDefinition's input shape
#   ShellCheck         this script, the .deb's build and check scripts and maintainer scripts
#   promtool           check rules + test rules of deploy/prometheus/alerts.yaml (alerts_test.yaml)
#   rules_tool.py      deploy/prometheus/prometheusrule.yaml has the same groups as alerts.yaml
#   check_promql.py    every PromQL expression of the rules and deploy/grafana/orchestrator.json
#                      parses (promtool), the dashboard's structure, and every orchestrator_*
#                      name they read is in testdata/metrics-full.txt; then its own tests
#
# The Rust side of the contract (execution input vs the machine's $.paths) is
# `cargo test --test deploy_contract`, part of `cargo test`.
set -uo pipefail
export PYTHONDONTWRITEBYTECODE=1   # no __pycache__ in the work tree

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2
VENV="$ROOT/.venv-deploy"
REQUIREMENTS="$ROOT/deploy/requirements.txt"
failed=()

section() { printf '\n=== %s ===\n' "$1"; }

# Runs a validator; it fails on a non-zero exit status, or (with --quiet-ok) on any output.
run() {
    local name="$1" quiet_ok=0 output status
    shift
    if [[ "$1" == "--quiet-ok" ]]; then quiet_ok=1; shift; fi
    section "$name"
    printf '$ %s\n' "$*"
    output="$("$@" 2>&1)"
    status=$?
    [[ -n "$output" ]] && printf '%s\n' "$output"
    if (( status != 0 )) || { (( quiet_ok )) && [[ -n "$output" ]]; }; then
        printf -- '--> %s: FAILED (exit %d)\n' "$name" "$status"
        failed+=("$name")
    else
        printf -- '--> %s: OK\n' "$name"
    fi
}

# --- tools -------------------------------------------------------------------------------
section "setup"
python="$(command -v python3 || true)"
if [[ -z "$python" ]] || ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
    echo "installing python3-venv (apt)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
    python="$(command -v python3)"
fi
# One requirements file, two virtualenvs: checkov's own pins (boto3) conflict with the
# botocore the state machine tests validate requests against.
CHECKOV_VENV="$ROOT/.venv-checkov"
want="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
make_venv() { # DIR, then the requirement lines to install
    local dir="$1" lines="$2"
    if [[ ! -x "$dir/bin/python" ]] || [[ "$(cat "$dir/.requirements.sha256" 2>/dev/null)" != "$want" ]]; then
        echo "creating $dir from $REQUIREMENTS"
        rm -rf "$dir"
        "$python" -m venv "$dir" || exit 2
        "$dir/bin/python" -m pip install --quiet --disable-pip-version-check -r /dev/stdin <<<"$lines" || exit 2
        echo "*" > "$dir/.gitignore"
        echo "$want" > "$dir/.requirements.sha256"
    fi
}
make_venv "$VENV" "$(grep -v '^checkov==' "$REQUIREMENTS")"
make_venv "$CHECKOV_VENV" "$(grep '^checkov==' "$REQUIREMENTS")"
"$VENV/bin/cfn-lint" --version
"$VENV/bin/python" -c 'import botocore, moto; print("botocore", botocore.__version__, "/ moto", moto.__version__)'
"$VENV/bin/hadolint" --version
echo "checkov $("$CHECKOV_VENV/bin/checkov" --version)"
if ! command -v systemd-analyze >/dev/null; then
    echo "installing systemd (apt) for systemd-analyze"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null
fi
systemd-analyze --version | head -n 1
# promtool: Debian's prometheus package (bookworm: 2.42, which has `check rules` and `test rules`).
# Only its binaries are wanted: where systemd runs, the service the package starts is stopped.
if ! command -v promtool >/dev/null; then
    echo "installing prometheus (apt) for promtool"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    if [[ -d /run/systemd/system ]]; then systemctl disable --now prometheus.service >/dev/null 2>&1 || true; fi
fi
promtool --version 2>&1 | head -n 1
if [[ "$(promtool --help 2>&1)" != *"test rules"* ]]; then
    echo "promtool has no 'test rules' subcommand"; exit 2
fi

# --- validators --------------------------------------------------------------------------
run "cfn-lint" "$VENV/bin/cfn-lint" --include-checks I -- deploy/cloudformation/*.yaml

# --skip-download: no call to Prisma Cloud (no network in CI); the checks are in the package.
# The compact report, less the passed checks: failures, and each skipped check with its reason.
checkov_report() {
    local out status
    out="$("$CHECKOV_VENV/bin/checkov" --directory deploy/cloudformation --framework cloudformation \
        --compact --skip-download 2>&1)"
    status=$?
    grep -E '^Passed checks' <<<"$out"
    grep -E -B1 -A1 'FAILED for|SKIPPED for' <<<"$out" | grep -v -E '^--$'
    return "$status"
}
run "checkov" checkov_report

run "state machines (offline ASL runs)" \
    "$VENV/bin/python" -m unittest discover --start-directory deploy/tests --pattern 'test_*.py'

# systemd-analyze verify insists that every Exec*= binary exists. Verify a copy of the unit
# whose /usr/local/bin/orchestrator is /bin/true (same flags, same everything else): the unit's
# syntax, directives and sandboxing are what is checked, not the daemon.
unit_dir="$(mktemp -d)"
trap 'rm -rf "$unit_dir"' EXIT
sed 's#/usr/local/bin/orchestrator#/bin/true#g' deploy/systemd/orchestrator.service \
    > "$unit_dir/orchestrator.service"
run "systemd-analyze verify (a copy: binary = /bin/true, same line numbers)" --quiet-ok systemd-analyze verify --man=no "$unit_dir/orchestrator.service"
# Exposure score (0 = fully sandboxed .. 10); --threshold=20 fails above 2.0. Prints the
# settings that still expose something, and the score.
unit_security() {
    local out status
    out="$(systemd-analyze security --offline=true --threshold=20 --no-pager "$1" 2>&1)"
    status=$?
    grep -E '✗|Overall|rror' <<<"$out"
    return "$status"
}
run "systemd-analyze security" unit_security "$unit_dir/orchestrator.service"

run "hadolint" "$VENV/bin/hadolint" deploy/container/Dockerfile

run "botocore RegisterTaskDefinition" "$VENV/bin/python" deploy/ecs/validate_task_definition.py

run "shellcheck" "$VENV/bin/shellcheck" deploy/validate.sh scripts/package-deb.sh deploy/debian/check-deb.sh \
    deploy/debian/postinst deploy/debian/prerm deploy/debian/postrm

run "promtool check rules" promtool check rules deploy/prometheus/alerts.yaml

run "promtool test rules" promtool test rules deploy/prometheus/alerts_test.yaml

run "PrometheusRule = alerts.yaml" "$VENV/bin/python" deploy/prometheus/rules_tool.py prometheusrule --check

run "dashboard and PromQL (check_promql.py)" "$VENV/bin/python" deploy/prometheus/check_promql.py \
    --metrics deploy/prometheus/testdata/metrics-full.txt

run "check_promql.py and rules_tool.py tests" \
    "$VENV/bin/python" -m unittest discover --start-directory deploy/prometheus/tests --pattern 'test_*.py'

# --- result ------------------------------------------------------------------------------
section "summary"
if (( ${#failed[@]} )); then
    printf 'FAILED: %s\n' "${failed[@]}"
    exit 1
fi
echo "all deploy validators passed"
