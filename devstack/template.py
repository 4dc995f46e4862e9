"""Read a SAM template and resolve what the local stack needs from it: names, ARNs, functions, events."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
PARTITION = "aws"
URL_SUFFIX = "amazonaws.com"

TABLE = "AWS::DynamoDB::Table"
QUEUE = "AWS::SQS::Queue"
BUCKET = "AWS::S3::Bucket"
TOPIC = "AWS::SNS::Topic"
FUNCTION = "AWS::Serverless::Function"
LAYER = "AWS::Serverless::LayerVersion"
STATE_MACHINE = "AWS::Serverless::StateMachine"
HTTP_API = "AWS::Serverless::HttpApi"
REST_API = "AWS::Serverless::Api"
EVENT_BUS = "AWS::Events::EventBus"
EVENT_RULE = "AWS::Events::Rule"
SUBSCRIPTION = "AWS::SNS::Subscription"

# Types the local stack models; every other resource (roles, alarms, log groups, ...) is skipped.
MODELLED_TYPES = frozenset(
    {TABLE, QUEUE, BUCKET, TOPIC, FUNCTION, LAYER, STATE_MACHINE, HTTP_API, REST_API, EVENT_BUS, EVENT_RULE}
    | {SUBSCRIPTION}
)

# SAM creates these APIs when a function's HttpApi/Api event names no ApiId.
IMPLICIT_HTTP_API = "ServerlessHttpApi"
IMPLICIT_REST_API = "ServerlessRestApi"


class TemplateError(Exception):
    """The template uses something the local stack cannot resolve; the message says where."""


class _NoValue:
    """AWS::NoValue: the property it is assigned to disappears."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()


# ---------------------------------------------------------------------------
# YAML with CloudFormation short tags
# ---------------------------------------------------------------------------


# libyaml's parser when PyYAML was built with it: several times faster on a large template.
_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _TemplateLoader(_BaseLoader):
    """SafeLoader that keeps dates as strings and turns `!Tag` into its long form."""


# CloudFormation reads `2010-09-09` as a string; plain SafeLoader would make it a date.
_TemplateLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _short_tag(loader: yaml.Loader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix in ("Ref", "Condition"):
        return {tag_suffix: value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        resource, _, attribute = value.partition(".")
        value = [resource, attribute]
    return {f"Fn::{tag_suffix}": value}


_TemplateLoader.add_multi_constructor("!", _short_tag)


def load_yaml(path: str | Path) -> Any:
    """Parse a YAML (or JSON) file that may use CloudFormation's short tags (!Ref, !Sub, ...)."""
    with open(path, encoding="utf-8") as stream:
        return yaml.load(stream, Loader=_TemplateLoader)  # noqa: S506 - a SafeLoader


# ---------------------------------------------------------------------------
# What the stack consumes
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Resource:
    """One modelled resource, with Globals already merged into its (unresolved) properties."""

    logical_id: str
    type: str
    properties: dict[str, Any]


@dataclass(frozen=True)
class HttpRoute:
    """An HttpApi or Api event: which requests reach the function, and in which payload format."""

    function_id: str
    event_name: str
    api_id: str
    method: str  # upper case, or ANY
    path: str | None  # None for the HTTP API's $default route
    payload_version: str  # "2.0" or "1.0"


@dataclass(frozen=True)
class SqsEventSource:
    """An SQS event: the function consumes the queue in batches."""

    function_id: str
    event_name: str
    queue_arn: str
    batch_size: int
    report_batch_item_failures: bool
    enabled: bool


@dataclass(frozen=True)
class StreamEventSource:
    """A DynamoDB event: the function consumes the table's stream."""

    function_id: str
    event_name: str
    stream_arn: str
    starting_position: str
    batch_size: int
    maximum_retry_attempts: int  # -1: retry until the record expires
    bisect_on_error: bool
    report_batch_item_failures: bool
    on_failure_arn: str | None
    enabled: bool


@dataclass(frozen=True)
class Schedule:
    """A Schedule/ScheduleV2 event, recorded so a caller can fire it by hand."""

    function_id: str
    event_name: str
    expression: str
    input: Any
    enabled: bool


@dataclass(frozen=True)
class FunctionSpec:
    """Everything needed to run one function in-process and to wire its event sources."""

    logical_id: str
    name: str
    arn: str
    code_dir: Path
    handler: str
    runtime: str
    timeout: int
    memory_size: int
    environment: dict[str, str]
    layer_dirs: list[Path]
    routes: list[HttpRoute] = field(default_factory=list)
    sqs_sources: list[SqsEventSource] = field(default_factory=list)
    stream_sources: list[StreamEventSource] = field(default_factory=list)
    schedules: list[Schedule] = field(default_factory=list)


@dataclass(frozen=True)
class StateMachineSpec:
    """A state machine with its definition fully resolved."""

    logical_id: str
    name: str
    arn: str
    type: str
    definition: dict[str, Any]


# ---------------------------------------------------------------------------
# The template
# ---------------------------------------------------------------------------

_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


def _merge_globals(global_value: Any, local_value: Any) -> Any:
    """SAM's Globals rule: maps merge (local wins), lists concatenate (globals first), scalars are replaced."""
    if isinstance(global_value, dict) and isinstance(local_value, dict):
        merged = dict(global_value)
        for key, value in local_value.items():
            merged[key] = _merge_globals(global_value[key], value) if key in global_value else value
        return merged
    if isinstance(global_value, list) and isinstance(local_value, list):
        return [*global_value, *local_value]
    return local_value


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


class Template:
    """A parsed SAM template with parameters, conditions and Globals applied, resolving intrinsics on demand."""

    def __init__(
        self,
        document: dict[str, Any],
        *,
        path: Path,
        parameters: dict[str, Any] | None = None,
        region: str = REGION,
        account_id: str = ACCOUNT_ID,
        stack_name: str = "devstack",
    ) -> None:
        if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
            raise TemplateError(f"{path}: not a CloudFormation template (no Resources section)")
        self.path = path
        self.root = path.parent
        self.region = region
        self.account_id = account_id
        self.stack_name = stack_name
        self.mappings: dict[str, Any] = document.get("Mappings") or {}
        self._raw_conditions: dict[str, Any] = document.get("Conditions") or {}
        self._conditions: dict[str, bool] = {}
        self._evaluating: set[str] = set()
        self._raw_outputs: dict[str, Any] = document.get("Outputs") or {}
        # Values only the running stack knows (queue URLs, stream ARNs): (logical id, attribute) → value.
        self._runtime: dict[tuple[str, str], Any] = {}
        self._names: dict[str, str] = {}
        self.parameters = self._parameters(document.get("Parameters") or {}, parameters or {})
        self.resources: dict[str, Resource] = {}
        self.skipped: dict[str, str] = {}
        self._load_resources(document["Resources"], document.get("Globals") or {})

    @classmethod
    def load(
        cls, path: str | Path = "template.yaml", parameters: dict[str, Any] | None = None, **options: Any
    ) -> Template:
        """Read `path` and apply parameter overrides (values as you would pass to `sam deploy`)."""
        path = Path(path).resolve()
        return cls(load_yaml(path), path=path, parameters=parameters, **options)

    # -- parameters, conditions, resources ----------------------------------

    def _parameters(self, declared: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(overrides) - set(declared))
        if unknown:
            raise TemplateError(f"{self.path}: parameter(s) {', '.join(unknown)} not declared in the template")
        values: dict[str, Any] = {}
        for name, spec in declared.items():
            spec = spec or {}
            if name in overrides:
                raw = overrides[name]
            elif "Default" in spec:
                raw = spec["Default"]
            else:
                raise TemplateError(f"Parameters.{name}: no Default and no value given")
            value = str(raw).lower() if isinstance(raw, bool) else str(raw)
            allowed = spec.get("AllowedValues")
            if allowed is not None and value not in [str(a) for a in allowed]:
                raise TemplateError(f"Parameters.{name}: {value!r} is not one of {allowed}")
            pattern = spec.get("AllowedPattern")
            if pattern is not None and not re.fullmatch(pattern, value):
                raise TemplateError(f"Parameters.{name}: {value!r} does not match {pattern!r}")
            kind = str(spec.get("Type", "String"))
            # List parameters resolve to lists, everything else to strings (as CloudFormation does).
            if kind.startswith("List<") or kind == "CommaDelimitedList":
                values[name] = [item.strip() for item in value.split(",")] if value else []
            else:
                values[name] = value
        return values

    def condition(self, name: str) -> bool:
        """Evaluate a named condition from the Conditions section."""
        if name in self._conditions:
            return self._conditions[name]
        if name not in self._raw_conditions:
            raise TemplateError(f"Conditions.{name}: no such condition")
        if name in self._evaluating:
            raise TemplateError(f"Conditions.{name}: refers to itself")
        self._evaluating.add(name)
        try:
            value = self.resolve(self._raw_conditions[name], f"Conditions.{name}")
        finally:
            self._evaluating.discard(name)
        self._conditions[name] = _as_bool(value)
        return self._conditions[name]

    def _load_resources(self, raw: dict[str, Any], globals_: dict[str, Any]) -> None:
        global_sections = {f"AWS::Serverless::{section}": value for section, value in globals_.items()}
        for logical_id, body in raw.items():
            kind = body.get("Type", "")
            condition = body.get("Condition")
            if condition is not None and not self.condition(condition):
                continue
            if kind not in MODELLED_TYPES:
                self.skipped[logical_id] = kind
                continue
            properties = dict(body.get("Properties") or {})
            if kind in global_sections:
                properties = _merge_globals(global_sections[kind], properties)
            self.resources[logical_id] = Resource(logical_id, kind, properties)
        self._add_implicit_apis(global_sections)

    def _add_implicit_apis(self, global_sections: dict[str, Any]) -> None:
        for resource in self.of_type(FUNCTION):
            for event in (resource.properties.get("Events") or {}).values():
                props = event.get("Properties") or {}
                if props.get("ApiId") is not None or props.get("RestApiId") is not None:
                    continue
                if event.get("Type") == "HttpApi" and IMPLICIT_HTTP_API not in self.resources:
                    props_ = dict(global_sections.get(HTTP_API) or {})
                    self.resources[IMPLICIT_HTTP_API] = Resource(IMPLICIT_HTTP_API, HTTP_API, props_)
                if event.get("Type") == "Api" and IMPLICIT_REST_API not in self.resources:
                    props_ = dict(global_sections.get(REST_API) or {})
                    self.resources[IMPLICIT_REST_API] = Resource(IMPLICIT_REST_API, REST_API, props_)

    def of_type(self, *types: str) -> list[Resource]:
        """Modelled resources of the given types, in template order."""
        return [r for r in self.resources.values() if r.type in types]

    def _resource(self, logical_id: str, where: str) -> Resource:
        if logical_id in self.resources:
            return self.resources[logical_id]
        if logical_id in self.skipped:
            raise TemplateError(
                f"{where}: refers to {logical_id} ({self.skipped[logical_id]}), a type the local stack does not model"
            )
        raise TemplateError(f"{where}: refers to {logical_id}, which is not a resource (or its Condition is false)")

    # -- names and attributes ----------------------------------------------

    def _prop(self, logical_id: str, name: str) -> Any:
        resource = self.resources[logical_id]
        return self.resolve(resource.properties.get(name), f"{logical_id}.Properties.{name}")

    def name(self, logical_id: str) -> str:
        """The physical name CloudFormation would use (the declared one, else stack-LogicalId)."""
        if logical_id in self._names:
            return self._names[logical_id]
        resource = self._resource(logical_id, logical_id)
        generated = f"{self.stack_name}-{logical_id}"
        kind = resource.type
        if kind == TABLE:
            name = self._prop(logical_id, "TableName") or generated
        elif kind == QUEUE:
            fifo = _as_bool(self._prop(logical_id, "FifoQueue"))
            name = self._prop(logical_id, "QueueName") or (generated + ".fifo" if fifo else generated)
        elif kind == BUCKET:
            name = self._prop(logical_id, "BucketName") or generated.lower()
        elif kind == TOPIC:
            fifo = _as_bool(self._prop(logical_id, "FifoTopic"))
            name = self._prop(logical_id, "TopicName") or (generated + ".fifo" if fifo else generated)
        elif kind == FUNCTION:
            name = self._prop(logical_id, "FunctionName") or generated
        elif kind == STATE_MACHINE:
            name = self._prop(logical_id, "Name") or generated
        elif kind == LAYER:
            name = self._prop(logical_id, "LayerName") or logical_id
        elif kind in (EVENT_BUS, EVENT_RULE):
            name = self._prop(logical_id, "Name") or generated
        else:  # APIs: a stable fake id, shaped like API Gateway's
            name = hashlib.sha256(f"{self.stack_name}/{logical_id}".encode()).hexdigest()[:10]
        self._names[logical_id] = str(name)
        return self._names[logical_id]

    def set_runtime_attribute(self, logical_id: str, attribute: str, value: Any) -> None:
        """Record a value only the running stack knows (attribute "Ref" overrides the Ref value)."""
        self._runtime[(logical_id, attribute)] = value

    def ref(self, logical_id: str, where: str = "") -> Any:
        """What `!Ref logical_id` resolves to: a parameter, a pseudo parameter or a resource's physical id."""
        where = where or f"Ref {logical_id}"
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": (
                f"arn:{PARTITION}:cloudformation:{self.region}:{self.account_id}:stack/{self.stack_name}/local"
            ),
            "AWS::Partition": PARTITION,
            "AWS::URLSuffix": URL_SUFFIX,
            "AWS::NotificationARNs": [],
            "AWS::NoValue": NO_VALUE,
        }
        if logical_id in pseudo:
            return pseudo[logical_id]
        if logical_id in self.parameters:
            return self.parameters[logical_id]
        resource = self._resource(logical_id, where)
        if (logical_id, "Ref") in self._runtime:
            return self._runtime[(logical_id, "Ref")]
        kind = resource.type
        if kind in (QUEUE, TOPIC, STATE_MACHINE, LAYER):
            # A queue's Ref is its URL, a topic's and a state machine's their ARN.
            return self.get_att(logical_id, {QUEUE: "QueueUrl", TOPIC: "TopicArn"}.get(kind, "Arn"), where)
        return self.name(logical_id)

    def get_att(self, logical_id: str, attribute: str, where: str = "") -> Any:
        """What `!GetAtt logical_id.attribute` resolves to."""
        where = where or f"GetAtt {logical_id}.{attribute}"
        resource = self._resource(logical_id, where)
        if (logical_id, attribute) in self._runtime:
            return self._runtime[(logical_id, attribute)]
        kind, name = resource.type, self.name(logical_id)
        region, account = self.region, self.account_id
        known: dict[str, dict[str, str]] = {
            TABLE: {"Arn": f"arn:{PARTITION}:dynamodb:{region}:{account}:table/{name}"},
            QUEUE: {
                "Arn": f"arn:{PARTITION}:sqs:{region}:{account}:{name}",
                "QueueName": name,
                "QueueUrl": f"https://sqs.{region}.{URL_SUFFIX}/{account}/{name}",
            },
            BUCKET: {
                "Arn": f"arn:{PARTITION}:s3:::{name}",
                "DomainName": f"{name}.s3.{URL_SUFFIX}",
                "RegionalDomainName": f"{name}.s3.{region}.{URL_SUFFIX}",
                "DualStackDomainName": f"{name}.s3.dualstack.{region}.{URL_SUFFIX}",
                "WebsiteURL": f"http://{name}.s3-website-{region}.{URL_SUFFIX}",
            },
            TOPIC: {"TopicArn": f"arn:{PARTITION}:sns:{region}:{account}:{name}", "TopicName": name},
            FUNCTION: {"Arn": f"arn:{PARTITION}:lambda:{region}:{account}:function:{name}"},
            LAYER: {"Arn": f"arn:{PARTITION}:lambda:{region}:{account}:layer:{name}:1"},
            STATE_MACHINE: {"Arn": f"arn:{PARTITION}:states:{region}:{account}:stateMachine:{name}", "Name": name},
            HTTP_API: {"ApiEndpoint": f"https://{name}.execute-api.{region}.{URL_SUFFIX}"},
            EVENT_BUS: {"Arn": f"arn:{PARTITION}:events:{region}:{account}:event-bus/{name}", "Name": name},
            EVENT_RULE: {"Arn": self._rule_arn(logical_id, name)} if kind == EVENT_RULE else {},
            REST_API: {"RootResourceId": hashlib.sha256(name.encode()).hexdigest()[:10]},
        }
        if attribute in known.get(kind, {}):
            return known[kind][attribute]
        if kind == TABLE and attribute == "StreamArn":
            if not resource.properties.get("StreamSpecification"):
                raise TemplateError(f"{where}: {logical_id} has no StreamSpecification, so no StreamArn")
            raise TemplateError(f"{where}: {logical_id}.StreamArn is only known once the table has been created")
        raise TemplateError(f"{where}: Fn::GetAtt {logical_id}.{attribute} is not supported for {kind}")

    def _rule_arn(self, logical_id: str, name: str) -> str:
        bus = self._prop(logical_id, "EventBusName") or "default"
        bus = str(bus).rsplit("/", 1)[-1]
        path = f"rule/{name}" if bus == "default" else f"rule/{bus}/{name}"
        return f"arn:{PARTITION}:events:{self.region}:{self.account_id}:{path}"

    # -- intrinsic functions -------------------------------------------------

    def resolve(self, value: Any, where: str) -> Any:
        """Resolve every intrinsic function in `value`; `where` names the property for error messages."""
        if isinstance(value, list):
            items = [self.resolve(item, f"{where}[{i}]") for i, item in enumerate(value)]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref" or key == "Condition" or key.startswith("Fn::"):
                return self._intrinsic(key, argument, where)
        resolved = {key: self.resolve(item, f"{where}.{key}") for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not NO_VALUE}

    def _intrinsic(self, key: str, argument: Any, where: str) -> Any:
        here = f"{where} ({key})"
        if key == "Ref":
            return self.ref(str(self.resolve(argument, here)), here)
        if key == "Condition":
            return self.condition(str(argument))
        if key == "Fn::GetAtt":
            if isinstance(argument, str):
                argument = argument.split(".", 1)
            logical_id, attribute = (self.resolve(part, here) for part in argument)
            return self.get_att(logical_id, attribute, here)
        if key == "Fn::Sub":
            return self._sub(argument, here)
        if key == "Fn::Join":
            delimiter, items = argument
            items = self.resolve(items, here)
            return str(self.resolve(delimiter, here)).join(str(item) for item in items)
        if key == "Fn::Select":
            index, items = argument
            items = self.resolve(items, here)
            return items[int(self.resolve(index, here))]
        if key == "Fn::Split":
            delimiter, text = argument
            return str(self.resolve(text, here)).split(str(self.resolve(delimiter, here)))
        if key == "Fn::If":
            condition, when_true, when_false = argument
            return self.resolve(when_true if self.condition(condition) else when_false, here)
        if key == "Fn::Equals":
            left, right = (self.resolve(side, here) for side in argument)
            return str(left) == str(right)
        if key == "Fn::Not":
            return not _as_bool(self.resolve(argument[0], here))
        if key == "Fn::And":
            return all(_as_bool(self.resolve(item, here)) for item in argument)
        if key == "Fn::Or":
            return any(_as_bool(self.resolve(item, here)) for item in argument)
        if key == "Fn::FindInMap":
            map_name, top, second = (self.resolve(part, here) for part in argument[:3])
            try:
                return self.mappings[map_name][top][second]
            except KeyError:
                raise TemplateError(f"{here}: Mappings.{map_name}.{top}.{second} does not exist") from None
        if key == "Fn::Base64":
            return base64.b64encode(str(self.resolve(argument, here)).encode()).decode()
        if key == "Fn::GetAZs":
            return [f"{self.region}{zone}" for zone in "abc"]
        if key == "Fn::ToJsonString":
            return json.dumps(self.resolve(argument, here), separators=(",", ":"))
        if key == "Fn::Length":
            return len(self.resolve(argument, here))
        raise TemplateError(f"{where}: {key} is not supported by the local stack")

    def _sub(self, argument: Any, where: str) -> str:
        if isinstance(argument, list):
            text, variables = argument[0], self.resolve(argument[1] if len(argument) > 1 else {}, where)
        else:
            text, variables = argument, {}
        if not isinstance(text, str):
            raise TemplateError(f"{where}: Fn::Sub needs a string, got {type(text).__name__}")

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return str(self.get_att(logical_id, attribute, where))
            return str(self.ref(name, where))

        return _SUB_VARIABLE.sub(replace, text)

    # -- views the stack consumes -------------------------------------------

    def properties(self, logical_id: str, *names: str) -> dict[str, Any]:
        """The resolved properties of a resource (only `names` when given, so unrelated ones cannot fail)."""
        resource = self._resource(logical_id, logical_id)
        keys = names or tuple(resource.properties)
        return {
            key: value
            for key in keys
            if key in resource.properties
            and (value := self.resolve(resource.properties[key], f"{logical_id}.Properties.{key}")) is not NO_VALUE
        }

    def references(self, logical_id: str) -> set[str]:
        """Logical ids of resources this resource's properties refer to (Ref, GetAtt, Sub)."""
        found: set[str] = set()

        def walk(value: Any) -> None:
            if isinstance(value, list):
                for item in value:
                    walk(item)
            elif isinstance(value, dict):
                for key, item in value.items():
                    if key == "Ref" and isinstance(item, str):
                        found.add(item)
                    elif key == "Fn::GetAtt":
                        found.add(item.split(".", 1)[0] if isinstance(item, str) else str(item[0]))
                    elif key == "Fn::Sub":
                        text = item[0] if isinstance(item, list) else item
                        if isinstance(text, str):
                            found.update(m.split(".", 1)[0] for m in _SUB_VARIABLE.findall(text))
                    walk(item)

        walk(self.resources[logical_id].properties)
        return found & set(self.resources)

    def layer_dirs(self, layer_arns: list[str] | None = None) -> list[Path]:
        """ContentUri folders of the template's layers (of the given ARNs only, when given)."""
        dirs = []
        for layer in self.of_type(LAYER):
            if layer_arns is not None and self.ref(layer.logical_id) not in layer_arns:
                continue
            content = self._prop(layer.logical_id, "ContentUri")
            if not isinstance(content, str):
                raise TemplateError(
                    f"{layer.logical_id}.Properties.ContentUri: only a local folder can be used locally"
                )
            dirs.append((self.root / content).resolve())
        return dirs

    def function(self, logical_id: str) -> FunctionSpec:
        """Resolve a function's code location, settings, environment and events."""
        resource = self._resource(logical_id, logical_id)
        if resource.type != FUNCTION:
            raise TemplateError(f"{logical_id}: is a {resource.type}, not an AWS::Serverless::Function")
        props = self.properties(
            logical_id, "CodeUri", "Handler", "Runtime", "Timeout", "MemorySize", "Environment", "Layers"
        )
        code_uri = props.get("CodeUri")
        if not isinstance(code_uri, str):
            raise TemplateError(
                f"{logical_id}.Properties.CodeUri: a local folder is needed to run the function locally"
            )
        if not props.get("Handler"):
            raise TemplateError(f"{logical_id}.Properties.Handler: missing")
        variables = (props.get("Environment") or {}).get("Variables") or {}
        spec = FunctionSpec(
            logical_id=logical_id,
            name=self.name(logical_id),
            arn=self.get_att(logical_id, "Arn"),
            code_dir=(self.root / code_uri).resolve(),
            handler=str(props["Handler"]),
            runtime=str(props.get("Runtime", "python3.13")),
            timeout=int(props.get("Timeout", 3)),
            memory_size=int(props.get("MemorySize", 128)),
            environment={key: _env_string(value) for key, value in variables.items()},
            layer_dirs=self.layer_dirs([str(arn) for arn in props.get("Layers") or []]),
        )
        for event_name, event in (resource.properties.get("Events") or {}).items():
            self._add_event(spec, event_name, event)
        return spec

    def _add_event(self, spec: FunctionSpec, event_name: str, event: dict[str, Any]) -> None:
        where = f"{spec.logical_id}.Properties.Events.{event_name}"
        kind = event.get("Type")
        props = self.resolve(event.get("Properties") or {}, f"{where}.Properties")
        enabled = _as_bool(props.get("Enabled", True))
        if kind in ("HttpApi", "Api"):
            implicit = IMPLICIT_HTTP_API if kind == "HttpApi" else IMPLICIT_REST_API
            api = props.get("ApiId") or props.get("RestApiId") or self.ref(implicit, where)
            default_version = "2.0" if kind == "HttpApi" else "1.0"
            spec.routes.append(
                HttpRoute(
                    function_id=spec.logical_id,
                    event_name=event_name,
                    api_id=str(api),
                    method=str(props.get("Method", "ANY")).upper() if "Path" in props else "ANY",
                    path=props.get("Path"),
                    payload_version=str(props.get("PayloadFormatVersion", default_version)),
                )
            )
        elif kind == "SQS":
            spec.sqs_sources.append(
                SqsEventSource(
                    function_id=spec.logical_id,
                    event_name=event_name,
                    queue_arn=_required(props, "Queue", where),
                    batch_size=int(props.get("BatchSize", 10)),
                    report_batch_item_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
                    enabled=enabled,
                )
            )
        elif kind == "DynamoDB":
            destination = ((props.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
            spec.stream_sources.append(
                StreamEventSource(
                    function_id=spec.logical_id,
                    event_name=event_name,
                    stream_arn=_required(props, "Stream", where),
                    starting_position=str(props.get("StartingPosition", "LATEST")),
                    batch_size=int(props.get("BatchSize", 100)),
                    maximum_retry_attempts=int(props.get("MaximumRetryAttempts", -1)),
                    bisect_on_error=_as_bool(props.get("BisectBatchOnFunctionError", False)),
                    report_batch_item_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
                    on_failure_arn=destination,
                    enabled=enabled,
                )
            )
        elif kind in ("Schedule", "ScheduleV2"):
            expression = props.get("Schedule") or props.get("ScheduleExpression") or ""
            payload = props.get("Input")
            if isinstance(payload, str):
                with contextlib.suppress(ValueError):  # Input is JSON text; keep it as given otherwise
                    payload = json.loads(payload)
            state = props.get("State")
            spec.schedules.append(
                Schedule(
                    function_id=spec.logical_id,
                    event_name=event_name,
                    expression=str(expression),
                    input=payload,
                    enabled=enabled if state is None else str(state).upper() == "ENABLED",
                )
            )
        # Other event types (S3, SNS, EventBridgeRule, ...) are not wired locally.

    def state_machine(self, logical_id: str) -> StateMachineSpec:
        """Resolve a state machine's definition (DefinitionUri file or inline) with its substitutions."""
        resource = self._resource(logical_id, logical_id)
        props = self.properties(logical_id, "Definition", "DefinitionUri", "DefinitionSubstitutions", "Type")
        where = f"{logical_id}.Properties"
        if "Definition" in props:
            definition = props["Definition"]
        elif isinstance(props.get("DefinitionUri"), str):
            file = (self.root / props["DefinitionUri"]).resolve()
            if not file.exists():
                raise TemplateError(f"{where}.DefinitionUri: {file} does not exist")
            # SAM leaves intrinsics in definition files alone: only DefinitionSubstitutions apply.
            definition = load_yaml(file)
        else:
            raise TemplateError(f"{where}: needs Definition or a local DefinitionUri file")
        substitutions = {key: _env_string(value) for key, value in (props.get("DefinitionSubstitutions") or {}).items()}
        definition = _substitute(definition, substitutions, f"{where}.DefinitionSubstitutions")
        return StateMachineSpec(
            logical_id=resource.logical_id,
            name=self.name(logical_id),
            arn=self.get_att(logical_id, "Arn"),
            type=str(props.get("Type", "STANDARD")),
            definition=definition,
        )

    def outputs(self) -> tuple[dict[str, Any], dict[str, str]]:
        """Resolved Outputs, and for each one that cannot be resolved locally, why."""
        values: dict[str, Any] = {}
        problems: dict[str, str] = {}
        for name, output in self._raw_outputs.items():
            condition = output.get("Condition")
            if condition is not None and not self.condition(condition):
                continue
            try:
                values[name] = self.resolve(output.get("Value"), f"Outputs.{name}.Value")
            except TemplateError as error:
                problems[name] = str(error)
        return values, problems


def _required(props: dict[str, Any], name: str, where: str) -> str:
    if not props.get(name):
        raise TemplateError(f"{where}.Properties.{name}: missing")
    return str(props[name])


def _env_string(value: Any) -> str:
    """Lambda environment values and substitutions are strings; CloudFormation converts scalars."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _substitute(value: Any, substitutions: dict[str, str], where: str) -> Any:
    """Replace ${Name} placeholders in every string of a state machine definition."""
    if isinstance(value, list):
        return [_substitute(item, substitutions, where) for item in value]
    if isinstance(value, dict):
        return {key: _substitute(item, substitutions, where) for key, item in value.items()}
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in substitutions:
            raise TemplateError(f"{where}: the definition uses ${{{name}}}, which has no substitution")
        return substitutions[name]

    return _SUB_VARIABLE.sub(replace, value)
