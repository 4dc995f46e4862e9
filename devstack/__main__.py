"""`make dev`: moto in server mode, the template provisioned into it, pollers running, the API on uvicorn."""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("devstack")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address the API listens on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=3000, help="API port (default 3000)")
    parser.add_argument("--moto-port", type=int, default=4566, help="port of the AWS emulator (default 4566)")
    parser.add_argument("--stage", default="local", help="the template's Stage parameter (default local)")
    parser.add_argument("--template", default="template.yaml", help="SAM template (default template.yaml)")
    parser.add_argument("--state-dir", default=".local", type=Path, help="where dev.json is kept (default .local)")
    return parser.parse_args(argv)


def _check_port_free(host: str, port: int, what: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise SystemExit(f"{what} port {host}:{port} is not free ({error.strerror}); pick another one") from None


def _start_moto(port: int) -> Any:
    from moto.core.config import default_user_config
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer

    from devstack.emulator import MOTO_CONFIG

    # Same process as the server, so moto's configuration is set directly rather than through its config API.
    for section, values in MOTO_CONFIG.items():
        default_user_config.setdefault(section, {}).update(values)  # type: ignore[misc]
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server


def _saved_org(state_file: Path) -> dict[str, Any]:
    try:
        saved = json.loads(state_file.read_text())
    except (OSError, ValueError):
        return {}
    return {key: saved[key] for key in ("org_id", "api_key") if saved.get(key)}


def ensure_default_org(state_file: Path) -> dict[str, Any]:
    """Create the "Default" org, reusing the org id and API key saved in `state_file` by an earlier run."""
    if importlib.util.find_spec("audience.admin") is None:
        log.warning("audience.admin is not there yet: no org created")
        return {}
    from audience.admin import create_org

    saved = _saved_org(state_file)
    org = create_org(name="Default", org_id=saved.get("org_id"), api_key=saved.get("api_key"))
    admin = importlib.import_module("audience.admin")
    if hasattr(admin, "ensure_sandbox"):  # sandbox connections: broadcasts work without platform accounts
        org["sandbox_connections"] = admin.ensure_sandbox(org["org_id"])
    return org


def _warm_up(stack: Any) -> None:
    # Import every handler now, so the first request is fast and import errors show at start.
    for logical_id, function in stack.functions.items():
        try:
            function.handler()
        except Exception:
            log.exception("%s could not be imported; it is retried on its next invocation", logical_id)


def _banner(state: dict[str, Any], state_file: Path, seconds: float) -> str:
    endpoint, region = state["endpoint_url"], state["region"]
    lines = [
        "",
        f"Audience local stack ({state['stage']}) is up in {seconds:.1f}s.",
        f"  API          {state['api_url']}",
        f"  Org          {state.get('org_id') or '(none: audience.admin not available)'}",
        f"  API key      {state.get('api_key') or '-'}",
        *(
            [f"  Sandbox      {', '.join(f'{k} {v}' for k, v in state['sandbox_connections'].items())}"]
            if state.get("sandbox_connections")
            else []
        ),
        f"  AWS (moto)   {endpoint}  region {region}",
        f"  Try          AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local \\\n"
        f"                 aws --endpoint-url {endpoint} --region {region} dynamodb list-tables",
        f"  Saved to     {state_file}",
        "Data lives in memory and is gone when you stop; the org id and key are reused on the next start.",
        "Ctrl-C stops.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the local stack until interrupted; returns the exit code."""
    args = _parse(argv)
    started = time.perf_counter()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _check_port_free("127.0.0.1", args.moto_port, "moto")
    _check_port_free(args.host, args.port, "API")

    endpoint = f"http://127.0.0.1:{args.moto_port}"
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    # moto's Step Functions interpreter calls back into the server at localhost:$MOTO_PORT.
    os.environ["MOTO_PORT"] = str(args.moto_port)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    # Uvicorn re-raises the signal it caught once it has shut down; turn SIGTERM into a clean stop too.
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    import uvicorn

    from devstack.stack import LocalStack

    moto_server = None
    stack = None
    try:
        moto_server = _start_moto(args.moto_port)
        stack = LocalStack.from_template(args.template, {"Stage": args.stage}, stack_name=f"audience-{args.stage}")
        stack.provision()
        # Links the product hands out (unsubscribe) and the sandbox's status webhooks point at this server.
        api_url = f"http://{args.host}:{args.port}"
        os.environ["API_BASE_URL"] = api_url
        stack.start()
        state_file = args.state_dir / "dev.json"
        _warm_up(stack)
        org = ensure_default_org(state_file)
        state = {
            "api_url": api_url,
            "org_id": org.get("org_id"),
            "api_key": org.get("api_key"),
            "sandbox_connections": org.get("sandbox_connections", {}),
            "endpoint_url": endpoint,
            "region": stack.region,
            "stage": args.stage,
            "resources": stack.resources,
        }
        server = uvicorn.Server(
            uvicorn.Config(stack.http_app, host=args.host, port=args.port, log_level="info", lifespan="on")
        )

        def announce() -> None:
            # dev.json appears only once the API accepts connections, so scripts can wait for it.
            while not server.started and not server.should_exit:
                time.sleep(0.02)
            if server.started:
                args.state_dir.mkdir(parents=True, exist_ok=True)
                state_file.write_text(json.dumps(state, indent=2) + "\n")
                print(_banner(state, state_file, time.perf_counter() - started), flush=True)

        threading.Thread(target=announce, name="announce", daemon=True).start()
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        if stack is not None:
            stack.close()
        if moto_server is not None:
            moto_server.stop()
    print("Local stack stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
