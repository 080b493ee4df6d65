"""Runs the template's state machines in an Amazon States Language interpreter, offline.

The interpreter is moto's port of LocalStack's Step Functions engine. JSONata states (the ones
that judge the input and build requests and reports) are evaluated by jsonata-python, a port of
jsonata-java (LocalStack's engine), with Step Functions' `$parse` added; AWS runs JSONata 2.0 in
JavaScript, so the expressions keep to plain operators and functions. The AWS SDK tasks the
machines call are answered by scripted fakes, and every request a task sends is validated
against botocore's service model for that operation, so a wrong parameter name or type fails
here as it would fail against AWS.

What this proves: the definitions parse, their intrinsic functions, JSONata expressions and
paths evaluate, and their branches do what README promises. What it cannot prove: IAM, the
vault policy and Vault Lock, and the exact error names AWS gives SDK-integration failures (the
interpreter's naming is patched to AWS's documented `ServiceName.ExceptionName` form).
"""

from __future__ import annotations

import json
import logging
import re
import time
from datetime import timezone
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import jsonata
from botocore.exceptions import ClientError
from botocore.validate import ParamValidator
from cfnlint.decode import cfn_yaml
from moto import mock_aws
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_aws_sdk as aws_sdk_task,
)
from moto.stepfunctions.parser.asl.jsonata import jsonata as moto_jsonata
from moto.stepfunctions.parser.asl.parse import asl_parser
from moto.stepfunctions.parser.backend import execution_worker

TEMPLATE = Path(__file__).resolve().parents[1] / "cloudformation" / "orchestrator.yaml"
PARTITION = "aws"
REGION = "us-east-1"
ACCOUNT = "123456789012"
STACK = "orchestrator"
VAULT = "orchestrator"
BACKUP_ROLE = f"arn:aws:iam::{ACCOUNT}:role/orchestrator-BackupRole"
RESTORE_ROLE = f"arn:aws:iam::{ACCOUNT}:role/orchestrator-RestoreRole"
INSTANCE_ID = "i-0123456789abcdef0"
RESOURCE_ARN = f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{INSTANCE_ID}"
RECOVERY_POINT = f"arn:aws:ec2:{REGION}::image/ami-0123456789abcdef0"
DR = f"arn:aws:backup:us-west-2:{ACCOUNT}:backup-vault:dr"
DR2 = "arn:aws:backup:eu-west-1:210987654321:backup-vault:dr"
DOCUMENT = "orchestrator-systemd-unit"

# Stack parameters of the scenarios (the template's defaults, copies allowed to DR and DR2).
PARAMETERS: dict[str, Any] = {
    "CopyDestinationVaultArns": [DR, "arn:aws:backup:eu-west-1:210987654321:backup-vault:*"],
}

# The interpreter logs every caught error as a warning: the scenarios cause many on purpose.
logging.getLogger("moto").setLevel(logging.CRITICAL)

# AWS names SDK-integration errors `ServiceName.ExceptionName` (PascalCase service name).
aws_sdk_task._SERVICE_ERROR_NAMES.update({"ssm": "Ssm", "backup": "Backup", "ec2": "Ec2"})

# In AWS the context object's $$.Execution.StartTime is an ISO 8601 string; the interpreter
# holds a datetime there.
_ExecutionData = execution_worker.ExecutionData


def _execution_data_as_in_aws(**fields):
    start = fields["StartTime"]
    if not isinstance(start, str):
        fields["StartTime"] = start.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return _ExecutionData(**fields)


execution_worker.ExecutionData = _execution_data_as_in_aws


def _eval_jsonata(expression: str) -> Any:
    compiled = jsonata.Jsonata(expression)
    # Step Functions' own function (AWS's JSONata has it; jsonata has $eval instead).
    compiled.register_lambda("parse", lambda text: json.loads(text))
    return compiled.evaluate(None)


moto_jsonata._eval_jsonata = _eval_jsonata

# The interpreter parses a definition with a Python ANTLR parser on every create and every
# execution (about 2 s for these machines): the parse tree of a text is kept (it is not changed
# by evaluation; the components built from it are still made anew each time).
_TREES: dict[str, Any] = {}


def _parse(definition: str):
    tree = _TREES.get(definition)
    if tree is None:
        errors = asl_parser.SyntaxErrorListener()
        parser = asl_parser.ASLParser(asl_parser.CommonTokenStream(asl_parser.ASLLexer(asl_parser.InputStream(definition))))
        parser.removeErrorListeners()
        parser.addErrorListener(errors)
        tree = parser.state_machine()
        if errors.errors:
            raise asl_parser.ASLParserException(errors=errors.errors)
        _TREES[definition] = tree
    return asl_parser.Preprocessor().visit(tree), tree


asl_parser.AmazonStateLanguageParser.parse = staticmethod(_parse)

_BOTOCORE = botocore.session.get_session()
_VALIDATOR = ParamValidator()


# --- the template, resolved as CloudFormation would for one stack -------------------------

def template(path: Path | None = None) -> dict:
    return cfn_yaml.load(str(path or TEMPLATE))


def _parameter_values(t: dict, overrides: dict) -> dict:
    values = {}
    for name, p in t["Parameters"].items():
        v = overrides.get(name, p.get("Default"))
        if p["Type"] == "CommaDelimitedList" and isinstance(v, str):
            v = [x for x in v.split(",")] if v else [""]
        values[name] = v
    values.update({"AWS::Partition": PARTITION, "AWS::Region": REGION, "AWS::AccountId": ACCOUNT,
                   "AWS::StackName": STACK, "BackupVault": VAULT})
    return values


def _condition(t: dict, name: str, params: dict) -> bool:
    def ev(c):
        if isinstance(c, dict):
            (k, v), = c.items()
            if k == "Fn::Equals":
                a, b = (resolve(x, params, t) for x in v)
                return str(a) == str(b)
            if k == "Fn::Not":
                return not ev(v[0])
            if k == "Condition":
                return ev(t["Conditions"][v])
        raise AssertionError(f"condition {c!r}")
    return ev(t["Conditions"][name])


def resolve(v: Any, params: dict, t: dict) -> Any:
    """The CloudFormation functions the DefinitionSubstitutions use."""
    if isinstance(v, dict) and len(v) == 1:
        (k, x), = v.items()
        if k == "Ref":
            return params[x]
        if k == "Fn::GetAtt":
            return {"BackupRole.Arn": BACKUP_ROLE, "RestoreRole.Arn": RESTORE_ROLE}[".".join(x) if isinstance(x, list) else x]
        if k == "Fn::Join":
            sep, items = x
            items = resolve(items, params, t)
            return sep.join(str(resolve(i, params, t)) for i in items)
        if k == "Fn::If":
            cond, a, b = x
            return resolve(a if _condition(t, cond, params) else b, params, t)
        if k == "Fn::Sub":
            text, local = (x, {}) if isinstance(x, str) else (x[0], x[1])
            local = {n: resolve(e, params, t) for n, e in local.items()}

            def one(m):
                name = m.group(1)
                value = local[name] if name in local else params[name]
                return ",".join(value) if isinstance(value, list) else str(value)
            return re.sub(r"\$\{([^}!]+)\}", one, text)
    if isinstance(v, list):
        return [resolve(i, params, t) for i in v]
    if isinstance(v, dict):
        return {k: resolve(x, params, t) for k, x in v.items()}
    return v


def definition_json(machine: str = "BackupStateMachine", fast: bool = True, template_path: Path | None = None,
                    **overrides: Any) -> str:
    """A machine's definition with DefinitionSubstitutions applied, as CloudFormation does.

    Substituted text is inserted as is (not JSON-escaped), the stricter of the two ways
    CloudFormation could do it: a `"` or `\\` in a substitution breaks the JSON here.
    With `fast`, waits become 0 s and retry intervals 1 s so the scenarios run in seconds;
    `overrides` are stack parameters.
    """
    t = template(template_path)
    params = _parameter_values(t, {**PARAMETERS, **overrides})
    props = t["Resources"][machine]["Properties"]
    substitutions = {k: str(resolve(v, params, t)) for k, v in props["DefinitionSubstitutions"].items()}
    definition = json.loads(json.dumps(props["Definition"]))
    if fast:
        def quicken(states: dict) -> None:
            for state in states.values():
                if state["Type"] == "Wait":
                    state.pop("SecondsPath", None)
                    state["Seconds"] = 0
                for retrier in state.get("Retry", []):
                    retrier["IntervalSeconds"] = 1
                    retrier["BackoffRate"] = 1.0
                    retrier.pop("JitterStrategy", None)
                if state["Type"] == "Map":
                    quicken(state["ItemProcessor"]["States"])

        quicken(definition["States"])
    text = json.dumps(definition)
    unknown = set(re.findall(r"\$\{([^}]+)\}", text)) - set(substitutions)
    assert not unknown, f"placeholders without a substitution: {unknown}"
    text = re.sub(r"\$\{([^}]+)\}", lambda m: substitutions[m.group(1)], text)
    json.loads(text)  # still JSON: no substitution carried a quote or a backslash
    return text


# --- scripted AWS -----------------------------------------------------------------------

class AwsError(ClientError):
    """A service error; subclasses are named like the modelled exception."""

    def __init__(self, message: str):
        super().__init__({"Error": {"Code": type(self).__name__, "Message": message},
                          "ResponseMetadata": {"HTTPStatusCode": 400, "RequestId": "req"}},
                         "call")


class InvocationDoesNotExistException(AwsError):
    pass


class InvalidParameterValueException(AwsError):
    pass


class ServiceUnavailableException(AwsError):
    pass


class AccessDeniedException(AwsError):
    pass


class ResourceNotFoundException(AwsError):
    pass


class InvalidRequestException(AwsError):
    pass


class UnauthorizedOperation(AwsError):
    pass


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Fake:
    """Scripted answers for one scenario; records every call (operation, params).

    Lists of answers are consumed one per call, the last one repeating.
    """

    def __init__(self, **script: Any):
        self.calls: list[tuple[str, dict]] = []
        self.commands: dict[str, list[str]] = {}
        self.script = {
            "pre": ["Success"], "post": ["Success"], "validate": ["Success"],
            "job_states": ["RUNNING", "COMPLETED"],
            "start_error": None, "copy_errors": {}, "invocation_missing_once": False,
            "source": {}, "recovery_point": {}, "recovery_point_error": None,
            "restore_statuses": ["RUNNING", "COMPLETED"], "restore_created": True,
            "instance_statuses": [("pending", "initializing", "initializing"), ("running", "ok", "ok")],
            "validation_report_error": None, "terminate_errors": [], "instance_tags": {},
            "instance_state": "running", "metadata": None,
        }
        unknown = set(script) - set(self.script)
        assert not unknown, unknown
        self.script.update(script)

    def _next(self, key: str):
        values = self.script[key]
        return values.pop(0) if len(values) > 1 else values[0]

    def client(self, service: str):
        fake = self
        model = _BOTOCORE.get_service_model(service)

        class Client:
            def __getattr__(self, snake: str):
                op = next(o for o in model.operation_names if _snake(o) == snake)

                def call(**params):
                    report = _VALIDATOR.validate(params, model.operation_model(op).input_shape)
                    if report.has_errors():
                        raise AssertionError(f"{service}:{op} request rejected by the model:\n"
                                             f"{report.generate_report()}\n{params}")
                    fake.calls.append((op, params))
                    return getattr(fake, snake)(**params)

                return call

        return Client()

    def ops(self) -> list[str]:
        return [op for op, _ in self.calls]

    def params(self, op: str) -> list[dict]:
        return [p for o, p in self.calls if o == op]

    # ssm
    def send_command(self, **p):
        kind = p["Comment"].rsplit(" ", 1)[1]
        command_id = f"{kind:0>8}-0000-4000-8000-000000000000"  # a UUID, as SSM's
        self.commands[command_id] = [kind] + list(self.script[kind])
        return {"Command": {"CommandId": command_id, "DocumentName": p["DocumentName"]}}

    def get_command_invocation(self, **p):
        if self.script["invocation_missing_once"]:
            self.script["invocation_missing_once"] = False
            raise InvocationDoesNotExistException("not yet")
        script = self.commands[p["CommandId"]]
        status = script.pop(1) if len(script) > 2 else script[1]
        return {"CommandId": p["CommandId"], "InstanceId": p["InstanceId"], "Status": status,
                "StatusDetails": status, "ResponseCode": 0 if status == "Success" else 1,
                "StandardOutputContent": "ok" if status == "Success" else "",
                "StandardErrorContent": "" if status == "Success" else "boom"}

    # backup: backups and copies
    def start_backup_job(self, **p):
        if self.script["start_error"]:
            raise self.script["start_error"]
        return {"BackupJobId": "job-1", "CreationDate": "2026-11-29T10:00:01Z", "IsParent": False,
                "RecoveryPointArn": RECOVERY_POINT}

    def describe_backup_job(self, **p):
        if p["BackupJobId"] != "job-1":
            raise ResourceNotFoundException(f"no job {p['BackupJobId']}")
        answer = {"BackupJobId": "job-1", "State": self._next("job_states"), "BackupVaultName": VAULT,
                  "ResourceArn": RESOURCE_ARN, "ResourceType": "EC2", "RecoveryPointArn": RECOVERY_POINT}
        answer.update(self.script["source"])
        return answer

    def start_copy_job(self, **p):
        error = self.script["copy_errors"].get(p["DestinationBackupVaultArn"])
        if error:
            raise error
        return {"CopyJobId": "copy-job-" + p["IdempotencyToken"], "CreationDate": "2026-11-29T10:10:00Z",
                "IsParent": False}

    # backup: restores
    def describe_recovery_point(self, **p):
        if self.script["recovery_point_error"]:
            raise self.script["recovery_point_error"]
        if p["BackupVaultName"] != VAULT:
            raise AccessDeniedException("another vault")
        answer = {"RecoveryPointArn": p["RecoveryPointArn"], "BackupVaultName": VAULT,
                  "BackupVaultArn": f"arn:aws:backup:{REGION}:{ACCOUNT}:backup-vault:{VAULT}",
                  "ResourceArn": RESOURCE_ARN, "ResourceType": "EC2", "Status": "COMPLETED"}
        answer.update(self.script["recovery_point"])
        return answer

    def get_recovery_point_restore_metadata(self, **p):
        metadata = self.script["metadata"] or {
            "InstanceType": "m5.large", "SubnetId": "subnet-0aaaaaaaaaaaaaaaa",
            "SecurityGroupIds": '["sg-0aaaaaaaaaaaaaaaa"]', "IamInstanceProfileName": "web-profile",
            "KeyName": "admin-key", "UserData": "IyEvYmluL3NoCmN1cmwgZXZpbA==",
            "NetworkInterfaces": '[{"DeviceIndex":0,"SubnetId":"subnet-0aaaaaaaaaaaaaaaa","PrivateIpAddress":"10.0.0.5"}]',
            "Placement": '{"AvailabilityZone":"us-east-1a"}',
            "BlockDeviceMappings": '[{"DeviceName":"/dev/xvda","Ebs":{"VolumeSize":8,"VolumeType":"gp3","DeleteOnTermination":false}}]',
            "RequireIMDSv2": "false", "DisableApiTermination": "true",
        }
        return {"BackupVaultArn": f"arn:aws:backup:{REGION}:{ACCOUNT}:backup-vault:{VAULT}",
                "RecoveryPointArn": p["RecoveryPointArn"], "RestoreMetadata": metadata, "ResourceType": "EC2"}

    def start_restore_job(self, **p):
        return {"RestoreJobId": "restore-1"}

    def describe_restore_job(self, **p):
        status = self._next("restore_statuses")
        answer = {"RestoreJobId": p["RestoreJobId"], "Status": status, "RecoveryPointArn": RECOVERY_POINT,
                  "CreationDate": "2026-11-29T10:00:05Z", "StatusMessage": "" if status != "FAILED" else "no capacity"}
        if status in ("COMPLETED", "FAILED") and self.script["restore_created"]:
            answer["CreatedResourceArn"] = f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-0ffffffffffffffff"
        return answer

    def put_restore_validation_result(self, **p):
        if self.script["validation_report_error"]:
            raise self.script["validation_report_error"]
        return {}

    # ec2
    def create_tags(self, **p):
        return {}

    def describe_instance_status(self, **p):
        state, instance, system = self._next("instance_statuses")
        return {"InstanceStatuses": [{"InstanceId": p["InstanceIds"][0], "InstanceState": {"Code": 16, "Name": state},
                                      "InstanceStatus": {"Status": instance}, "SystemStatus": {"Status": system}}]}

    def terminate_instances(self, **p):
        if self.script["terminate_errors"]:
            raise self.script["terminate_errors"].pop(0)
        return {"TerminatingInstances": [{"InstanceId": p["InstanceIds"][0],
                                          "CurrentState": {"Code": 32, "Name": "shutting-down"}}]}

    def describe_instances(self, **p):
        tags = [{"Key": k, "Value": v} for k, v in self.script["instance_tags"].items()]
        return {"Reservations": [{"Instances": [{"InstanceId": p["InstanceIds"][0], "ImageId": "ami-0123456789abcdef0",
                                                 "State": {"Code": 16, "Name": self.script["instance_state"]},
                                                 "Tags": tags}]}]}


class Run:
    """One finished execution: DescribeExecution's answer and the history's events."""

    def __init__(self, desc: dict, events: list[dict]):
        self.desc = desc
        self.events = events
        self.status = desc["status"]
        self.error = desc.get("error")
        self.cause = desc.get("cause")
        self.output = json.loads(desc["output"]) if desc.get("output") else None

    def entered(self) -> list[str]:
        """The states entered, in order (the names in each *StateEntered event)."""
        return [e[k]["name"] for e in self.events if e["type"].endswith("StateEntered")
                for k in e if k == "stateEnteredEventDetails"]

    @property
    def transitions(self) -> int:
        """What Step Functions bills a Standard execution: one per state entered."""
        return sum(1 for e in self.events if e["type"].endswith("StateEntered"))


def run_machine(fake: Fake, execution_input: Any, name: str = "web-1-20261129T100000Z",
                definition: str | None = None, machine: str = "BackupStateMachine") -> Run:
    original = aws_sdk_task.boto_client_for
    aws_sdk_task.boto_client_for = lambda region, service, state_credentials=None: fake.client(service)
    try:
        with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
            sfn = boto3.client("stepfunctions", region_name=REGION)
            arn = sfn.create_state_machine(
                name=f"{STACK}-{'backup' if machine == 'BackupStateMachine' else 'restore'}",
                definition=definition or definition_json(machine),
                roleArn=f"arn:aws:iam::{ACCOUNT}:role/sm")["stateMachineArn"]
            execution = sfn.start_execution(stateMachineArn=arn, name=name,
                                            input=json.dumps(execution_input))["executionArn"]
            deadline = time.monotonic() + 120
            while True:
                desc = sfn.describe_execution(executionArn=execution)
                if desc["status"] != "RUNNING":
                    break
                assert time.monotonic() < deadline, "execution did not finish"
                time.sleep(0.05)
            events = sfn.get_execution_history(executionArn=execution, maxResults=1000)["events"]
            return Run(desc, events)
    finally:
        aws_sdk_task.boto_client_for = original
