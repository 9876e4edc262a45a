"""Our own writes coming back. Pure.

When an action changes an entity, the system usually sends a webhook about that change: an
echo. Rules that fire on it could write again, and again. So after a write the worker remembers
which fields it set (for a few minutes), and the next event of that entity whose changes are
just that write is marked an echo: rules skip it unless they opt in (`on: {echoes: true}`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from engine.models import Request


def written(request: Request) -> tuple[str, str, dict[str, Any]] | None:
    """(kind, id, fields set) for a connector's update, or None for anything else."""
    path = request.url.rstrip("/").split("/")
    if request.connector == "sdp" and request.method == "PUT" and len(path) > 1 and path[-2] == "milestones" and request.form:
        return "milestone", path[-1], json.loads(request.form["input_data"])["milestone"]
    if request.connector == "zoho" and request.method == "POST" and len(path) > 1 and path[-2] == "projects" and request.form:
        return "project", path[-1], dict(request.form)
    return None


def holds(value: Any, current: Any) -> bool:
    """Does the entity's current value carry what was written? A reference is matched by its
    id (or name), a date by its value; anything else as text, since forms write text."""
    if isinstance(value, Mapping):
        if not isinstance(current, Mapping):
            return False
        if "value" in value:
            return str(current.get("value")) == str(value["value"])
        return all(str(current.get(k)) == str(v) for k, v in value.items() if k in ("id", "name"))
    return current == value or str(current) == str(value)


def is_echo(fields: Mapping[str, Any], current: Mapping[str, Any], changes: Mapping[str, Any]) -> bool:
    """The event shows our write (every field we set holds what we set) and brings it as news
    (at least one of those fields changed in this event)."""
    return all(holds(value, current.get(name)) for name, value in fields.items()) and any(name in changes for name in fields)
