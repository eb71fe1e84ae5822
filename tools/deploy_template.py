#!/usr/bin/env python3
"""Deploys template.yaml (or member-role.yaml) as a CloudFormation stack on a running moto server, and checks
what it created.

    .venv/bin/python tools/deploy_template.py --endpoint http://127.0.0.1:5000 [--stack-name keywatch]
        [--parameter ExistingTopicArn=arn:...] [--parameter AlertEmail=ops@example.com]
        [--parameter Accounts=organization] [--parameter EnableSecurityHub=true] [--parameter Remediation=deactivate]
    .venv/bin/python tools/deploy_template.py --endpoint http://127.0.0.1:5000 --template member-role.yaml \
        --stack-name keywatch-member --parameter KeywatchRoleArn=<FunctionRoleArn output> \
        --assume-role-arn arn:aws:iam::<member account>:role/OrganizationAccountAccessRole

For template.yaml the SAM transform runs locally (aws-sam-translator, what CloudFormation runs for `Transform:
AWS::Serverless-2016-10-31`); the transformed template is created as a stack through the CloudFormation API.
member-role.yaml is plain CloudFormation, created as it is. --assume-role-arn deploys as that role (moto gives
every account its own state, so a member account's role deploys into that account), as a StackSet instance would.
The script starts nothing: it only talks to the moto endpoint it is given (loopback only, dummy credentials),
so it can never touch real AWS. Progress goes to stderr; a JSON summary goes to stdout. Exit status 1, with
every problem listed, if a resource the template should create is missing or not CREATE_COMPLETE.

moto 5.2.5 limits, handled in the open (each one is listed under "moto_workarounds" in the summary):
- moto's CloudFormation skips resource types it does not implement (with only a Python warning, and still
  reports the stack CREATE_COMPLETE). Of this template's types, AWS::CloudWatch::Alarm, AWS::SNS::Subscription,
  AWS::Lambda::EventInvokeConfig (which SAM makes from the function's EventInvokeConfig), AWS::SQS::QueuePolicy
  and AWS::SNS::TopicPolicy are skipped. They are listed under "unsupported", and created through their own API
  (PutMetricAlarm, Subscribe, PutFunctionEventInvokeConfig, SetQueueAttributes, SetTopicAttributes) from the same
  resolved properties, so botocore still checks their property names and types against the service model. (AWS::SQS::Queue, AWS::Lambda::EventSourceMapping and
  AWS::CloudWatch::Dashboard it creates; the script reads them back and compares them with the template.)
- moto stores an AWS::IAM::Role's inline `Policies` as a Python dict instead of a JSON string, and its IAM
  enforcement then fails with an internal error. The script puts the same documents back with PutRolePolicy.
- moto keeps a list item that resolves to AWS::NoValue as null, where CloudFormation drops it: the function's
  conditional statements become null statements when their condition is false. The documents put back drop
  them, as CloudFormation would; every other statement is kept as moto resolved it.
- moto's CloudFormation creates the ledger's AWS::DynamoDB::Table with its key schema, attributes and billing
  mode, but drops TimeToLiveSpecification and PointInTimeRecoverySpecification (the table keeps TTL and
  point-in-time recovery disabled). The script turns them on with UpdateTimeToLive and UpdateContinuousBackups
  from the same resolved properties (CloudFormation's property names are the API's), then reads both back with
  DescribeTimeToLive and DescribeContinuousBackups; if a later moto keeps them, nothing is applied. moto also
  keeps SSESpecification under CloudFormation's name (SSEEnabled) and DescribeTable then shows no
  SSEDescription: encryption cannot be read back from moto, so the summary says so ("not_kept_by_moto") and
  tests/template.rs checks it in the template.
- moto's CloudFormation ignores the template's Rules. The script evaluates them first, as CloudFormation does
  before it creates anything, and refuses the parameters (exit status 1) when an assertion fails.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import os
import re
import sys
import time
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

PROJECT = Path(__file__).resolve().parent.parent
REGION = "us-east-1"

# Resource types moto 5.2.5's CloudFormation does not create (moto/cloudformation/parsing.py skips them).
MOTO_UNSUPPORTED = {
    "AWS::CloudWatch::Alarm",
    "AWS::SNS::Subscription",
    "AWS::Lambda::EventInvokeConfig",
    "AWS::SQS::QueuePolicy",
    "AWS::SNS::TopicPolicy",
    "AWS::Events::EventBusPolicy",
}


def log(message: str) -> None:
    print(f"deploy_template: {message}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="moto server URL, e.g. http://127.0.0.1:5000")
    parser.add_argument("--stack-name", default="keywatch")
    parser.add_argument("--template", default=str(PROJECT / "template.yaml"))
    parser.add_argument(
        "--parameter", action="append", default=[], metavar="KEY=VALUE", help="a template parameter"
    )
    parser.add_argument(
        "--assume-role-arn",
        help="deploy as this role, e.g. a member account's OrganizationAccountAccessRole (moto only)",
    )
    args = parser.parse_args()

    host = urlparse(args.endpoint).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        parser.error(f"--endpoint must be a local emulator (loopback), not {args.endpoint}")
    # Dummy credentials: moto accepts anything while its IAM enforcement is off.
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
        AWS_REGION=REGION,
    )
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)

    try:
        import boto3
        from samtranslator.public.translator import ManagedPolicyLoader
        from samtranslator.translator.transform import transform
        from samtranslator.yaml_helper import yaml_parse
    except ImportError as error:
        log(f"{error}: run `make tools` (installs moto and aws-sam-translator into .venv)")
        return 2

    parameters = dict(p.split("=", 1) for p in args.parameter)
    session = boto3.Session(region_name=REGION)
    if args.assume_role_arn:
        sts = session.client("sts", endpoint_url=args.endpoint)
        credentials = sts.assume_role(RoleArn=args.assume_role_arn, RoleSessionName="deploy-template")[
            "Credentials"
        ]
        session = boto3.Session(
            region_name=REGION,
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
        )

    def client(service: str) -> Any:
        return session.client(service, endpoint_url=args.endpoint)

    account_id = client("sts").get_caller_identity()["Account"]
    template = yaml_parse(Path(args.template).read_text())
    if "Transform" not in template:
        summary = deploy_plain(client, template, args.stack_name, parameters, account_id)
        print(json.dumps(summary, indent=2))
        for problem in summary["problems"]:
            log(f"FAILED: {problem}")
        return 1 if summary["problems"] else 0
    broken = broken_rules(template, parameter_values(template, parameters, args.stack_name, account_id))
    if broken:
        for rule in broken:
            log(f"FAILED: {rule}")
        return 1
    upload_code(client("s3"), template, args.stack_name)
    transformed = transform(template, parameters, ManagedPolicyLoader(client("iam")))
    log(f"transformed: {', '.join(sorted(transformed['Resources']))}")

    cfn = client("cloudformation")
    cfn.create_stack(
        StackName=args.stack_name,
        TemplateBody=json.dumps(transformed),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    stack = wait_for_stack(cfn, args.stack_name)
    summaries = cfn.list_stack_resources(StackName=args.stack_name)["StackResourceSummaries"]
    created = {r["LogicalResourceId"]: r for r in summaries if r.get("LogicalResourceId")}

    values = parameter_values(transformed, parameters, args.stack_name, account_id)
    conditions = evaluate_conditions(transformed.get("Conditions", {}), values)
    physical = {name: r.get("PhysicalResourceId", "") for name, r in created.items()}
    attributes = queue_attributes(client("sqs"), transformed, physical)
    attributes.update(table_attributes(client("dynamodb"), transformed, physical))
    attributes.update(rule_attributes(client("events"), transformed, physical))
    problems: list[str] = []
    if stack["StackStatus"] != "CREATE_COMPLETE":
        problems.append(f"stack is {stack['StackStatus']}: {stack.get('StackStatusReason', '')}")

    if physical.get("KeywatchFunctionRole"):
        # For resources created below through their own API (the work queue's policy names the role).
        attributes["KeywatchFunctionRole.Arn"] = client("iam").get_role(RoleName=physical["KeywatchFunctionRole"])[
            "Role"
        ]["Arn"]
    resources: dict[str, dict[str, str]] = {}
    unsupported: dict[str, str] = {}
    workarounds: list[str] = []
    for name, resource in transformed["Resources"].items():
        if not conditions.get(resource.get("Condition", ""), True):
            continue  # its condition is false for these parameters: correctly not created
        kind = resource["Type"]
        if name in created:
            status = created[name]["ResourceStatus"]
            resources[name] = {"type": kind, "status": status, "physical_id": physical[name]}
            if status != "CREATE_COMPLETE":
                problems.append(f"{name} ({kind}) is {status}: {created[name].get('ResourceStatusReason')}")
        elif kind in MOTO_UNSUPPORTED:
            unsupported[name] = kind
            props = resolve(resource.get("Properties", {}), values, conditions, physical, attributes)
            workarounds.append(create_unsupported(client, args.stack_name, name, kind, props))
        else:
            problems.append(f"{name} ({kind}) was not created")

    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    role = None
    if "KeywatchFunctionRole" in resources:
        role = repair_role_policies(client("iam"), physical["KeywatchFunctionRole"])
        workarounds.append(
            f"put {role['name']}'s inline policies back as JSON (moto stored them as dicts), without the"
            " null statements moto left for AWS::NoValue"
        )
        # moto's CloudFormation does not attach a role's ManagedPolicyArns: report what the template asks for.
        role["managed_policy_arns_in_template"] = transformed["Resources"]["KeywatchFunctionRole"][
            "Properties"
        ].get("ManagedPolicyArns", [])
    if "KeywatchFunction" in resources:
        attributes["KeywatchFunctionRole.Arn"] = role["arn"] if role else ""
        function = transformed["Resources"]["KeywatchFunction"]["Properties"]
        function_properties = resolve(function, values, conditions, physical, attributes)
        topic_policy = wanted_topic_policy(transformed, values, conditions, physical, attributes)
        problems += check_created(
            client, resources, physical, outputs, values, function_properties, role, topic_policy
        )
        problems += check_work_queues(client, transformed, resources, physical, values, conditions, attributes)
        problems += check_event_queue(client, transformed, resources, physical, values, conditions, attributes)
        alarms, alarm_problems = check_alarms(client("cloudwatch"), transformed, physical, values, conditions, attributes)
        problems += alarm_problems
        dashboard, dashboard_problems = check_dashboard(client("cloudwatch"), transformed, resources, physical, values, conditions)
        problems += dashboard_problems
        ledger, ledger_problems, ledger_workarounds = check_ledger(
            client("dynamodb"), transformed, resources, physical, values, conditions, attributes, outputs
        )
        problems += ledger_problems
        workarounds += ledger_workarounds
        expect_output = outputs.get("FunctionRoleArn")
        if role and expect_output != role["arn"]:
            problems.append(f"output FunctionRoleArn: expected {role['arn']!r}, got {expect_output!r}")
        # What Lambda does with a failed scheduled (asynchronous) run: SAM names the resource after the function.
        invoke = transformed["Resources"].get("KeywatchFunctionEventInvokeConfig")
        wanted_invoke = resolve(invoke["Properties"], values, conditions, physical, {}) if invoke else None
        event_invoke_config = deployed_event_invoke_config(client("lambda"), physical["KeywatchFunction"])
        problems += check_event_invoke_config(event_invoke_config, wanted_invoke)
        function = deployed_function(client("lambda"), physical["KeywatchFunction"])
        if function["environment"].get("LEDGER_TABLE") != (ledger or {}).get("name"):
            problems.append(
                f"LEDGER_TABLE: expected the ledger table {(ledger or {}).get('name')!r},"
                f" got {function['environment'].get('LEDGER_TABLE')!r}"
            )
    else:
        event_invoke_config = None
        alarms = None
        function = None
        dashboard = None
        ledger = None
        problems.append("KeywatchFunction was not created, so nothing about it was checked")

    summary = {
        "stack_name": args.stack_name,
        "stack_status": stack["StackStatus"],
        "parameters": parameters,
        "resources": resources,
        "unsupported": unsupported,
        "moto_workarounds": workarounds,
        "outputs": outputs,
        "role": role,
        "event_invoke_config": event_invoke_config,
        "alarms": alarms,
        "topic_policy": topic_policy_held(client("sns"), outputs.get("TopicArn")) if "FindingsTopic" in resources else None,
        "function": function,
        "dashboard": dashboard,
        "ledger": ledger,
        "queues": {k: v for k, v in attributes.items() if k.split(".", 1)[0] in QUEUES},
        "problems": problems,
    }
    print(json.dumps(summary, indent=2))
    for problem in problems:
        log(f"FAILED: {problem}")
    return 1 if problems else 0


def upload_code(s3: Any, template: dict, stack_name: str) -> None:
    """Points each function's local CodeUri (`.`) at a stand-in zip on moto's S3, as `sam package` would
    point it at the built artifact. moto never runs the code, so the zip only holds a placeholder bootstrap;
    the real one is built by `cargo lambda build`."""
    bucket = f"{stack_name.lower()}-artifacts"
    s3.create_bucket(Bucket=bucket)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zip_file:
        zip_file.writestr("bootstrap", "#!/bin/sh\necho 'placeholder: deploy_template.py never runs code'\n")
    s3.put_object(Bucket=bucket, Key="keywatch.zip", Body=archive.getvalue())
    for name, resource in template["Resources"].items():
        if resource.get("Type") == "AWS::Serverless::Function":
            code_uri = resource["Properties"].get("CodeUri")
            if isinstance(code_uri, str) and not code_uri.startswith("s3://"):
                resource["Properties"]["CodeUri"] = f"s3://{bucket}/keywatch.zip"
                log(f"{name}: CodeUri {code_uri!r} -> s3://{bucket}/keywatch.zip (stand-in artifact)")


def wait_for_stack(cfn: Any, stack_name: str) -> dict:
    deadline = time.monotonic() + 60
    while True:
        stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
        if not stack["StackStatus"].endswith("_IN_PROGRESS"):
            log(f"stack {stack_name}: {stack['StackStatus']}")
            return stack
        if time.monotonic() > deadline:
            return stack
        time.sleep(0.5)


def parameter_values(
    template: dict, given: dict[str, str], stack_name: str, account_id: str
) -> dict[str, Any]:
    values: dict[str, Any] = {
        "AWS::Region": REGION,
        "AWS::Partition": "aws",
        "AWS::AccountId": account_id,
        "AWS::StackName": stack_name,
        "AWS::URLSuffix": "amazonaws.com",
    }
    for name, spec in template.get("Parameters", {}).items():
        values[name] = given.get(name, spec.get("Default"))
    return values


def broken_rules(template: dict, values: dict[str, Any]) -> list[str]:
    """The template's Rules whose assertions fail for these parameters, as CloudFormation checks them before
    it creates anything: each as "<rule>: <AssertDescription>"."""
    broken = []
    for name, rule in template.get("Rules", {}).items():
        checks = {"__applies": rule.get("RuleCondition", {"Fn::Equals": ["always", "always"]})}
        checks.update({f"__assert{i}": a["Assert"] for i, a in enumerate(rule["Assertions"])})
        results = evaluate_conditions({**template.get("Conditions", {}), **checks}, values)
        if not results["__applies"]:
            continue
        for i, assertion in enumerate(rule["Assertions"]):
            if not results[f"__assert{i}"]:
                broken.append(f"{name}: {' '.join(assertion.get('AssertDescription', 'assertion failed').split())}")
    return broken


def evaluate_conditions(conditions: dict, values: dict[str, Any]) -> dict[str, bool]:
    """The template's conditions for these parameters (Fn::Equals/Not/And/Or, Condition, Ref, Fn::Sub of
    parameters)."""
    results: dict[str, bool] = {}

    def value(node: Any) -> Any:
        if isinstance(node, dict) and "Ref" in node:
            return str(values[node["Ref"]])
        if isinstance(node, dict) and "Condition" in node:
            return condition(node["Condition"])
        if isinstance(node, dict) and len(node) == 1:
            (function, operands), = node.items()
            if function == "Fn::Equals":
                return value(operands[0]) == value(operands[1])
            if function == "Fn::Not":
                return not value(operands[0])
            if function == "Fn::And":
                return all(value(o) for o in operands)
            if function == "Fn::Or":
                return any(value(o) for o in operands)
            if function == "Fn::Sub" and isinstance(operands, str):
                return re.sub(r"\$\{([^}!]+)\}", lambda m: str(values[m.group(1)]), operands)
        if isinstance(node, (str, int, float, bool)):
            return str(node)
        raise ValueError(f"unsupported condition expression: {node!r}")

    def condition(name: str) -> bool:
        if name not in results:
            results[name] = bool(value(conditions[name]))
        return results[name]

    for name in conditions:
        condition(name)
    return results


def resolve(
    node: Any,
    values: dict[str, Any],
    conditions: dict[str, bool],
    physical: dict[str, str],
    attributes: dict[str, str],
) -> Any:
    """Resolves Ref, Fn::If, Fn::Sub, Fn::Select, Fn::Split and Fn::GetAtt (from `attributes`) as CloudFormation
    would for these parameters, dropping what resolves to AWS::NoValue: enough for these templates' properties."""

    def ref(name: str, local: dict[str, Any] | None = None) -> Any:
        if local and name in local:
            return local[name]
        if name == "AWS::NoValue":
            return NO_VALUE
        if "." in name and name in attributes:
            return attributes[name]
        return physical[name] if name in physical else values[name]

    def again(child: Any) -> Any:
        return resolve(child, values, conditions, physical, attributes)

    if isinstance(node, list):
        return [item for item in (again(item) for item in node) if item is not NO_VALUE]
    if isinstance(node, dict):
        if set(node) == {"Ref"}:
            return ref(node["Ref"])
        if set(node) == {"Fn::If"}:
            condition, when_true, when_false = node["Fn::If"]
            return again(when_true if conditions[condition] else when_false)
        if set(node) == {"Fn::Sub"}:
            text, local = (node["Fn::Sub"], {}) if isinstance(node["Fn::Sub"], str) else node["Fn::Sub"]
            local = {k: again(v) for k, v in local.items()}
            text = re.sub(r"\$\{([^}!]+)\}", lambda m: str(ref(m.group(1), local)), text)
            return text.replace("${!", "${")  # a literal ${...}, e.g. a dashboard's dynamic label
        if set(node) == {"Fn::Select"}:
            index, items = node["Fn::Select"]
            return again(items)[int(again(index))]
        if set(node) == {"Fn::Split"}:
            separator, text = node["Fn::Split"]
            return str(again(text)).split(separator)
        if set(node) == {"Fn::GetAtt"}:
            return attributes[".".join(node["Fn::GetAtt"])]
        if any(key.startswith("Fn::") for key in node):
            raise ValueError(f"unsupported intrinsic function: {node!r}")
        return {k: v for k, v in ((k, again(v)) for k, v in node.items()) if v is not NO_VALUE}
    return node


# What AWS::NoValue resolves to: dropped from the list or object holding it, as CloudFormation drops it.
NO_VALUE = object()


# The template's queues, whose Fn::GetAtt values the summary lists under "queues".
QUEUES = ("WorkQueue", "WorkDeadLetterQueue", "IamEventQueue", "IamEventDeadLetterQueue")


def queue_attributes(sqs: Any, template: dict, physical: dict[str, str]) -> dict[str, str]:
    """Fn::GetAtt values of the stack's queues (Arn, QueueName, QueueUrl), read from SQS."""
    attributes = {}
    for name, resource in template["Resources"].items():
        if resource["Type"] == "AWS::SQS::Queue" and physical.get(name):
            url = physical[name]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            attributes.update({f"{name}.Arn": arn, f"{name}.QueueName": url.rsplit("/", 1)[-1], f"{name}.QueueUrl": url})
    return attributes


def table_attributes(dynamodb: Any, template: dict, physical: dict[str, str]) -> dict[str, str]:
    """Fn::GetAtt values of the stack's DynamoDB tables (Arn), read from DynamoDB."""
    attributes = {}
    for name, resource in template["Resources"].items():
        if resource["Type"] == "AWS::DynamoDB::Table" and physical.get(name):
            table = dynamodb.describe_table(TableName=physical[name])["Table"]
            attributes[f"{name}.Arn"] = table["TableArn"]
    return attributes


def rule_attributes(events: Any, template: dict, physical: dict[str, str]) -> dict[str, str]:
    """Fn::GetAtt values of the stack's EventBridge rules (Arn), read from EventBridge."""
    attributes = {}
    for name, resource in template["Resources"].items():
        if resource["Type"] == "AWS::Events::Rule" and physical.get(name):
            rule = physical[name].rsplit("/", 1)[-1]
            attributes[f"{name}.Arn"] = events.describe_rule(Name=rule)["Arn"]
    return attributes


def check_ledger(
    dynamodb: Any,
    template: dict,
    resources: dict,
    physical: dict,
    values: dict,
    conditions: dict,
    attributes: dict,
    outputs: dict,
) -> tuple[dict | None, list[str], list[str]]:
    """The ledger table as DynamoDB holds it (DescribeTable, DescribeTimeToLive, DescribeContinuousBackups),
    against the template's resolved properties. Returns what was read (for the caller to compare with the code
    and the role's policy), the problems, and the moto workarounds applied."""
    if "Ledger" not in template["Resources"]:
        return None, ["the template has no Ledger resource"], []
    if "Ledger" not in resources:
        return None, ["Ledger was not created"], []
    problems: list[str] = []
    applied: list[str] = []  # properties moto's CloudFormation dropped, applied through DynamoDB's own API

    def expect(what: str, actual: Any, wanted: Any) -> None:
        if actual != wanted:
            problems.append(f"ledger {what}: expected {wanted!r}, got {actual!r}")

    def by_name(definitions: list[dict]) -> list[dict]:
        return sorted(definitions, key=lambda d: d["AttributeName"])

    props = resolve(template["Resources"]["Ledger"]["Properties"], values, conditions, physical, attributes)
    name = physical["Ledger"]
    table = dynamodb.describe_table(TableName=name)["Table"]
    expect("TableName", table["TableName"], name)
    expect("TableStatus", table["TableStatus"], "ACTIVE")
    expect("output LedgerTableName", outputs.get("LedgerTableName"), name)
    expect("KeySchema", table["KeySchema"], props["KeySchema"])
    expect("AttributeDefinitions", by_name(table["AttributeDefinitions"]), by_name(props["AttributeDefinitions"]))
    expect("BillingMode", table.get("BillingModeSummary", {}).get("BillingMode"), props["BillingMode"])
    not_kept: list[str] = []
    sse = table.get("SSEDescription")
    if sse is None:
        not_kept.append("SSESpecification")  # moto 5.2.5: see the module's docstring
    else:
        wanted_sse = props.get("SSESpecification", {}).get("SSEEnabled", False)
        expect("SSEDescription.Status", sse.get("Status"), "ENABLED" if wanted_sse else "DISABLED")

    ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    wanted_ttl = props.get("TimeToLiveSpecification")
    if wanted_ttl and wanted_ttl.get("Enabled") and ttl.get("TimeToLiveStatus") == "DISABLED":
        dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification=wanted_ttl)
        applied.append("TimeToLiveSpecification")
        ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    if wanted_ttl:
        expect("TimeToLiveStatus", ttl.get("TimeToLiveStatus"), "ENABLED" if wanted_ttl["Enabled"] else "DISABLED")
    if wanted_ttl and wanted_ttl["Enabled"]:
        expect("TTL AttributeName", ttl.get("AttributeName"), wanted_ttl["AttributeName"])

    def recovery() -> dict:
        return dynamodb.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"][
            "PointInTimeRecoveryDescription"
        ]

    pitr = recovery()
    wanted_pitr = props.get("PointInTimeRecoverySpecification")
    if wanted_pitr and wanted_pitr.get("PointInTimeRecoveryEnabled") and pitr["PointInTimeRecoveryStatus"] == "DISABLED":
        dynamodb.update_continuous_backups(TableName=name, PointInTimeRecoverySpecification=wanted_pitr)
        applied.append("PointInTimeRecoverySpecification")
        pitr = recovery()
    if wanted_pitr:
        expect(
            "PointInTimeRecoveryStatus",
            pitr["PointInTimeRecoveryStatus"],
            "ENABLED" if wanted_pitr["PointInTimeRecoveryEnabled"] else "DISABLED",
        )
    workarounds = []
    if applied:
        workarounds.append(f"Ledger: {', '.join(applied)} applied through DynamoDB's API (moto's CloudFormation drops them)")
    if not_kept:
        workarounds.append(f"Ledger: {', '.join(not_kept)} not visible in moto's DescribeTable, so not checked on the deployment")
    ledger = {
        "name": name,
        "arn": table["TableArn"],
        "key_schema": table["KeySchema"],
        "attribute_definitions": by_name(table["AttributeDefinitions"]),
        "billing_mode": table.get("BillingModeSummary", {}).get("BillingMode"),
        "sse": sse,
        "time_to_live": {k: ttl.get(k) for k in ("TimeToLiveStatus", "AttributeName")},
        "point_in_time_recovery": pitr["PointInTimeRecoveryStatus"],
        "not_kept_by_moto": not_kept,
        "applied_by_api": applied,
    }
    return ledger, problems, workarounds


def create_unsupported(client: Any, stack_name: str, name: str, kind: str, props: dict) -> str:
    """Creates a resource moto's CloudFormation skips through its own API, so its properties still pass
    botocore's validation against the service model."""
    if kind == "AWS::CloudWatch::Alarm":
        cloudwatch = client("cloudwatch")
        alarm_name = props.pop("AlarmName", f"{stack_name}-{name}")
        cloudwatch.put_metric_alarm(AlarmName=alarm_name, **props)
        alarms = cloudwatch.describe_alarms(AlarmNames=[alarm_name])["MetricAlarms"]
        assert alarms, f"PutMetricAlarm did not create {alarm_name}"
        return f"{name}: created with cloudwatch:PutMetricAlarm (moto's CloudFormation skips {kind})"
    if kind == "AWS::SNS::Subscription":
        client("sns").subscribe(**props)
        return f"{name}: created with sns:Subscribe (moto's CloudFormation skips {kind})"
    if kind == "AWS::Lambda::EventInvokeConfig":
        client("lambda").put_function_event_invoke_config(**props)
        return f"{name}: created with lambda:PutFunctionEventInvokeConfig (moto's CloudFormation skips {kind})"
    if kind == "AWS::SQS::QueuePolicy":
        for url in props["Queues"]:
            client("sqs").set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(props["PolicyDocument"])})
        return f"{name}: set with sqs:SetQueueAttributes Policy (moto's CloudFormation skips {kind})"
    if kind == "AWS::SNS::TopicPolicy":
        for arn in props["Topics"]:
            client("sns").set_topic_attributes(
                TopicArn=arn, AttributeName="Policy", AttributeValue=json.dumps(props["PolicyDocument"])
            )
        return f"{name}: set with sns:SetTopicAttributes Policy (moto's CloudFormation skips {kind})"
    if kind == "AWS::Events::EventBusPolicy":
        statement = {"Sid": props["StatementId"], **props["Statement"]}
        policy = {"Version": "2012-10-17", "Statement": [statement]}
        client("events").put_permission(EventBusName=props.get("EventBusName", "default"), Policy=json.dumps(policy))
        return f"{name}: set with events:PutPermission Policy (moto's CloudFormation skips {kind})"
    raise ValueError(f"no API fallback for {kind}")


def deployed_event_invoke_config(aws_lambda: Any, function_name: str) -> dict | None:
    """The function's asynchronous invocation settings as Lambda holds them; None if it has none (Lambda's
    defaults: two retries, events kept six hours)."""
    try:
        config = aws_lambda.get_function_event_invoke_config(FunctionName=function_name, Qualifier="$LATEST")
    except aws_lambda.exceptions.ResourceNotFoundException:
        return None
    keys = ("MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig")
    return {key: config[key] for key in keys if key in config}


def deployed_function(aws_lambda: Any, function_name: str) -> dict:
    """What Lambda holds for the function that the fleet settings change: environment, reserved concurrency
    (None when unreserved) and event source mappings."""
    config = aws_lambda.get_function(FunctionName=function_name)["Configuration"]
    concurrency = aws_lambda.get_function_concurrency(FunctionName=function_name)
    mappings = aws_lambda.list_event_source_mappings(FunctionName=function_name)["EventSourceMappings"]
    keys = ("EventSourceArn", "BatchSize", "FunctionResponseTypes", "ScalingConfig", "State")
    return {
        "environment": {k: str(v) for k, v in config.get("Environment", {}).get("Variables", {}).items()},
        "reserved_concurrency": concurrency.get("ReservedConcurrentExecutions"),
        "event_source_mappings": [{k: m[k] for k in keys if k in m} for m in mappings],
    }


def check_event_invoke_config(deployed: dict | None, wanted: dict | None) -> list[str]:
    """The deployed settings are the template's resolved EventInvokeConfig properties (none if it has none)."""
    if wanted is None:
        return [] if deployed is None else [f"event invoke config: the template sets none, Lambda has {deployed}"]
    if deployed is None:
        return [f"event invoke config: Lambda has none, the template sets {wanted!r}"]
    defaults = {"DestinationConfig": {}}  # SAM writes an empty one when the template names no destination
    problems = []
    for key in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig"):
        expected, actual = wanted.get(key, defaults.get(key)), deployed.get(key, defaults.get(key))
        if actual != expected:
            problems.append(f"event invoke config {key}: expected {expected!r}, got {actual!r}")
    return problems


def repair_role_policies(iam: Any, role_name: str) -> dict:
    """Reads the role's inline policies and puts them back as JSON, working around moto storing them as
    Python dicts (its IAM enforcement cannot read those)."""
    policies = {}
    for policy_name in iam.list_role_policies(RoleName=role_name)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=role_name, PolicyName=policy_name)["PolicyDocument"]
        if isinstance(document, str):
            document = ast.literal_eval(document)  # moto returns str(dict) for these
        if isinstance(document.get("Statement"), list):
            document["Statement"] = [s for s in document["Statement"] if s is not None]
        iam.put_role_policy(RoleName=role_name, PolicyName=policy_name, PolicyDocument=json.dumps(document))
        policies[policy_name] = document
    role = iam.get_role(RoleName=role_name)["Role"]
    attached = iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]
    return {
        "name": role_name,
        "arn": role["Arn"],
        "trust_policy": role["AssumeRolePolicyDocument"],
        "inline_policies": policies,
        "managed_policy_arns": [p["PolicyArn"] for p in attached],
    }


def wanted_topic_policy(template: dict, values: dict, conditions: dict, physical: dict, attributes: dict) -> dict | None:
    """The findings topic's policy document as the template resolves it for these parameters; None without it."""
    policy = template["Resources"].get("FindingsTopicPolicy")
    if policy is None or not conditions.get(policy.get("Condition", ""), True):
        return None
    return resolve(policy["Properties"], values, conditions, physical, attributes)["PolicyDocument"]


def topic_policy_held(sns: Any, topic_arn: str | None) -> dict | None:
    """The topic's policy as SNS holds it (GetTopicAttributes), parsed."""
    if not topic_arn:
        return None
    return json.loads(sns.get_topic_attributes(TopicArn=topic_arn)["Attributes"].get("Policy", "null"))


def check_created(
    client: Any,
    resources: dict,
    physical: dict,
    outputs: dict,
    values: dict,
    function_properties: dict,
    role: dict | None,
    topic_policy: dict | None,
) -> list[str]:
    """What the created resources look like, as far as moto keeps it. Problems as messages."""
    problems: list[str] = []

    def expect(what: str, actual: Any, wanted: Any) -> None:
        if actual != wanted:
            problems.append(f"{what}: expected {wanted!r}, got {actual!r}")

    topic_arn = outputs.get("TopicArn", "")
    existing = values.get("ExistingTopicArn") or ""
    expect("output TopicArn", topic_arn, existing or physical.get("FindingsTopic"))
    expect("output FunctionName", outputs.get("FunctionName"), physical.get("KeywatchFunction"))

    function_name = physical.get("KeywatchFunction")
    if function_name:
        # Compared with the template's own properties, resolved for these parameters. moto drops
        # Architectures and LoggingConfig from a function created by CloudFormation, so those are not checked.
        wanted = function_properties
        aws_lambda = client("lambda")
        config = aws_lambda.get_function(FunctionName=function_name)["Configuration"]
        expect("function name", function_name, wanted["FunctionName"])
        for key in ("Runtime", "Handler", "MemorySize", "Timeout", "Role"):
            expect(f"function {key}", config.get(key), wanted[key])
        variables = {k: str(v) for k, v in config.get("Environment", {}).get("Variables", {}).items()}
        expect("function environment", variables, {k: str(v) for k, v in wanted["Environment"]["Variables"].items()})
        expect("FINDINGS_TOPIC_ARN", variables.get("FINDINGS_TOPIC_ARN"), topic_arn)
        concurrency = aws_lambda.get_function_concurrency(FunctionName=function_name)
        expect(
            "reserved concurrency",
            concurrency.get("ReservedConcurrentExecutions"),
            wanted.get("ReservedConcurrentExecutions"),
        )

    if "KeywatchFunctionSchedule" in resources:
        events = client("events")
        rule_name = physical["KeywatchFunctionSchedule"]
        rule = events.describe_rule(Name=rule_name)
        expect("schedule", rule.get("ScheduleExpression"), values["ScheduleExpression"])
        targets = events.list_targets_by_rule(Rule=rule_name)["Targets"]
        expect("schedule targets", [t["Arn"].rsplit(":", 1)[-1] for t in targets], [function_name])

    if "KeywatchLogs" in resources:
        groups = client("logs").describe_log_groups(logGroupNamePrefix=physical["KeywatchLogs"])["logGroups"]
        expect("log retention", [g.get("retentionInDays") for g in groups], [int(values["LogRetentionDays"])])

    if "FindingsTopic" in resources:
        attributes = client("sns").get_topic_attributes(TopicArn=topic_arn)["Attributes"]
        expect("topic KMS key", attributes.get("KmsMasterKeyId"), physical.get("TopicKey"))
        expect("topic policy", json.loads(attributes.get("Policy", "null")), topic_policy)

    if function_name:  # the alarm is unconditional and watches the function
        alarm_name = f"{values['AWS::StackName']}-KeywatchErrorsAlarm"
        alarms = client("cloudwatch").describe_alarms(AlarmNames=[alarm_name])["MetricAlarms"]
        expect("alarm actions", [a["AlarmActions"] for a in alarms], [[topic_arn]])
        expect("alarm dimensions", [a["Dimensions"] for a in alarms], [[{"Name": "FunctionName", "Value": function_name}]])

    if values.get("AlertEmail"):
        subscriptions = client("sns").list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
        expect(
            "email subscription",
            [(s["Protocol"], s["Endpoint"]) for s in subscriptions],
            [("email", values["AlertEmail"])],
        )

    if role is not None:
        services = [
            s["Principal"]["Service"] for s in role["trust_policy"]["Statement"] if "Service" in s["Principal"]
        ]
        expect("role trust", services, [["lambda.amazonaws.com"]])
    return problems


def check_event_queue(
    client: Any,
    template: dict,
    resources: dict,
    physical: dict,
    values: dict,
    conditions: dict,
    attributes: dict,
) -> list[str]:
    """EventChecks=true: the rule (its pattern and its one target, the event queue), the queue's redrive and its
    policy (only EventBridge, for this rule), and the mapping, as EventBridge, SQS and Lambda hold them; with
    EventChecks=false, none of them."""
    names = ("IamEventRule", "IamEventQueue", "IamEventDeadLetterQueue", "IamEventMapping")
    if values["EventChecks"] != "true":
        return [f"{name} exists with EventChecks=false" for name in names if name in resources]
    problems = [f"{name} was not created" for name in names if name not in resources]
    if problems:
        return problems

    def expect(what: str, actual: Any, wanted: Any) -> None:
        if actual != wanted:
            problems.append(f"{what}: expected {wanted!r}, got {actual!r}")

    def wanted(name: str) -> dict:
        return resolve(template["Resources"][name]["Properties"], values, conditions, physical, attributes)

    events = client("events")
    rule_name = physical["IamEventRule"].rsplit("/", 1)[-1]
    rule = events.describe_rule(Name=rule_name)
    expect("IamEventRule EventPattern", json.loads(rule["EventPattern"]), wanted("IamEventRule")["EventPattern"])
    targets = events.list_targets_by_rule(Rule=rule_name)["Targets"]
    expect("IamEventRule targets", [t["Arn"] for t in targets], [attributes["IamEventQueue.Arn"]])
    sqs = client("sqs")
    held = sqs.get_queue_attributes(QueueUrl=physical["IamEventQueue"], AttributeNames=["All"])["Attributes"]
    redrive = wanted("IamEventQueue")["RedrivePolicy"]
    expect(
        "IamEventQueue RedrivePolicy",
        json.loads(held.get("RedrivePolicy", "{}")),
        {k: (int(v) if k == "maxReceiveCount" else v) for k, v in redrive.items()},
    )
    expect("IamEventQueue Policy", json.loads(held.get("Policy", "null")), wanted("IamEventQueuePolicy")["PolicyDocument"])
    mappings = client("lambda").list_event_source_mappings(FunctionName=physical["KeywatchFunction"])["EventSourceMappings"]
    mapping = [m for m in mappings if m["EventSourceArn"] == attributes["IamEventQueue.Arn"]]
    expect("event source mappings of the IAM event queue", len(mapping), 1)
    if len(mapping) == 1:
        props = wanted("IamEventMapping")
        expect("IamEventMapping BatchSize", mapping[0].get("BatchSize"), int(props["BatchSize"]))
        expect("IamEventMapping FunctionResponseTypes", mapping[0].get("FunctionResponseTypes"), props["FunctionResponseTypes"])
    return problems


def check_work_queues(
    client: Any,
    template: dict,
    resources: dict,
    physical: dict,
    values: dict,
    conditions: dict,
    attributes: dict,
) -> list[str]:
    """The work queue, its dead-letter queue, the mapping and the DLQ alarm, as SQS, Lambda and CloudWatch hold
    them, against the template's resolved properties. None of them may exist when Accounts is self."""
    problems: list[str] = []

    def expect(what: str, actual: Any, wanted: Any) -> None:
        if actual != wanted:
            problems.append(f"{what}: expected {wanted!r}, got {actual!r}")

    aws_lambda = client("lambda")
    mappings = aws_lambda.list_event_source_mappings(FunctionName=physical["KeywatchFunction"])["EventSourceMappings"]
    alarm_name = f"{values['AWS::StackName']}-WorkDeadLetterAlarm"
    alarms = client("cloudwatch").describe_alarms(AlarmNames=[alarm_name])["MetricAlarms"]
    if values["Accounts"] == "self":
        for name in ("WorkQueue", "WorkDeadLetterQueue", "WorkQueueMapping"):
            if name in resources:
                problems.append(f"{name} exists with Accounts=self")
        # The IAM event queue's mapping is the event checks' (check_event_queue), whatever Accounts says.
        work_mappings = [m for m in mappings if m["EventSourceArn"] != attributes.get("IamEventQueue.Arn")]
        expect("event source mappings with Accounts=self", work_mappings, [])
        expect("dead-letter alarm with Accounts=self", alarms, [])
        failed = client("cloudwatch").describe_alarms(AlarmNames=[f"{values['AWS::StackName']}-CheckFailedAlarm"])
        expect("failed-check alarm with Accounts=self", failed["MetricAlarms"], [])
        return problems
    for name in ("WorkQueue", "WorkDeadLetterQueue", "WorkQueueMapping"):
        if name not in resources:
            problems.append(f"{name} was not created with Accounts={values['Accounts']}")
    if problems:
        return problems

    def wanted(name: str) -> dict:
        return resolve(template["Resources"][name]["Properties"], values, conditions, physical, attributes)

    sqs = client("sqs")
    for name in ("WorkQueue", "WorkDeadLetterQueue"):
        held = sqs.get_queue_attributes(QueueUrl=physical[name], AttributeNames=["All"])["Attributes"]
        props = wanted(name)
        for key, value in props.items():
            if key == "RedrivePolicy":
                policy = json.loads(held.get("RedrivePolicy", "{}"))
                expect(f"{name} RedrivePolicy", policy, {k: (int(v) if k == "maxReceiveCount" else v) for k, v in value.items()})
            else:
                expect(f"{name} {key}", held.get(key), str(value).lower() if isinstance(value, bool) else str(value))

    held_policy = sqs.get_queue_attributes(QueueUrl=physical["WorkQueue"], AttributeNames=["Policy"])["Attributes"]
    expect(
        "WorkQueue Policy",
        json.loads(held_policy.get("Policy", "null")),
        wanted("WorkQueuePolicy")["PolicyDocument"],
    )
    mapping = [m for m in mappings if m["EventSourceArn"] == attributes["WorkQueue.Arn"]]
    expect("event source mappings of the work queue", len(mapping), 1)
    if len(mapping) == 1:
        held = mapping[0]
        props = wanted("WorkQueueMapping")
        expect("mapping function", held["FunctionArn"].rsplit(":", 1)[-1], props["FunctionName"])
        expect("mapping BatchSize", held.get("BatchSize"), int(props["BatchSize"]))
        expect("mapping FunctionResponseTypes", held.get("FunctionResponseTypes"), props["FunctionResponseTypes"])
        expect(
            "mapping MaximumConcurrency",
            int(held.get("ScalingConfig", {}).get("MaximumConcurrency", 0)),
            int(props["ScalingConfig"]["MaximumConcurrency"]),
        )

    expect(
        "dead-letter alarm dimensions",
        [a["Dimensions"] for a in alarms],
        [[{"Name": "QueueName", "Value": attributes["WorkDeadLetterQueue.QueueName"]}]],
    )
    topic = values.get("ExistingTopicArn") or physical.get("FindingsTopic")
    expect("dead-letter alarm actions", [a["AlarmActions"] for a in alarms], [[topic]])
    failed = client("cloudwatch").describe_alarms(AlarmNames=[f"{values['AWS::StackName']}-CheckFailedAlarm"])[
        "MetricAlarms"
    ]
    expect(
        "failed-check alarm (namespace, metric, dimensions, actions)",
        [(a["Namespace"], a["MetricName"], a.get("Dimensions", []), a["AlarmActions"]) for a in failed],
        [("keywatch", "CheckFailed", [], [topic])],
    )
    return problems


# What an alarm is, as PutMetricAlarm takes it and DescribeAlarms returns it.
ALARM_KEYS = (
    "Namespace",
    "MetricName",
    "Dimensions",
    "Statistic",
    "Period",
    "EvaluationPeriods",
    "DatapointsToAlarm",
    "Threshold",
    "ComparisonOperator",
    "TreatMissingData",
    "AlarmActions",
)


def check_alarms(
    cloudwatch: Any, template: dict, physical: dict, values: dict, conditions: dict, attributes: dict
) -> tuple[dict, list[str]]:
    """Every alarm of the template as CloudWatch holds it, against its resolved properties (ALARM_KEYS); an
    alarm whose condition is false must not exist. Returns what is held, by logical name, and the problems."""
    held: dict[str, dict] = {}
    problems: list[str] = []
    for name, resource in template["Resources"].items():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        alarm_name = resource.get("Properties", {}).get("AlarmName", f"{values['AWS::StackName']}-{name}")
        found = cloudwatch.describe_alarms(AlarmNames=[alarm_name])["MetricAlarms"]
        if not conditions.get(resource.get("Condition", ""), True):
            if found:
                problems.append(f"{name} exists though its condition {resource['Condition']} is false")
            continue
        if len(found) != 1:
            problems.append(f"{name}: expected one alarm {alarm_name}, found {len(found)}")
            continue
        wanted = resolve(resource["Properties"], values, conditions, physical, attributes)
        alarm = {key: found[0].get(key) for key in ALARM_KEYS}
        alarm["Dimensions"] = alarm["Dimensions"] or []
        held[name] = alarm
        for key in ALARM_KEYS:
            expected = wanted.get(key, [] if key == "Dimensions" else None)
            if key in ("Period", "EvaluationPeriods", "DatapointsToAlarm") and expected is not None:
                expected = int(expected)
            if key == "Threshold":
                expected = float(expected)
            if alarm[key] != expected:
                problems.append(f"{name} {key}: expected {expected!r}, got {alarm[key]!r}")
    return held, problems


def check_dashboard(
    cloudwatch: Any, template: dict, resources: dict, physical: dict, values: dict, conditions: dict
) -> tuple[dict | None, list[str]]:
    """The dashboard as CloudWatch holds it: its name and body (parsed) are the template's, resolved. Returns it
    (name, body) for the caller to check its metrics against the code."""
    if "KeywatchDashboard" not in resources:
        return None, ["KeywatchDashboard was not created"]
    wanted = resolve(template["Resources"]["KeywatchDashboard"]["Properties"], values, conditions, physical, {})
    name = physical["KeywatchDashboard"]
    problems = []
    if name != wanted["DashboardName"]:
        problems.append(f"dashboard name: expected {wanted['DashboardName']!r}, got {name!r}")
    try:
        held = cloudwatch.get_dashboard(DashboardName=name)
        body = json.loads(held["DashboardBody"])
    except (cloudwatch.exceptions.ResourceNotFound, ValueError) as error:
        return None, problems + [f"dashboard {name}: {error}"]
    if body != json.loads(wanted["DashboardBody"]):
        problems.append(f"dashboard body: expected {wanted['DashboardBody']}, got {held['DashboardBody']}")
    return {"name": name, "body": body}, problems


def deploy_plain(client: Any, template: dict, stack_name: str, parameters: dict, account_id: str) -> dict:
    """Creates a plain CloudFormation template (member-role.yaml) as a stack, and compares each IAM role it
    created with the template's resolved properties: name, path, trust policy and inline policies."""
    cfn = client("cloudformation")
    cfn.create_stack(
        StackName=stack_name,
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    stack = wait_for_stack(cfn, stack_name)
    summaries = cfn.list_stack_resources(StackName=stack_name)["StackResourceSummaries"]
    created = {r["LogicalResourceId"]: r for r in summaries if r.get("LogicalResourceId")}
    values = parameter_values(template, parameters, stack_name, account_id)
    conditions = evaluate_conditions(template.get("Conditions", {}), values)
    physical = {name: r.get("PhysicalResourceId", "") for name, r in created.items()}
    problems: list[str] = []
    if stack["StackStatus"] != "CREATE_COMPLETE":
        problems.append(f"stack is {stack['StackStatus']}: {stack.get('StackStatusReason', '')}")

    def expect(what: str, actual: Any, wanted: Any) -> None:
        if actual != wanted:
            problems.append(f"{what}: expected {wanted!r}, got {actual!r}")

    resources: dict[str, dict[str, str]] = {}
    roles: dict[str, dict] = {}
    iam = client("iam")
    # Fn::GetAtt of the stack's roles, for the rule that names its role.
    attributes = {
        f"{name}.Arn": iam.get_role(RoleName=physical[name])["Role"]["Arn"]
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::IAM::Role" and physical.get(name)
    }
    for name, resource in template["Resources"].items():
        if not conditions.get(resource.get("Condition", ""), True):
            continue
        kind = resource["Type"]
        if name not in created:
            problems.append(f"{name} ({kind}) was not created")
            continue
        status = created[name]["ResourceStatus"]
        resources[name] = {"type": kind, "status": status, "physical_id": physical[name]}
        if status != "CREATE_COMPLETE":
            problems.append(f"{name} ({kind}) is {status}: {created[name].get('ResourceStatusReason')}")
        if kind == "AWS::Events::Rule":
            props = resolve(resource["Properties"], values, conditions, physical, attributes)
            events = client("events")
            rule_name = physical[name].rsplit("/", 1)[-1]
            rule = events.describe_rule(Name=rule_name)
            expect(f"{name} EventPattern", json.loads(rule["EventPattern"]), props["EventPattern"])
            targets = events.list_targets_by_rule(Rule=rule_name)["Targets"]
            expect(
                f"{name} targets",
                [(t["Arn"], t.get("RoleArn")) for t in targets],
                [(t["Arn"], t.get("RoleArn")) for t in props["Targets"]],
            )
            continue
        if kind != "AWS::IAM::Role":
            problems.append(f"{name}: no check for {kind}; add one to deploy_plain")
            continue
        props = resolve(resource["Properties"], values, conditions, physical, {})
        role = repair_role_policies(iam, physical[name])
        held = iam.get_role(RoleName=physical[name])["Role"]
        expect(f"{name} name", held["RoleName"], props.get("RoleName", held["RoleName"]))
        expect(f"{name} path", held["Path"], props.get("Path", "/"))
        expect(f"{name} trust policy", role["trust_policy"], props["AssumeRolePolicyDocument"])
        expect(
            f"{name} inline policies",
            role["inline_policies"],
            {p["PolicyName"]: p["PolicyDocument"] for p in props.get("Policies", [])},
        )
        expect(f"{name} managed policies", role["managed_policy_arns"], props.get("ManagedPolicyArns", []))
        roles[name] = role
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    return {
        "stack_name": stack_name,
        "stack_status": stack["StackStatus"],
        "account_id": account_id,
        "parameters": parameters,
        "resources": resources,
        "moto_workarounds": [f"put {r['name']}'s inline policies back as JSON (moto stored them as dicts)" for r in roles.values()],
        "outputs": outputs,
        "roles": roles,
        "problems": problems,
    }


if __name__ == "__main__":
    sys.exit(main())
