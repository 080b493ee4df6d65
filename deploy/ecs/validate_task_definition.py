"""Validates deploy/ecs/task-definition.json against ECS's own request schema.

1. botocore's service model for ecs:RegisterTaskDefinition (the shape `aws ecs
   register-task-definition --cli-input-json` sends): unknown members, wrong types, missing
   required members, out-of-range numbers, invalid enum values. The file is checked as written
   (its ${VAR} placeholders are strings) and rendered with sample values.
2. What this deployment relies on beyond the schema: Fargate settings, the health check, the
   config secret, awslogs, and agreement with the ECS service stack's task definition.

Exit status 1 on any finding. Run: .venv-deploy/bin/python deploy/ecs/validate_task_definition.py
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import botocore
import botocore.session
from botocore.validate import ParamValidator
from cfnlint.decode import cfn_yaml

DEPLOY = Path(__file__).resolve().parents[1]
TASK_DEFINITION = DEPLOY / "ecs" / "task-definition.json"
SERVICE_STACK = DEPLOY / "cloudformation" / "ecs-service.yaml"

PLACEHOLDERS = {
    "ORCHESTRATOR_ROLE_ARN": "arn:aws:iam::123456789012:role/orchestrator-OrchestratorRole-ABC",
    "EXECUTION_ROLE_ARN": "arn:aws:iam::123456789012:role/orchestrator-ecs-ExecutionRole-ABC",
    "IMAGE": "123456789012.dkr.ecr.us-east-1.amazonaws.com/orchestrator:1.0.0",
    "AWS_REGION": "us-east-1",
    "AWS_ACCOUNT_ID": "123456789012",
}
# Fargate's task-level CPU units -> allowed memory (MiB), smallest sizes.
FARGATE_MEMORY = {"256": {"512", "1024", "2048"}, "512": {str(m) for m in range(1024, 4097, 1024)}}
HEALTHCHECK = ["CMD", "/usr/local/bin/orchestrator", "healthcheck", "--addr", "127.0.0.1:9464"]


def schema_errors(params: dict) -> list[str]:
    model = botocore.session.get_session().get_service_model("ecs")
    shape = model.operation_model("RegisterTaskDefinition").input_shape
    report = ParamValidator().validate(params, shape)
    return [report.generate_report()] if report.has_errors() else []


def render(text: str) -> str:
    used = set(re.findall(r"\$\{([A-Z_]+)\}", text))
    unknown = used - set(PLACEHOLDERS)
    if unknown:
        raise SystemExit(f"unknown placeholders {sorted(unknown)}; document them in the README (Deploying)")
    return re.sub(r"\$\{([A-Z_]+)\}", lambda m: PLACEHOLDERS[m.group(1)], text)


def deployment_errors(td: dict) -> list[str]:
    errors = []

    def check(ok: bool, message: str):
        if not ok:
            errors.append(message)

    check(td.get("requiresCompatibilities") == ["FARGATE"], "requiresCompatibilities must be [FARGATE]")
    check(td.get("networkMode") == "awsvpc", "Fargate needs networkMode awsvpc")
    check(td.get("memory") in FARGATE_MEMORY.get(td.get("cpu"), set()),
          f"cpu {td.get('cpu')} / memory {td.get('memory')} is not a Fargate size")
    check(bool(td.get("taskRoleArn")), "taskRoleArn (the orchestrator role) is required")
    check(bool(td.get("executionRoleArn")), "executionRoleArn is required for awslogs and secrets")
    containers = td.get("containerDefinitions", [])
    check(len(containers) == 1, "one container")
    for c in containers:
        name = c.get("name")
        check(c.get("essential") is True, f"{name}: essential")
        check(0 < c.get("stopTimeout", 0) <= 120, f"{name}: stopTimeout in 1..120 s (Fargate's limit)")
        check(c.get("stopTimeout", 0) >= 15, f"{name}: stopTimeout must cover the daemon's 10 s drain")
        check(c.get("healthCheck", {}).get("command") == HEALTHCHECK,
              f"{name}: health check must be {HEALTHCHECK}")
        secrets = {s["name"]: s["valueFrom"] for s in c.get("secrets", [])}
        check("ORCHESTRATOR_CONFIG_TOML" in secrets, f"{name}: the config comes from the secret ORCHESTRATOR_CONFIG_TOML")
        check(":parameter/" in secrets.get("ORCHESTRATOR_CONFIG_TOML", ""), f"{name}: config secret is an SSM parameter ARN")
        env = {e["name"] for e in c.get("environment", [])}
        check(not env & {"ORCHESTRATOR_CONFIG"}, f"{name}: ORCHESTRATOR_CONFIG would win over the SSM config")
        check("--config" not in c.get("command", []), f"{name}: --config would win over the SSM config")
        check(c.get("user") not in (None, "0", "root"), f"{name}: run as non-root")
        log = c.get("logConfiguration", {})
        check(log.get("logDriver") == "awslogs", f"{name}: awslogs log driver")
        opts = log.get("options", {})
        for key in ("awslogs-group", "awslogs-region", "awslogs-stream-prefix"):
            check(key in opts, f"{name}: awslogs option {key}")
    return errors


def stack_agreement_errors(td: dict) -> list[str]:
    """The ECS service stack's task definition must behave like the JSON one."""
    if not SERVICE_STACK.exists():
        return []
    template = cfn_yaml.load(str(SERVICE_STACK))
    defs = [r["Properties"] for r in template["Resources"].values()
            if r["Type"] == "AWS::ECS::TaskDefinition"]
    if len(defs) != 1:
        return [f"{SERVICE_STACK.name}: expected one AWS::ECS::TaskDefinition"]
    (props,) = defs
    (cfn,) = props["ContainerDefinitions"]
    (js,) = td["containerDefinitions"]
    def js_get(*keys):
        v = js
        for k in keys:
            v = v.get(k) if isinstance(v, dict) else None
        return v

    pairs = {
        "HealthCheck.Command": (cfn["HealthCheck"]["Command"], js_get("healthCheck", "command")),
        "StopTimeout": (cfn["StopTimeout"], js_get("stopTimeout")),
        "User": (cfn["User"], js_get("user")),
        "ReadonlyRootFilesystem": (cfn["ReadonlyRootFilesystem"], js_get("readonlyRootFilesystem")),
        "Secrets names": ([s["Name"] for s in cfn["Secrets"]], [s["name"] for s in js.get("secrets", [])]),
        "LogDriver": (cfn["LogConfiguration"]["LogDriver"], js_get("logConfiguration", "logDriver")),
        "Cpu/Memory": ((str(props["Cpu"]), str(props["Memory"])), (td.get("cpu"), td.get("memory"))),
    }
    return [f"{SERVICE_STACK.name} and task-definition.json differ in {k}: {a!r} vs {b!r}"
            for k, (a, b) in pairs.items() if a != b]


def main() -> int:
    text = TASK_DEFINITION.read_text()
    raw = json.loads(text)
    rendered = json.loads(render(text))
    problems = []
    for label, params in (("as written", raw), ("rendered", rendered)):
        problems += [f"RegisterTaskDefinition schema ({label}): {e}" for e in schema_errors(params)]
    problems += deployment_errors(rendered)
    problems += stack_agreement_errors(rendered)
    for p in problems:
        print(f"ERROR {p}")
    if problems:
        return 1
    print(f"{TASK_DEFINITION.relative_to(DEPLOY.parent)}: valid RegisterTaskDefinition input "
          f"(botocore {botocore.__version__} ecs model); Fargate, health check, config secret, "
          f"awslogs and {SERVICE_STACK.name} agreement OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
