"""Audience's local stack: the SAM template on moto, with Lambda handlers run in-process."""

from devstack.stack import MOTO_CONFIG, DrainTimeoutError, LocalStack, StackError
from devstack.template import Template, TemplateError

__all__ = ["MOTO_CONFIG", "DrainTimeoutError", "LocalStack", "StackError", "Template", "TemplateError"]
