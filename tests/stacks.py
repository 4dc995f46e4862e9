"""The application's stack for a whole test module, for modules whose tests each use orgs of their own:
provisioning one per test would cost most of their run."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"


@contextmanager
def module_stack(**environment: str) -> Iterator[Any]:
    """template.yaml provisioned on moto with `environment` set for its functions, the container's cached
    clients and services reset on the way in and out. Nothing is drained afterwards: what the module's
    tests left queued goes with the stack."""
    import pytest

    from audience import container
    from devstack.testing import local_stack

    with local_stack(str(TEMPLATE), parameters={"Stage": "test"}) as running:
        with pytest.MonkeyPatch.context() as env:
            for name, value in environment.items():
                env.setenv(name, value)
            container.reset()
            yield running
        container.reset()
