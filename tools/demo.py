"""`make demo`: the real keywatch binary, end to end, against emulated AWS only.

Starts moto on a free loopback port, seeds a small account, builds keywatch, runs it under cargo-lambda's
Lambda Runtime API emulator exactly as tests/runtime_api.rs does, invokes it with events/scheduled.json and
events/manual.json, and prints what an email subscriber and an SQS subscriber received, and the dry-run
report. Then it makes that account the management account of an organization with two members, runs keywatch
with ACCOUNTS=organization, and works off the work queue as Lambda's SQS poller would (tests/support/pump.rs).
Every process it starts is stopped on exit, failure, Ctrl-C or SIGTERM.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
REGION = "us-east-1"
# The function name cargo-lambda's emulator serves when the runtime is started by hand.
FUNCTION = "_"
TOPIC_NAME = "keywatch-findings"
LEDGER_TABLE = "keywatch-ledger"
EXEMPT_USERS = "svc-*"

# Pinned before boto3 is imported or anything is started: whatever AWS profile, keys, token or endpoint the
# user has in their environment, nothing here can reach real AWS.
USER_ENV = dict(os.environ)
for _name in list(os.environ):
    if _name.startswith("AWS_"):
        del os.environ[_name]
DUMMY_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": REGION,
    "AWS_DEFAULT_REGION": REGION,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}
os.environ.update(DUMMY_AWS)
# Loopback traffic never goes through a proxy the user may have configured.
for _name in ("no_proxy", "NO_PROXY"):
    os.environ[_name] = ",".join(filter(None, [os.environ.get(_name), "127.0.0.1", "localhost"]))

import boto3  # noqa: E402  (after the environment is pinned)

LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class DemoFailed(Exception):
    pass


class Processes:
    """Children started in their own process group, so each is stopped with everything it spawned."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.running: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list, env: dict, cwd: Path = ROOT) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "wb")
        proc = subprocess.Popen(
            [str(a) for a in argv],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.running.append((name, proc))
        return proc

    def stop(self, name: str) -> None:
        for running, proc in self.running:
            if running == name:
                self._stop(proc)

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop_all(self) -> None:
        for _name, proc in reversed(self.running):
            self._stop(proc)
        self.running.clear()

    @staticmethod
    def _stop(proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what: str, ready, proc: subprocess.Popen, logs: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not ready():
        if proc.poll() is not None:
            raise DemoFailed(f"{what} exited with {proc.returncode}:\n{logs}")
        if time.monotonic() > deadline:
            raise DemoFailed(f"{what} was not ready within {within:.0f} s")
        time.sleep(0.1)


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def http(method: str, url: str, body: bytes | None = None, timeout: float = 120) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, data=body, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with LOOPBACK.open(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def banner(title: str) -> None:
    print(f"\n{'=' * 100}\n{title}\n{'=' * 100}", flush=True)


def build(binary: str = "keywatch") -> Path:
    """`cargo build` of one of the package's binaries; its path, as cargo reports it."""
    banner(f"Building {binary} (cargo build)")
    # Cargo keeps the user's environment (proxies, CARGO_TARGET_DIR...); it talks to crates.io, not AWS.
    built = subprocess.run(
        ["cargo", "build", "--locked", "--bin", binary, "--message-format=json-render-diagnostics"],
        cwd=ROOT,
        env=USER_ENV,
        stdout=subprocess.PIPE,
        text=True,
    )
    if built.returncode != 0:
        raise DemoFailed(f"cargo build of {binary} failed (see above)")
    for line in built.stdout.splitlines():
        message = json.loads(line)
        if message.get("reason") == "compiler-artifact" and message.get("executable"):
            if message["target"]["name"] == binary:
                return Path(message["executable"])
    raise DemoFailed(f"cargo build did not report the {binary} executable")


def clients(endpoint: str, key: str = "testing", secret: str = "testing"):
    session = boto3.session.Session(
        aws_access_key_id=key, aws_secret_access_key=secret, region_name=REGION
    )
    return lambda service: session.client(service, endpoint_url=endpoint)


# name, path, console password, keys ("unused" / "used" / "inactive"), tags, what keywatch should do
ACCOUNT = [
    ("alice", "/", True, ["unused"], {}, "FINDING: console user, key never used"),
    ("frank", "/", True, ["unused", "unused"], {}, "2 FINDINGS: two keys, neither used"),
    ("hank", "/engineering/", True, ["unused"], {}, "FINDING: user under a path"),
    ("carol", "/", True, ["used"], {}, "ok: her key has been used"),
    ("erin", "/", True, ["inactive"], {}, "ok: her key is inactive"),
    ("bob", "/", False, ["unused"], {}, "ok: no console password (programmatic user)"),
    ("break-glass", "/", True, ["unused"], {"keywatch:exempt": "break-glass account"},
     "exempt: tag keywatch:exempt"),
    ("svc-ci", "/", True, ["unused"], {}, f"exempt: EXEMPT_USERS={EXEMPT_USERS}"),
]


def seed(endpoint: str) -> tuple[str, str]:
    banner("Seeding the emulated account (moto)")
    aws = clients(endpoint)
    iam = aws("iam")
    print(f"{'user':<13} {'path':<15} {'password':<9} {'keys':<17} expected")
    for name, path, password, keys, tags, expected in ACCOUNT:
        iam.create_user(
            UserName=name, Path=path, Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
        )
        if password:
            iam.create_login_profile(UserName=name, Password="Corr3ct-Horse-Battery!")
        for state in keys:
            key = iam.create_access_key(UserName=name)["AccessKey"]
            if state == "used":
                # Any request signed with the key is a use; moto records it as IAM does.
                signed = clients(endpoint, key["AccessKeyId"], key["SecretAccessKey"])
                signed("sts").get_caller_identity()
            elif state == "inactive":
                iam.update_access_key(
                    UserName=name, AccessKeyId=key["AccessKeyId"], Status="Inactive"
                )
        print(f"{name:<13} {path:<15} {'yes' if password else 'no':<9} {', '.join(keys):<17} {expected}")

    sns, sqs = aws("sns"), aws("sqs")
    topic = sns.create_topic(Name=TOPIC_NAME)["TopicArn"]
    queue = sqs.create_queue(QueueName=TOPIC_NAME)["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    queue_arn = attributes["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    sns.subscribe(TopicArn=topic, Protocol="email", Endpoint="security@example.com")
    print(f"\ntopic {topic}\n  subscribed: SQS queue {TOPIC_NAME}, email security@example.com")
    # The ledger, with template.yaml's key schema: what keywatch said before, across runs.
    aws("dynamodb").create_table(
        TableName=LEDGER_TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "account_id", "AttributeType": "S"},
            {"AttributeName": "access_key_id", "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": "account_id", "KeyType": "HASH"},
            {"AttributeName": "access_key_id", "KeyType": "RANGE"},
        ],
    )
    print(f"ledger DynamoDB table {LEDGER_TABLE}")
    return topic, queue


def invoke(processes: Processes, port: int, event_file: str, function: str = "keywatch") -> dict:
    payload = (ROOT / "events" / event_file).read_bytes()
    status, body = invoke_raw(port, payload)
    if status != 200:
        tail = "\n".join(processes.log(function).splitlines()[-15:])
        raise DemoFailed(
            f"invoking with events/{event_file} failed (HTTP {status}): {body.decode(errors='replace')}\n"
            f"keywatch's last log lines:\n{tail}"
        )
    return json.loads(body)


def invoke_raw(port: int, payload: bytes) -> tuple[int, bytes]:
    return http("POST", f"http://127.0.0.1:{port}/2015-03-31/functions/{FUNCTION}/invocations", payload)


def sent_notifications(moto: str, topic: str) -> list:
    """What moto's SNS recorded for the topic, as published: (message_id, message, subject, attributes, group)."""
    status, body = http("GET", f"{moto}/moto-api/data.json")
    if status != 200:
        raise DemoFailed(f"moto's data endpoint answered HTTP {status}")
    topics = json.loads(body).get("sns", {}).get("Topic", [])
    return next((t["sent_notifications"] for t in topics if t.get("arn") == topic), [])


def drain(endpoint: str, queue: str) -> list:
    sqs = clients(endpoint)("sqs")
    out = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return out
        for message in messages:
            out.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])


def show_chat(chat: dict) -> None:
    """A custom notification roughly as the channel shows it: title, the Markdown description, next steps."""
    content = chat["content"]
    lines = [content["title"], "", *content["description"].splitlines()]
    if content.get("nextSteps"):
        lines += ["", "Next steps:", *(f"  • {step}" for step in content["nextSteps"])]
    lines += ["", f"thread {chat['metadata']['threadId']}   keywords {', '.join(content.get('keywords', []))}"]
    print("┌" + "─" * 99)
    for line in lines:
        print(f"│ {line}")
    print("└" + "─" * 99)


def summarize(report: dict) -> None:
    print(
        f"run {report['run_id']}: {report['users_examined']} users, {report['keys_examined']} keys, "
        f"{report['candidates_verified']} verified live, {report['api_calls']['total']} AWS calls"
    )
    for finding in report["findings"]:
        print(f"  finding   {finding['user_name']:<12} {finding['access_key_id']}  ({finding['user_arn']})")
    for exempted in report["exempted"]:
        print(f"  exempted  {exempted['user_name']:<12} {exempted['access_key_id']}  {exempted['reason']}")
    print(f"  notifications: {json.dumps(report['notifications'])}")


def demo(processes: Processes) -> None:
    binary = build()

    moto_port = free_port()
    moto = f"http://127.0.0.1:{moto_port}"
    server = processes.start(
        "moto", [VENV_BIN / "moto_server", "-H", "127.0.0.1", "-p", moto_port], env=dict(os.environ)
    )
    wait_until("moto", lambda: http("GET", f"{moto}/moto-api/")[0] == 200, server, processes.log("moto"))
    topic, queue = seed(moto)

    banner("Running the keywatch binary under the Lambda Runtime API emulator (cargo lambda watch)")
    api_port = free_port()
    emulator = processes.start(
        "cargo-lambda",
        [VENV_BIN / "cargo-lambda", "lambda", "watch", "--only-lambda-apis",
         "--invoke-address", "127.0.0.1", "--invoke-port", api_port],
        env=dict(os.environ),
    )
    wait_until("cargo-lambda", lambda: listening(api_port), emulator, processes.log("cargo-lambda"))
    # Only what Lambda and keywatch read: nothing from the user's environment reaches the function.
    function_env = {
        **DUMMY_AWS,
        "AWS_ENDPOINT_URL": moto,
        "AWS_LAMBDA_RUNTIME_API": f"http://127.0.0.1:{api_port}/.rt",
        "AWS_LAMBDA_FUNCTION_NAME": FUNCTION,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "FINDINGS_TOPIC_ARN": topic,
        "EXEMPT_USERS": EXEMPT_USERS,
        "LEDGER_TABLE": LEDGER_TABLE,
        "ALERTS": "changes",
        "CHAT_NOTIFICATIONS": "custom",
    }
    processes.start("keywatch", [binary], env=function_env)
    shown = binary.relative_to(ROOT) if binary.is_relative_to(ROOT) else binary
    print(f"emulator  127.0.0.1:{api_port}   function {shown}")
    print(f"moto      {moto}   FINDINGS_TOPIC_ARN={topic}   EXEMPT_USERS={EXEMPT_USERS}")
    print(f"          LEDGER_TABLE={LEDGER_TABLE}   ALERTS=changes   CHAT_NOTIFICATIONS=custom")

    banner("Invoke 1: events/scheduled.json (what EventBridge sends every day)")
    report = invoke(processes, api_port, "scheduled.json")
    summarize(report)

    banner("(a) The alert as an email subscriber receives it (the \"email\" variant moto's SNS received)")
    published = sent_notifications(moto, topic)
    if not published:
        raise DemoFailed("moto recorded no SNS publish for the scheduled run")
    for _message_id, message, subject, _attributes, _group in published:
        print(f"Subject: {subject}\n")
        print(json.loads(message)["email"])

    banner("(b) The JSON document an SQS subscriber got (read from the queue)")
    delivered = drain(moto, queue)
    for envelope in delivered:
        print(
            f"SNS envelope: Type={envelope['Type']} Subject={envelope['Subject']!r} "
            f"MessageId={envelope['MessageId']}"
        )
        print(json.dumps(json.loads(envelope["Message"]), indent=2))
    if len(delivered) != len(published):
        raise DemoFailed(f"{len(published)} message(s) published but {len(delivered)} in the queue")

    banner("(b2) The custom notification a Slack or Teams channel receives (the \"https\" variant, which AWS's "
           "chat integration renders)")
    chat = json.loads(json.loads(published[0][1])["https"])
    show_chat(chat)
    print("\nAs published (JSON):")
    print(json.dumps(chat, indent=2, ensure_ascii=False))
    if chat.get("version") != "1.0" or chat.get("source") != "custom" or chat.get("id") is None:
        raise DemoFailed(f"the https variant is not a custom notification: {chat}")

    banner("Invoke 2: events/manual.json ({\"dry_run\": true}) on the same running function")
    dry_run = invoke(processes, api_port, "manual.json")
    summarize(dry_run)

    banner("(c) The dry-run report (the invocation's response)")
    print(json.dumps(dry_run, indent=2))
    published_after = sent_notifications(moto, topic)
    queued_after = drain(moto, queue)
    print(
        f"\nPublished by the dry run: {len(published_after) - len(published)} SNS message(s); "
        f"{len(queued_after)} new message(s) in the queue."
    )
    if len(published_after) != len(published) or queued_after or not dry_run["dry_run"]:
        raise DemoFailed("the dry run published something")

    banner("Invoke 3: events/scheduled.json again: nothing changed, so ALERTS=changes publishes nothing")
    again = invoke(processes, api_port, "scheduled.json")
    summarize(again)
    print(f"  why: {again['alert']}")
    if again["notifications"] or drain(moto, queue) or len(sent_notifications(moto, topic)) != len(published):
        raise DemoFailed("an unchanged account published an alert under ALERTS=changes")

    iam = clients(moto)("iam")
    deleted = iam.list_access_keys(UserName="frank")["AccessKeyMetadata"][0]["AccessKeyId"]
    iam.delete_access_key(UserName="frank", AccessKeyId=deleted)
    banner(f"Invoke 4: frank deleted his key {deleted}; the next alert lists it as resolved")
    resolved_run = invoke(processes, api_port, "scheduled.json")
    summarize(resolved_run)
    print(f"  why: {resolved_run['alert']}")
    _message_id, message, subject, _attributes, _group = sent_notifications(moto, topic)[-1]
    print(f"\nSubject: {subject}\n")
    print(json.loads(message)["email"])
    delivered = drain(moto, queue)
    resolved = [r["access_key_id"] for d in delivered for r in json.loads(d["Message"])["resolved"]]
    if resolved != [deleted]:
        raise DemoFailed(f"expected {deleted} resolved in the alert, got {resolved}")
    items = clients(moto)("dynamodb").scan(TableName=LEDGER_TABLE)["Items"]
    print(f"The ledger now holds {len(items)} item(s):")
    for item in sorted(items, key=lambda i: i["user_name"]["S"]):
        print(
            f"  {item['user_name']['S']:<8} {item['access_key_id']['S']}  state={item['state']['S']:<9} "
            f"alerts={item['alerts']['N']}  first_alerted_at={item.get('first_alerted_at', {}).get('S')}"
        )

    # Minutes, not a day: an administrator makes a key for a new console user; its CloudTrail event checks
    # that user alone, a moment later.
    iam.create_user(UserName="new-hire")
    iam.create_login_profile(UserName="new-hire", Password="Corr3ct-Horse-Battery!")
    new_key = iam.create_access_key(UserName="new-hire")["AccessKey"]["AccessKeyId"]
    banner(f"Invoke 5: ops-admin created key {new_key} for new-hire; IAM's CloudTrail event "
           "(events/cloudtrail-create-access-key.json) checks new-hire alone")
    before = len(sent_notifications(moto, topic))
    started = time.monotonic()
    event_run = invoke(processes, api_port, "cloudtrail-create-access-key.json")
    took = time.monotonic() - started
    summarize(event_run)
    print(f"  users checked: {event_run['users_checked']}   calls: {event_run['api_calls']['by_operation']}")
    published = sent_notifications(moto, topic)[before:]
    if [f["access_key_id"] for f in event_run["findings"]] != [new_key] or len(published) != 1:
        raise DemoFailed(f"the event's check did not alert on {new_key} alone: {event_run['findings']}")
    _message_id, message, subject, _attributes, _group = published[0]
    print(f"\nAlerted {took:.1f} s after the event reached the function. Subject: {subject}\n")
    email = json.loads(message)["email"]
    print(email)
    if "(someone else, for this user)" not in email:
        raise DemoFailed("the alert does not say who created the key for whom")
    drain(moto, queue)

    organization_demo(processes, moto, api_port, binary, function_env, topic, queue)
    offline_audit()


# A credential report in the shapes real AWS writes, and the moment its verdicts are for.
AUDIT_REPORT = ROOT / "tests" / "fixtures" / "credential-report-aws-shapes.csv"
AUDIT_NOW = "2026-12-01T00:00:00Z"


def offline_audit() -> None:
    """keywatch-audit on a downloaded credential report: every rule, no AWS access at all."""
    audit = build("keywatch-audit")
    banner("keywatch-audit: the four CIS key rules on a downloaded credential report, offline")
    print(f"$ keywatch-audit {AUDIT_REPORT.relative_to(ROOT)} --rules all --now {AUDIT_NOW}")
    run = subprocess.run(
        [audit, AUDIT_REPORT, "--rules", "all", "--now", AUDIT_NOW],
        env={"PATH": os.environ.get("PATH", "")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    print(run.stdout, end="")
    # 3: findings, as the fixture holds.
    if run.returncode != 3 or "Nothing was verified live" not in run.stdout:
        raise DemoFailed(f"keywatch-audit exited {run.returncode}: {run.stderr}")


# The work queue's redrive maxReceiveCount, and keywatch's MAX_RECEIVE_COUNT to match it.
MAX_RECEIVE_COUNT = "3"
# The organization: member name, console users with a never-used key, programmatic users (never a finding).
MEMBERS = [
    ("dev", ["dev-alice", "dev-bob"], ["dev-ci"]),
    ("prod", ["prod-admin"], ["prod-deploy"]),
]


def organization(endpoint: str) -> dict:
    """The demo account becomes the management account; each member is seeded through
    OrganizationAccountAccessRole, as Organizations creates it. Returns {account_id: name}."""
    banner("An organization: the account above as management account, and two members")
    aws = clients(endpoint)
    orgs = aws("organizations")
    orgs.create_organization(FeatureSet="ALL")
    names = {orgs.describe_organization()["Organization"]["MasterAccountId"]: "management"}
    for name, console_users, programmatic in MEMBERS:
        account_id = orgs.create_account(AccountName=name, Email=f"{name}@example.com")[
            "CreateAccountStatus"
        ]["AccountId"]
        names[account_id] = name
        role = f"arn:aws:iam::{account_id}:role/OrganizationAccountAccessRole"
        credentials = aws("sts").assume_role(RoleArn=role, RoleSessionName="seed")["Credentials"]
        session = boto3.session.Session(
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
            region_name=REGION,
        )
        iam = session.client("iam", endpoint_url=endpoint)
        for user in console_users + programmatic:
            iam.create_user(UserName=user)
            if user in console_users:
                iam.create_login_profile(UserName=user, Password="Corr3ct-Horse-Battery!")
            iam.create_access_key(UserName=user)
        # The account's owner: every finding there whose user has no owner tag of its own goes to this team.
        orgs.tag_resource(ResourceId=account_id, Tags=[{"Key": "owner", "Value": f"team-{name}"}])
        print(
            f"{name:<5} {account_id}  owner tag team-{name}; console users with a never-used key: "
            f"{', '.join(console_users)}; programmatic: {', '.join(programmatic)}"
        )
    return names


def team_queues(endpoint: str, topic: str) -> dict:
    """Each team subscribes an SQS queue of its own with a filter policy on the owner attribute, as the README
    shows. Returns {team: queue URL}."""
    aws = clients(endpoint)
    sns, sqs = aws("sns"), aws("sqs")
    queues = {}
    for name, _, _ in MEMBERS:
        team = f"team-{name}"
        queue = sqs.create_queue(QueueName=team)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(
            TopicArn=topic, Protocol="sqs", Endpoint=arn,
            Attributes={"FilterPolicy": json.dumps({"owner": [team]})},
        )
        print(f"{team}: SQS queue subscribed with FilterPolicy {json.dumps({'owner': [team]})}")
        queues[team] = queue
    return queues


def work_queue(endpoint: str) -> tuple[str, str, str]:
    """The work queue and its DLQ as the template makes them: a failed check returns after the visibility
    timeout, and goes to the DLQ after MAX_RECEIVE_COUNT receives."""
    sqs = clients(endpoint)("sqs")
    dlq = sqs.create_queue(QueueName="keywatch-work-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT}
    queue = sqs.create_queue(
        QueueName="keywatch-work",
        Attributes={"VisibilityTimeout": "2", "RedrivePolicy": json.dumps(redrive)},
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return queue, arn, dlq


def queue_depth(sqs, queue: str) -> int:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
             "ApproximateNumberOfMessagesDelayed"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=names)["Attributes"]
    return sum(int(attributes[name]) for name in names)


def failed_ids(status: int, body: bytes, batch: list[str]) -> list[str]:
    """Lambda's ReportBatchItemFailures rules: an error, a response that is not JSON, or an unknown
    itemIdentifier fails the whole batch; no batchItemFailures is a complete success."""
    if status != 200:
        return batch
    try:
        failures = json.loads(body).get("batchItemFailures") or []
        ids = [failure["itemIdentifier"] for failure in failures]
    except (ValueError, AttributeError, TypeError, KeyError):
        return batch
    return ids if all(i in batch for i in ids) else batch


def pump(endpoint: str, port: int, queue: str, queue_arn: str, names: dict) -> dict:
    """Lambda's SQS poller, batch size 1: receive, invoke with Lambda's SQS event, delete what succeeded. Stops
    when the queue stays empty, after 50 invocations, or after 120 s, whichever is first."""
    sqs = clients(endpoint)("sqs")
    counts = {"invocations": 0, "deleted": 0, "failed": 0}
    started, empty_since = time.monotonic(), None
    while counts["invocations"] < 50 and time.monotonic() - started < 120:
        messages = sqs.receive_message(
            QueueUrl=queue, MaxNumberOfMessages=1, MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            if queue_depth(sqs, queue) == 0:
                empty_since = empty_since or time.monotonic()
                if time.monotonic() - empty_since > 0.3:
                    return counts
            else:
                empty_since = None
            time.sleep(0.1)
            continue
        empty_since = None
        records = [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            }
            for m in messages
        ]
        status, body = invoke_raw(port, json.dumps({"Records": records}).encode())
        counts["invocations"] += 1
        failed = failed_ids(status, body, [m["MessageId"] for m in messages])
        for message in messages:
            item = json.loads(message["Body"])
            attempt = message["Attributes"]["ApproximateReceiveCount"]
            if message["MessageId"] in failed:
                outcome = "failed, back after the visibility timeout"
            else:
                outcome = "ok, deleted"
            print(
                f"invocation {counts['invocations']}: account {item['account_id']} "
                f"({names.get(item['account_id'], '?')}), attempt {attempt}: {outcome}"
            )
            if message["MessageId"] in failed:
                counts["failed"] += 1
            else:
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
                counts["deleted"] += 1
    raise DemoFailed(f"the work queue was not worked off within the pump's bounds: {counts}")


def organization_demo(processes: Processes, moto: str, api_port: int, binary: Path, function_env: dict,
                      topic: str, alerts: str) -> None:
    names = organization(moto)
    teams = team_queues(moto, topic)
    queue, queue_arn, dlq = work_queue(moto)
    # One function on the emulator at a time: it hands each event to whichever runtime polls first.
    processes.stop("keywatch")
    processes.start("keywatch-org", [binary], env={
        **function_env,
        # Every account's alert, also the management account's, which the runs above already alerted.
        "ALERTS": "every-run",
        "ACCOUNTS": "organization",
        "WORK_QUEUE_URL": queue,
        "MAX_RECEIVE_COUNT": MAX_RECEIVE_COUNT,
    })
    print(
        f"\nkeywatch restarted with ACCOUNTS=organization WORK_QUEUE_URL={queue} "
        f"MAX_RECEIVE_COUNT={MAX_RECEIVE_COUNT} ALERTS=every-run"
    )

    banner("Invoke 6: events/scheduled.json dispatches one work message per ACTIVE account")
    dispatched = invoke(processes, api_port, "scheduled.json", "keywatch-org")
    print(json.dumps(dispatched))
    if sorted(dispatched["accounts"]) != sorted(names):
        raise DemoFailed(f"dispatched {dispatched['accounts']}, expected {sorted(names)}")

    banner("Lambda's SQS poller (played by this script): one invocation per work message")
    counts = pump(moto, api_port, queue, queue_arn, names)
    sqs = clients(moto)("sqs")
    print(f"{counts}; left in the work queue: {queue_depth(sqs, queue)}, in its DLQ: {queue_depth(sqs, dlq)}")

    banner("(d) Each account's own alert, as the SQS subscriber got it")
    alerted = {}
    for envelope in drain(moto, alerts):
        document = json.loads(envelope["Message"])
        alerted[document["account_id"]] = document
        keys = ", ".join(f"{f['user_name']} {f['access_key_id']}" for f in document["findings"])
        print(f"Subject: {envelope['Subject']}\n  run {document['run_id']}: {keys}")
    if sorted(alerted) != sorted(names) or counts["failed"] or queue_depth(sqs, dlq):
        raise DemoFailed(f"expected one alert per account {sorted(names)}, got {sorted(alerted)}; {counts}")
    if any(document["run_id"] != dispatched["run_id"] for document in alerted.values()):
        raise DemoFailed("an alert does not carry the dispatch run's run_id")

    banner("(e) Each team's own queue: only its keys, through its filter policy on the owner attribute")
    accounts = {f"team-{name}": account for account, name in names.items()}
    for team, team_queue in teams.items():
        received = drain(moto, team_queue)
        for envelope in received:
            document = json.loads(envelope["Message"])
            keys = ", ".join(f"{f['user_name']} {f['access_key_id']}" for f in document["findings"])
            owner = envelope.get("MessageAttributes", {}).get("owner", {}).get("Value")
            print(f"{team} received: owner={owner} account {document['account_id']}: {keys}")
        accounts_seen = {json.loads(e["Message"])["account_id"] for e in received}
        if accounts_seen != {accounts[team]}:
            raise DemoFailed(f"{team} received alerts of {sorted(accounts_seen)}, expected only {accounts[team]}")


def main() -> int:
    def stop(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    # Ctrl-C raises KeyboardInterrupt even when the shell that started us ignored SIGINT (a background job).
    signal.signal(signal.SIGINT, signal.default_int_handler)

    log_dir = Path(tempfile.mkdtemp(prefix="keywatch-demo-"))
    processes = Processes(log_dir)
    status = 1
    try:
        demo(processes)
        status = 0
    except DemoFailed as failure:
        print(f"\ndemo FAILED: {failure}", file=sys.stderr)
    except KeyboardInterrupt:
        print("\ndemo interrupted", file=sys.stderr)
        status = 130
    finally:
        # Nothing may interrupt the cleanup: a second Ctrl-C would leave emulators behind.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        processes.stop_all()
        # Logs are kept only when something went wrong.
        if status == 1:
            print(f"logs of moto, cargo-lambda and keywatch: {log_dir}", file=sys.stderr)
        else:
            shutil.rmtree(log_dir, ignore_errors=True)
    if status == 0:
        banner("Demo complete: moto, the emulator and keywatch are stopped. Nothing touched real AWS.")
    return status


if __name__ == "__main__":
    sys.exit(main())
