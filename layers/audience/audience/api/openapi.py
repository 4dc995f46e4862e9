"""Print the OpenAPI document of the REST API (`python -m audience.api.openapi > docs/openapi.json`)."""

from __future__ import annotations

import json
from typing import Any


def document() -> dict[str, Any]:
    from audience.api.app import create_app

    return create_app(max_body_bytes=4 * 1024 * 1024).openapi()


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(render(), end="")
