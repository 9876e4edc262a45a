"""What every action has in common: its specification, argument checks and errors.

An action is checked twice. When the rule loads, `ActionSpec.problems` looks at the arguments
as written (a missing or unknown argument, a literal value that can never work); after the
templates are rendered against an event, `build` turns them into a `Request` or raises
ActionError saying which argument is wrong and why.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.models import Request

if TYPE_CHECKING:
    from engine.config import Targets

_DIGITS = re.compile(r"^\d{1,20}$")


class ActionError(Exception):
    """The rendered arguments cannot make a request; the message says which argument and why."""


@dataclass(frozen=True)
class ActionSpec:
    name: str
    summary: str
    build: Callable[[dict[str, Any], Targets], Request]
    required: frozenset[str] = frozenset()
    optional: frozenset[str] = frozenset()
    # Load-time checks of the arguments as written; templates are still unrendered there, so
    # a check looks only at plain values (see `is_literal`).
    check: Callable[[dict[str, Any]], list[str]] | None = field(default=None, repr=False)
    reads: bool = False  # only reads: allowed in a rule's `fetch`
    # For a list operation: the kind of its items and the key of the reply that holds them,
    # so a scheduled rule can scan it ("milestone", "milestones").
    items: tuple[str, str] | None = None

    def problems(self, args: dict[str, Any]) -> list[str]:
        found = [f"missing argument '{name}'" for name in sorted(self.required - set(args))]
        allowed = self.required | self.optional
        found += [
            f"unknown argument '{name}' (allowed: {', '.join(sorted(allowed)) or 'none'})"
            for name in sorted(set(args) - allowed, key=str)
        ]
        if not found and self.check is not None:
            found += self.check(args)
        return found


def is_literal(value: Any) -> bool:
    """A value written without a template, so it can be judged when the rule loads."""
    if isinstance(value, str):
        return "{{" not in value and "{%" not in value
    if isinstance(value, Mapping):
        return all(is_literal(item) for item in value.values())
    if isinstance(value, list):
        return all(is_literal(item) for item in value)
    return True


def digits(args: Mapping[str, Any], name: str) -> str:
    """An id that goes into a URL path: digits only, so a value from an event cannot steer
    the path elsewhere."""
    value = str(args[name]).strip()
    if not _DIGITS.match(value):
        raise ActionError(f"{name} must be the digits of an id (at most 20), got {value!r}")
    return value


def mapping(args: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = args.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ActionError(f"{name} must be a mapping of names to values, got {type(value).__name__}")
    return dict(value)


def string_map(args: Mapping[str, Any], name: str) -> dict[str, str]:
    return {str(key): str(item) for key, item in mapping(args, name).items()}


def choice(args: Mapping[str, Any], name: str, allowed: tuple[str, ...]) -> str | None:
    if args.get(name) in (None, ""):
        return None
    value = str(args[name]).strip()
    if value not in allowed:
        raise ActionError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def flag(args: Mapping[str, Any], name: str, default: bool) -> bool:
    value = args.get(name, default)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1"):
        return True
    if text in ("false", "no", "0"):
        return False
    raise ActionError(f"{name} must be true or false, got {value!r}")


# What a templated argument stands for in a load-time check: a value that passes, so the
# check judges only what was written plainly.
_STAND_INS = {"status": "active", "sort_column": "created_time", "sort_order": "ascending", "method": "GET", "url": "https://x.invalid/"}


def _stand_in(value: Any, key: str) -> Any:
    if isinstance(value, Mapping):
        return {k: _stand_in(item, str(k)) for k, item in value.items()}
    if isinstance(value, list):
        return [_stand_in(item, key) for item in value]
    return value if is_literal(value) else _STAND_INS.get(key, "1")


def literal_check(build: Callable[[dict[str, Any], Targets], Request]) -> Callable[[dict[str, Any]], list[str]]:
    """A load-time check that builds the request from the arguments as written, with every
    templated value replaced by a stand-in: so `status: actve`, a 101-character name or an
    unknown milestone field is reported when the rule loads, not when an event arrives."""

    def check(args: dict[str, Any]) -> list[str]:
        from engine.config import Connector, Targets

        targets = Targets(sdp=Connector("sdp", base_url="https://sdp.invalid"), zoho=Connector("zoho", base_url="https://zoho.invalid"))
        try:
            build(_stand_in(args, ""), targets)
        except ActionError as exc:
            return [str(exc)]
        return []

    return check
