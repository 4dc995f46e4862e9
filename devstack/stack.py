"""The local stack: template resources created in moto, functions run in-process, event sources polled."""

from __future__ import annotations

import importlib
import io
import json
import logging
import os
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from devstack.emulator import MOTO_CONFIG, release_dynamodb, serialize_dynamodb
from devstack.faults import FaultPlan, Faults
from devstack.functions import LocalFunction, register, unregister
from devstack.httpapi import HttpApi
from devstack.pollers import PollResult, SqsPoller, StreamPoller
from devstack.template import (
    BUCKET,
    EVENT_BUS,
    EVENT_RULE,
    FUNCTION,
    HTTP_API,
    LAYER,
    QUEUE,
    REST_API,
    STATE_MACHINE,
    SUBSCRIPTION,
    TABLE,
    TOPIC,
    FunctionSpec,
    Schedule,
    Template,
)

log = logging.getLogger("devstack")

# Local-only settings, set next to the template's own environment variables.
LOCAL_ENV = {
    # No X-Ray daemon locally, and Powertools Metrics would otherwise print EMF blobs to stdout.
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    # botocore otherwise sends Streams calls to <account>.streams-ddb..., an endpoint moto's mock does not know.
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    # Outbound webhooks may go to http://127.0.0.1 receivers (never allowed on AWS: https to public hosts only).
    "WEBHOOK_ALLOW_PRIVATE_URLS": "true",
}

# Caches of the domain package that hold clients or settings; cleared when the stack changes the environment.
CACHE_RESETS = ("audience.container:reset", "audience.aws:reset")

_ROLE_NAME = "devstack-execution-role"
_TRUST_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)

# Creation order; within a type, resources another one refers to (a queue's DLQ) come first.
_ORDER = (
    TABLE,
    QUEUE,
    BUCKET,
    TOPIC,
    SUBSCRIPTION,
    EVENT_BUS,
    EVENT_RULE,
    LAYER,
    FUNCTION,
    STATE_MACHINE,
    HTTP_API,
    REST_API,
)


class StackError(Exception):
    """The local stack cannot do what was asked; the message says what and where."""


class DrainTimeoutError(StackError):
    """`drain()` ran out of time; the message names what is still busy."""


def _stub_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "Runs in-process in the local stack; see devstack/functions.py.\n")
    return buffer.getvalue()


def _flag(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


_STUB_ZIP = _stub_zip()
_SESSION_LOCK = threading.RLock()
_SESSIONS: list[boto3.session.Session] = []


def _session() -> boto3.session.Session:
    """One boto3 session for every stack: it caches the service models, which makes clients cheap."""
    if not _SESSIONS:
        _SESSIONS.append(boto3.session.Session())
    return _SESSIONS[0]


class LocalStack:
    """A SAM template running on moto, with its functions dispatched in-process."""

    def __init__(self, template: Template) -> None:
        self.template = template
        self.region = template.region
        self.functions: dict[str, LocalFunction] = {}
        self.resources: dict[str, Any] = {}
        self.outputs: dict[str, Any] = {}
        self.env: dict[str, str] = {}
        self.schedules: list[Schedule] = []
        self.pollers: list[SqsPoller | StreamPoller] = []
        self.http_app = HttpApi(self.functions)
        self._clients: dict[str, Any] = {}
        self._saved_env: dict[str, str | None] = {}
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._provisioned = False
        self._serialized = False
        self.provision_seconds: float | None = None

    @classmethod
    def from_template(
        cls,
        path: str | Path = "template.yaml",
        parameters: dict[str, Any] | None = None,
        *,
        stack_name: str = "devstack",
    ) -> LocalStack:
        """Read a SAM template (parameter overrides as for `sam deploy`); nothing is created until `provision()`."""
        return cls(Template.load(path, parameters, stack_name=stack_name))

    # -- clients -------------------------------------------------------------

    def client(self, service: str) -> Any:
        """A boto3 client for the stack's region (honours AWS_ENDPOINT_URL, so it reaches a moto server)."""
        with _SESSION_LOCK:
            if service not in self._clients:
                config = Config(retries={"mode": "standard", "max_attempts": 2})
                if service == "dynamodbstreams":
                    config = config.merge(Config(account_id_endpoint_mode="disabled"))
                self._clients[service] = _session().client(service, region_name=self.region, config=config)
            return self._clients[service]

    # -- provisioning ----------------------------------------------------------

    def provision(self) -> LocalStack:
        """Create every modelled resource, register the functions and set the process environment."""
        if self._provisioned:
            raise StackError("this stack is already provisioned")
        started = time.perf_counter()
        serialize_dynamodb()
        self._serialized = True
        self._set_env(self._base_env())
        for layer_dir in self.template.layer_dirs():
            if str(layer_dir) not in sys.path:
                sys.path.insert(0, str(layer_dir))
        role = self._execution_role()
        for logical_id in self._creation_order():
            kind = self.template.resources[logical_id].type
            if kind == TABLE:
                self._create_table(logical_id)
            elif kind == QUEUE:
                self._create_queue(logical_id)
            elif kind == BUCKET:
                self._create_bucket(logical_id)
            elif kind == TOPIC:
                self._create_topic(logical_id)
            elif kind == SUBSCRIPTION:
                self._create_subscription(logical_id)
            elif kind == EVENT_BUS:
                self.client("events").create_event_bus(Name=self.template.name(logical_id))
            elif kind == EVENT_RULE:
                self._create_rule(logical_id)
            elif kind == FUNCTION:
                self._create_function(self.template.function(logical_id), role)
            elif kind == STATE_MACHINE:
                self._create_state_machine(logical_id, role)
            self.resources[logical_id] = self.template.ref(logical_id)
        self.env = self._function_env()
        self._set_env(self.env)
        self.outputs, problems = self.template.outputs()
        for name, problem in problems.items():
            log.warning("output %s left out: %s", name, problem)
        register(list(self.functions.values()))
        self._provisioned = True
        self.http_app.set_routes([route for f in self.functions.values() for route in f.spec.routes])
        self.pollers = self._make_pollers()
        _reset_caches()
        self.provision_seconds = time.perf_counter() - started
        log.info("provisioned %d resources in %.3fs", len(self.resources), self.provision_seconds)
        return self

    def _base_env(self) -> dict[str, str]:
        env = {"AWS_DEFAULT_REGION": self.region, "AWS_REGION": self.region, **LOCAL_ENV}
        if not os.environ.get("AWS_ACCESS_KEY_ID"):
            env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")  # noqa: S106 - moto ignores them
        return env

    def _set_env(self, values: dict[str, str]) -> None:
        for key, value in values.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def _restore_env(self) -> None:
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()

    def _creation_order(self) -> list[str]:
        ordered: list[str] = []
        for kind in _ORDER:
            same = {r.logical_id for r in self.template.of_type(kind)}
            for logical_id in (r.logical_id for r in self.template.of_type(kind)):
                self._visit(logical_id, same, ordered, set())
        return ordered

    def _visit(self, logical_id: str, same: set[str], ordered: list[str], path: set[str]) -> None:
        """Depth-first: what `logical_id` refers to (among `same`) goes into `ordered` before it."""
        if logical_id in ordered:
            return
        if logical_id in path:
            raise StackError(f"{logical_id}: circular reference between {', '.join(sorted(path))}")
        path.add(logical_id)
        for dependency in sorted(self.template.references(logical_id) & same):
            self._visit(dependency, same, ordered, path)
        path.discard(logical_id)
        ordered.append(logical_id)

    def _execution_role(self) -> str:
        iam = self.client("iam")
        try:
            return iam.create_role(RoleName=_ROLE_NAME, AssumeRolePolicyDocument=_TRUST_POLICY)["Role"]["Arn"]
        except iam.exceptions.EntityAlreadyExistsException:
            return iam.get_role(RoleName=_ROLE_NAME)["Role"]["Arn"]

    def _create_table(self, logical_id: str) -> None:
        props = self.template.properties(
            logical_id,
            "KeySchema",
            "AttributeDefinitions",
            "BillingMode",
            "ProvisionedThroughput",
            "GlobalSecondaryIndexes",
            "LocalSecondaryIndexes",
            "StreamSpecification",
            "TimeToLiveSpecification",
            "SSESpecification",
            "TableClass",
            "DeletionProtectionEnabled",
            "Tags",
        )
        name = self.template.name(logical_id)
        request: dict[str, Any] = {
            "TableName": name,
            "KeySchema": props.get("KeySchema"),
            "AttributeDefinitions": props.get("AttributeDefinitions"),
            "BillingMode": props.get("BillingMode", "PROVISIONED"),
        }
        if request["BillingMode"] == "PROVISIONED":
            request["ProvisionedThroughput"] = props.get(
                "ProvisionedThroughput", {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
            )
        for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            if props.get(key):
                allowed = ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput", "OnDemandThroughput")
                request[key] = [{k: v for k, v in index.items() if k in allowed} for index in props[key]]
        if props.get("StreamSpecification"):
            view = props["StreamSpecification"]["StreamViewType"]
            request["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": view}
        sse = props.get("SSESpecification")
        if sse:
            request["SSESpecification"] = {
                key: sse[source]
                for key, source in (
                    ("Enabled", "SSEEnabled"),
                    ("SSEType", "SSEType"),
                    ("KMSMasterKeyId", "KMSMasterKeyId"),
                )
                if source in sse
            }
        for key in ("TableClass", "DeletionProtectionEnabled", "Tags"):
            if key in props:
                request[key] = props[key]
        dynamodb = self.client("dynamodb")
        try:
            table = dynamodb.create_table(**request)["TableDescription"]
        except Exception as error:
            raise StackError(f"{logical_id}: creating table {name} failed: {error}") from error
        if table.get("LatestStreamArn"):
            self.template.set_runtime_attribute(logical_id, "StreamArn", table["LatestStreamArn"])
        ttl = props.get("TimeToLiveSpecification")
        if ttl and str(ttl.get("Enabled")).lower() == "true":
            dynamodb.update_time_to_live(
                TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]}
            )

    def _create_queue(self, logical_id: str) -> None:
        props = self.template.properties(logical_id)
        name = self.template.name(logical_id)
        attributes: dict[str, str] = {}
        for key, value in props.items():
            if key in ("QueueName", "Tags"):
                continue
            if key in ("RedrivePolicy", "RedriveAllowPolicy"):
                attributes[key] = value if isinstance(value, str) else json.dumps(value)
            else:
                attributes[key] = _flag(value)
        request: dict[str, Any] = {"QueueName": name, "Attributes": attributes}
        if props.get("Tags"):
            request["tags"] = {tag["Key"]: tag["Value"] for tag in props["Tags"]}
        try:
            url = self.client("sqs").create_queue(**request)["QueueUrl"]
        except Exception as error:
            raise StackError(f"{logical_id}: creating queue {name} failed: {error}") from error
        self.template.set_runtime_attribute(logical_id, "QueueUrl", url)

    def _create_bucket(self, logical_id: str) -> None:
        name = self.template.name(logical_id)
        request: dict[str, Any] = {"Bucket": name}
        if self.region != "us-east-1":
            request["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        self.client("s3").create_bucket(**request)

    def _create_topic(self, logical_id: str) -> None:
        props = self.template.properties(logical_id, "FifoTopic", "ContentBasedDeduplication", "DisplayName")
        attributes = {key: _flag(value) for key, value in props.items()}
        arn = self.client("sns").create_topic(Name=self.template.name(logical_id), Attributes=attributes)["TopicArn"]
        self.template.set_runtime_attribute(logical_id, "Ref", arn)

    def _create_subscription(self, logical_id: str) -> None:
        """SNS subscriptions to the stack's queues (moto delivers them in process); other protocols
        (email, https) reach outside and are left out."""
        props = self.template.properties(logical_id)
        if str(props.get("Protocol")).lower() != "sqs":
            log.info("%s: %s subscriptions are not delivered locally", logical_id, props.get("Protocol"))
            return
        attributes = {k: _flag(v) for k, v in props.items() if k in ("RawMessageDelivery", "FilterPolicyScope")}
        if props.get("FilterPolicy"):
            attributes["FilterPolicy"] = json.dumps(props["FilterPolicy"])
        self.client("sns").subscribe(
            TopicArn=props["TopicArn"], Protocol="sqs", Endpoint=props["Endpoint"], Attributes=attributes
        )

    def _create_rule(self, logical_id: str) -> None:
        """An EventBridge rule with an event pattern; moto delivers matching put_events to its SQS targets
        (other targets, and schedule expressions, are left out locally)."""
        props = self.template.properties(logical_id, "EventBusName", "EventPattern", "State", "Targets")
        if not props.get("EventPattern"):
            log.info("%s: only rules with an EventPattern are modelled locally", logical_id)
            return
        events, name = self.client("events"), self.template.name(logical_id)
        bus = str(props.get("EventBusName") or "default").rsplit("/", 1)[-1]
        pattern = props["EventPattern"]
        events.put_rule(
            Name=name,
            EventBusName=bus,
            EventPattern=pattern if isinstance(pattern, str) else json.dumps(pattern),
            State=props.get("State", "ENABLED"),
        )
        targets = [t for t in props.get("Targets", []) if str(t.get("Arn", "")).split(":")[2:3] == ["sqs"]]
        for skipped in [t for t in props.get("Targets", []) if t not in targets]:
            log.info("%s: target %s is not an SQS queue; not delivered locally", logical_id, skipped.get("Id"))
        if targets:
            events.put_targets(Rule=name, EventBusName=bus, Targets=[{"Id": t["Id"], "Arn": t["Arn"]} for t in targets])

    def _create_function(self, spec: FunctionSpec, role: str) -> None:
        self.functions[spec.logical_id] = LocalFunction(spec)
        self.schedules.extend(spec.schedules)
        # Registered in moto too, so `aws lambda invoke` and Step Functions tasks find it by name or ARN.
        try:
            self.client("lambda").create_function(
                FunctionName=spec.name,
                Runtime=spec.runtime,
                Role=role,
                Handler=spec.handler,
                Code={"ZipFile": _STUB_ZIP},
                Timeout=spec.timeout,
                MemorySize=spec.memory_size,
                Environment={"Variables": spec.environment},
            )
        except Exception as error:
            raise StackError(f"{spec.logical_id}: registering function {spec.name} failed: {error}") from error

    def _create_state_machine(self, logical_id: str, role: str) -> None:
        spec = self.template.state_machine(logical_id)
        try:
            self.client("stepfunctions").create_state_machine(
                name=spec.name, definition=json.dumps(spec.definition), roleArn=role, type=spec.type
            )
        except Exception as error:
            raise StackError(f"{logical_id}: creating state machine {spec.name} failed: {error}") from error

    def _function_env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        owner: dict[str, str] = {}
        for function in self.functions.values():
            for key, value in function.spec.environment.items():
                if key in env and env[key] != value:
                    raise StackError(
                        f"environment variable {key} is {env[key]!r} in {owner[key]} but {value!r} in "
                        f"{function.spec.logical_id}; locally every function shares one process, so they must agree"
                    )
                env[key], owner[key] = value, function.spec.logical_id
        return env

    def _make_pollers(self) -> list[SqsPoller | StreamPoller]:
        queue_urls = {
            self.template.get_att(r.logical_id, "Arn"): self.template.ref(r.logical_id)
            for r in self.template.of_type(QUEUE)
        }
        pollers: list[SqsPoller | StreamPoller] = []
        for function in self.functions.values():
            for source in function.spec.sqs_sources:
                if not source.enabled:
                    continue
                url = queue_urls.get(source.queue_arn)
                if url is None:
                    url = self.client("sqs").get_queue_url(QueueName=source.queue_arn.split(":")[5])["QueueUrl"]
                pollers.append(SqsPoller(function, source, url, self.client("sqs"), self.region))
            for stream in function.spec.stream_sources:
                if stream.enabled:
                    pollers.append(
                        StreamPoller(
                            function,
                            stream,
                            self.client("dynamodbstreams"),
                            self.client("sqs"),
                            self.client("sns"),
                            self.region,
                        )
                    )
        return pollers

    # -- running functions -----------------------------------------------------

    def function(self, name: str) -> LocalFunction:
        """A function by logical id, function name or ARN."""
        if name in self.functions:
            return self.functions[name]
        for function in self.functions.values():
            if name in (function.spec.name, function.spec.arn):
                return function
        raise StackError(f"no function {name!r} in the template (known: {', '.join(self.functions)})")

    def invoke(self, function: str, event: Any) -> Any:
        """Invoke a function in-process with a Lambda context; its exceptions propagate."""
        return self.function(function).invoke(event)

    def inject_faults(self, plan: FaultPlan | None) -> Faults | None:
        """Inject the plan's faults into every way a function runs (pollers, Step Functions tasks, the HTTP
        API, `invoke`) from now on, replacing any earlier plan; None stops injecting. Returns the ledger
        of what gets injected (see devstack/faults.py)."""
        for function in self.functions.values():
            if function.faults is not None:
                function.faults.active = False
        faults = Faults(plan) if plan is not None else None
        for function in self.functions.values():
            function.faults = faults
        return faults

    # -- event sources ---------------------------------------------------------

    def drain(self, timeout: float = 30.0) -> dict[str, int]:
        """Poll every queue and stream in this thread until all are idle and no execution is running.

        Returns how many records each source delivered, keyed "<FunctionLogicalId>:<EventName>".
        """
        if self._threads:
            raise StackError("drain() cannot run while start() pollers are running; call stop() first")
        deadline = time.monotonic() + timeout
        counts = {poller.name: 0 for poller in self.pollers}
        while True:
            progressed = False
            for poller in self.pollers:
                result = poller.poll()
                counts[poller.name] += result.records
                progressed = progressed or result.records > 0
            if not progressed:
                busy = [reason for poller in self.pollers if (reason := poller.pending())]
                busy += self._running_executions()
                if not busy:
                    return counts
            else:
                busy = ["records are still arriving"]
            if time.monotonic() > deadline:
                raise DrainTimeoutError(f"still busy after {timeout}s: {'; '.join(busy)}")
            if not progressed:
                time.sleep(0.02)

    def _running_executions(self) -> list[str]:
        running = []
        sfn = self.client("stepfunctions")
        for resource in self.template.of_type(STATE_MACHINE):
            arn = self.template.ref(resource.logical_id)
            for execution in sfn.list_executions(stateMachineArn=arn, statusFilter="RUNNING").get("executions", []):
                running.append(f"{resource.logical_id}: execution {execution['executionArn']} running")
        return running

    @property
    def running(self) -> bool:
        """Whether background pollers (`start()`) are running."""
        return bool(self._threads)

    def start(self, interval: float = 0.2) -> None:
        """Poll every event source continuously in background threads (what `make dev` runs)."""
        if self._threads:
            return
        self._stopping.clear()
        for poller in self.pollers:
            thread = threading.Thread(target=self._poll_forever, args=(poller, interval), name=poller.name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _poll_forever(self, poller: SqsPoller | StreamPoller, interval: float) -> None:
        while not self._stopping.is_set():
            try:
                result = poller.poll()
            except Exception:
                log.exception("%s: polling failed", poller.name)
                result = PollResult(failed=True)
            if result.failed:
                # Back off a little so a handler that always fails does not spin (Lambda backs off too).
                self._stopping.wait(1.0)
            elif not result.records:
                self._stopping.wait(interval)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the background pollers; each finishes the batch it is running."""
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("%s: still running a batch after %.1fs; left behind", thread.name, timeout)
        self._threads.clear()

    def close(self) -> None:
        """Stop pollers and executions, unhook moto's Lambda Invoke, and restore the environment."""
        self.stop()
        if self._provisioned:
            sfn = self.client("stepfunctions")
            for resource in self.template.of_type(STATE_MACHINE):
                arn = self.template.ref(resource.logical_id)
                for execution in sfn.list_executions(stateMachineArn=arn, statusFilter="RUNNING").get("executions", []):
                    try:
                        sfn.stop_execution(executionArn=execution["executionArn"])
                    except Exception:
                        log.debug("could not stop %s", execution["executionArn"], exc_info=True)
            unregister(list(self.functions.values()))
            self._provisioned = False
        if self._serialized:
            release_dynamodb()
            self._serialized = False
        self._restore_env()
        _reset_caches()


def _reset_caches() -> None:
    """Clear domain caches that captured clients or settings, if their modules are loaded at all."""
    for target in CACHE_RESETS:
        module_name, attribute = target.split(":")
        if module_name in sys.modules:
            getattr(importlib.import_module(module_name), attribute)()


__all__ = ["MOTO_CONFIG", "DrainTimeoutError", "LocalStack", "StackError"]
