"""The one Jinja2 environment that every comment template is parsed and rendered with.

Templates come from the policy file, which admins edit, so they run sandboxed; an unknown
variable is an error rather than an empty string, so a typo never reaches a tracker silently.
"""

from __future__ import annotations

from functools import cache

from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment


@cache
def template_environment() -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(
        undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False
    )
