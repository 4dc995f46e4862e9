"""Pytest helpers: the whole local stack inside moto's in-process mock."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from moto import mock_aws

from devstack.emulator import MOTO_CONFIG
from devstack.stack import LocalStack


@contextmanager
def local_stack(
    template: str | Path = "template.yaml", parameters: dict[str, Any] | None = None, **options: Any
) -> Iterator[LocalStack]:
    """Provision `template` inside `moto.mock_aws` and yield the stack; everything is undone on exit.

    Usable as a pytest fixture body: `with local_stack() as stack: yield stack`.
    """
    saved = dict(os.environ)
    # A shell pointed at a moto server would send the mocked clients there instead.
    for key in [k for k in os.environ if k.startswith("AWS_ENDPOINT_URL")]:
        del os.environ[key]
    try:
        with mock_aws(config=MOTO_CONFIG):
            stack = LocalStack.from_template(template, parameters, **options)
            try:
                stack.provision()
                yield stack
            finally:
                stack.close()
    finally:
        os.environ.clear()
        os.environ.update(saved)
