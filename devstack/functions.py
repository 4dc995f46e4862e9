"""Run Lambda handlers in-process, and route moto's Lambda Invoke (and so Step Functions tasks) to them."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import sys
import threading
import time
import traceback
import uuid
import warnings
from dataclasses import dataclass, field
from typing import Any

from devstack.faults import Faults
from devstack.template import FunctionSpec

log = logging.getLogger("devstack")


class HandlerNotFoundError(Exception):
    """A function's Handler does not name a callable in its CodeUri."""


class ResponseNotSerializableError(Exception):
    """The handler returned something Lambda could not send back as JSON."""


@dataclass
class LambdaContext:
    """The context object Lambda passes to a Python handler (the attributes handlers actually read)."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    timeout_seconds: int
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    identity: Any = None
    client_context: Any = None
    _started: float = field(default_factory=time.monotonic, repr=False)

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return time.strftime("%Y/%m/%d/[$LATEST]") + self.aws_request_id.replace("-", "")

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the function's Timeout (not enforced locally)."""
        elapsed = time.monotonic() - self._started
        return max(0, int((self.timeout_seconds - elapsed) * 1000))


class LocalFunction:
    """One template function: its handler, loaded lazily from CodeUri under a module name of its own."""

    def __init__(self, spec: FunctionSpec) -> None:
        self.spec = spec
        self._handler: Any = None
        self._lock = threading.Lock()
        self.faults: Faults | None = None  # set by LocalStack.inject_faults

    @property
    def name(self) -> str:
        return self.spec.name

    def handler(self) -> Any:
        """Import the handler module on first use (the cold start), then reuse it."""
        if self._handler is None:
            with self._lock:
                if self._handler is None:
                    self._handler = self._load()
        return self._handler

    def _load(self) -> Any:
        spec = self.spec
        module_path, _, attribute = spec.handler.rpartition(".")
        if not module_path:
            raise HandlerNotFoundError(f"{spec.logical_id}: Handler {spec.handler!r} must be module.function")
        relative = module_path.replace(".", "/")
        file = spec.code_dir / f"{relative}.py"
        if not file.exists():
            file = spec.code_dir / relative / "__init__.py"
        if not file.exists():
            raise HandlerNotFoundError(
                f"{spec.logical_id}: no {relative}.py in {spec.code_dir} (Handler {spec.handler})"
            )
        for layer_dir in spec.layer_dirs:
            if str(layer_dir) not in sys.path:
                sys.path.insert(0, str(layer_dir))
        # Every function has its own app.py, so each is imported under a name of its own; its CodeUri is
        # on sys.path while it loads so that sibling modules import the way they do on Lambda.
        module_name = f"_devstack_functions.{spec.logical_id}.{module_path}"
        module_spec = importlib.util.spec_from_file_location(module_name, file)
        if module_spec is None or module_spec.loader is None:
            raise HandlerNotFoundError(f"{spec.logical_id}: cannot import {file}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_name] = module
        code_dir = str(spec.code_dir)
        sys.path.insert(0, code_dir)
        try:
            module_spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(module_name, None)
            raise
        finally:
            sys.path.remove(code_dir)
        handler = getattr(module, attribute, None)
        if not callable(handler):
            raise HandlerNotFoundError(f"{spec.logical_id}: {file} has no callable {attribute!r}")
        return handler

    def context(self) -> LambdaContext:
        """A fresh context for one invocation."""
        return LambdaContext(
            function_name=self.spec.name,
            invoked_function_arn=self.spec.arn,
            memory_limit_in_mb=self.spec.memory_size,
            timeout_seconds=self.spec.timeout,
        )

    def invoke(self, event: Any) -> Any:
        """Run the handler as Lambda would: the event and the result both go through JSON."""
        handler = self.handler()
        _ensure_event_loop()
        context = self.context()
        payload = json.loads(json.dumps(event))
        log.debug("invoke %s request %s", self.spec.logical_id, context.aws_request_id)
        faults = self.faults
        if faults is not None:
            faults.before(self.spec.logical_id, payload)
        result = handler(payload, context)
        if faults is not None:
            faults.after(self.spec.logical_id, payload)
        try:
            return json.loads(json.dumps(result))
        except (TypeError, ValueError) as error:
            raise ResponseNotSerializableError(
                f"{self.spec.logical_id} returned a value that is not JSON: {error}"
            ) from error


def _ensure_event_loop() -> None:
    """Give the calling thread a usable event loop, as Lambda's main thread has (Mangum relies on it).

    HTTP requests run handlers on worker threads, which have none, and `asyncio.run()` in a test leaves
    the main thread without one.
    """
    try:
        asyncio.get_running_loop()
        return
    except RuntimeError:
        pass
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            loop = asyncio.get_event_loop()
    except RuntimeError:
        loop = None
    if loop is None or loop.is_closed():
        asyncio.set_event_loop(asyncio.new_event_loop())


# Frames of this package are left out of the stack traces handlers' errors report.
_OWN_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def error_payload(error: BaseException) -> dict[str, Any]:
    """The payload Lambda returns when a Python handler raises (the trace starts at the handler)."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if not f.filename.startswith(_OWN_DIR)]
    return {
        "errorMessage": str(error),
        "errorType": type(error).__name__,
        "requestId": "",
        "stackTrace": traceback.format_list(frames),
    }


# ---------------------------------------------------------------------------
# moto's Lambda Invoke → in-process handlers
# ---------------------------------------------------------------------------

_registry: dict[str, LocalFunction] = {}
_registry_lock = threading.Lock()
_originals: dict[type, Any] = {}


def _function_name(name_or_arn: str) -> str:
    """Lambda accepts a name, a partial or full ARN, each optionally with :qualifier."""
    if name_or_arn.startswith("arn:"):
        return name_or_arn.split(":")[6]
    if ":function:" in name_or_arn or name_or_arn.count(":") == 2:
        return name_or_arn.split(":")[2]
    return name_or_arn.split(":")[0]


def _patched_invoke(original: Any) -> Any:
    def invoke(
        self: Any, function_name: str, qualifier: str | None, body: Any, headers: Any, response_headers: Any
    ) -> str | bytes | None:
        function = _registry.get(_function_name(function_name))
        if function is None:
            return original(self, function_name, qualifier, body, headers, response_headers)
        invocation_type = (headers or {}).get("X-Amz-Invocation-Type") or (headers or {}).get(
            "x-amz-invocation-type", "RequestResponse"
        )
        if invocation_type == "DryRun":
            return b""
        event = json.loads(body) if body else {}
        try:
            result = function.invoke(event)
            payload = json.dumps(result).encode()
        except Exception as error:
            # Lambda reports an unhandled error as a 200 with this header; Step Functions matches errorType.
            log.warning("%s raised %s: %s", function.spec.logical_id, type(error).__name__, error, exc_info=True)
            response_headers["x-amz-function-error"] = "Unhandled"
            payload = json.dumps(error_payload(error)).encode()
        response_headers["Content-Length"] = str(len(payload))
        return payload

    return invoke


def register(functions: list[LocalFunction]) -> None:
    """Make moto's Lambda Invoke run these functions in-process (patches moto on first use)."""
    from moto.awslambda.models import LambdaBackend
    from moto.awslambda_simple.models import LambdaSimpleBackend

    with _registry_lock:
        for function in functions:
            _registry[function.name] = function
        for backend in (LambdaBackend, LambdaSimpleBackend):
            if backend not in _originals:
                _originals[backend] = backend.__dict__["invoke"]
                backend.invoke = _patched_invoke(_originals[backend])  # type: ignore[method-assign]


def unregister(functions: list[LocalFunction]) -> None:
    """Forget these functions; restore moto's own Invoke once no local function is left."""
    with _registry_lock:
        for function in functions:
            if _registry.get(function.name) is function:
                del _registry[function.name]
        if not _registry:
            for backend, original in _originals.items():
                backend.invoke = original  # type: ignore[method-assign]
            _originals.clear()
