"""Operator commands: create an org with its first API key, or another key for an org.

    python -m audience.admin create-org --name acme --dev-file .local/dev.json   # the local stack
    python -m audience.admin create-org --name acme --stack-name audience-prod   # a deployed stack
    python -m audience.admin create-key --org-id org_... --name ci --stack-name audience-prod

Against a deployed stack the command uses your AWS credentials and writes to the stack's tables
directly: creating the first key of an org cannot go through the API, which needs a key.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from audience import container
from audience.errors import AudienceError


def create_org(
    name: str, *, default_country: str | None = None, org_id: str | None = None, api_key: str | None = None
) -> dict[str, str]:
    """Create an org (idempotent for a given `org_id`) and an API key for it; returns both."""
    service = container.org_service()
    org = service.create_org(name, default_country=default_country, org_id=org_id)
    if api_key is not None and _key_exists(api_key):
        return {"org_id": org.id, "name": org.name, "api_key": api_key, "key_id": api_key.split("_")[1]}
    key, secret = service.create_key(org.id, "default", secret=api_key)
    return {"org_id": org.id, "name": org.name, "api_key": secret, "key_id": key.id}


SANDBOX_CHANNELS = ("whatsapp", "email", "sms", "telegram")


def ensure_sandbox(org_id: str) -> dict[str, str]:
    """Give the org a sandbox connection per common channel (whatsapp, email, sms, telegram) unless it has
    one; the local stack does this for its default org, so broadcasts can be tried without any platform
    account. Returns channel → connection id."""
    from audience import ids

    service = container.connection_service()
    found = {c.channel: c.id for c in service.list(org_id) if c.platform == "sandbox"}
    for channel in SANDBOX_CHANNELS:
        if channel not in found:
            connection = service.create(
                org_id,
                {
                    "platform": "sandbox",
                    "name": f"Sandbox {channel}",
                    "settings": {"channel": channel},
                    "secrets": {"signing_secret": ids.random_token(40)},
                },
            )
            found[channel] = connection.id
    return found


def create_key(org_id: str, name: str) -> dict[str, str]:
    service = container.org_service()
    service.get_org(org_id)
    key, secret = service.create_key(org_id, name)
    return {"org_id": org_id, "api_key": secret, "key_id": key.id}


def _key_exists(api_key: str) -> bool:
    try:
        container.org_service().authenticate(api_key)
    except AudienceError:
        return False
    return True


def _target_local(dev_file: Path) -> None:
    if not dev_file.exists():
        raise SystemExit(f"{dev_file} not found: start the local stack with `make dev` first")
    state = json.loads(dev_file.read_text())
    os.environ["AWS_ENDPOINT_URL"] = state["endpoint_url"]
    os.environ["AWS_DEFAULT_REGION"] = state["region"]
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    os.environ["CONTACTS_TABLE"] = state["resources"]["ContactsTable"]
    os.environ["ORGS_TABLE"] = state["resources"]["OrgsTable"]


def _target_stack(stack_name: str, region: str | None) -> None:
    import boto3

    if region:
        os.environ["AWS_DEFAULT_REGION"] = region
    stacks = boto3.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    os.environ["CONTACTS_TABLE"] = outputs["ContactsTableName"]
    os.environ["ORGS_TABLE"] = outputs["OrgsTableName"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m audience.admin", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    org = commands.add_parser("create-org", help="create an org and its first API key")
    org.add_argument("--name", required=True)
    org.add_argument("--default-country", help="ISO 3166-1 alpha-2 country for national phone numbers")
    key = commands.add_parser("create-key", help="create another API key for an org")
    key.add_argument("--org-id", required=True)
    key.add_argument("--name", default="admin")
    for sub in (org, key):
        where = sub.add_mutually_exclusive_group(required=True)
        where.add_argument("--dev-file", type=Path, help="the local stack's .local/dev.json")
        where.add_argument("--stack-name", help="a deployed CloudFormation stack")
        sub.add_argument("--region")
    args = parser.parse_args(argv)

    if args.dev_file:
        _target_local(args.dev_file)
    else:
        _target_stack(args.stack_name, args.region)
    container.reset()
    try:
        if args.command == "create-org":
            result = create_org(args.name, default_country=args.default_country)
        else:
            result = create_key(args.org_id, args.name)
    except AudienceError as error:
        print(json.dumps({"error": error.message}), file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
