"""What changed in an entity between two looks at it. Pure.

A webhook may carry only part of an entity, so a field the webhook does not mention is taken as
unchanged, not as removed; a field sent as null is cleared. `merge` gives the entity as it now
stands; `diff` names every changed path, nested ones as well as their parents:

    diff({"status": {"name": "Open"}}, {"status": {"name": "Closed"}})
    == {"status": {"from": {"name": "Open"}, "to": {"name": "Closed"}},
        "status.name": {"from": "Open", "to": "Closed"}}

The first time an entity is seen there is nothing to compare with: every field it has counts as
changed from null, so "when actual_end_time gets set" also fires for a milestone first seen
with it already set.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Changes = dict[str, dict[str, Any]]  # "status.name" -> {"from": ..., "to": ...}


def merge(previous: Mapping[str, Any] | None, sent: Mapping[str, Any]) -> dict[str, Any]:
    """The entity after this event: what was known, updated with what was sent."""
    merged = dict(previous or {})
    for key, value in sent.items():
        old = merged.get(key)
        # dict, not Mapping: what is merged is parsed JSON, and the ABC check cost more than
        # the merge on every event.
        if isinstance(value, dict) and isinstance(old, dict):
            merged[key] = merge(old, value)
        else:
            merged[key] = value
    return merged


def diff(previous: Mapping[str, Any] | None, current: Mapping[str, Any], prefix: str = "") -> Changes:
    """Every path whose value differs, for the fields present in `current`."""
    found: Changes = {}
    before = previous or {}
    for key, value in current.items():
        path = f"{prefix}{key}"
        old = before.get(key)
        if old == value:
            continue
        found[path] = {"from": old, "to": value}
        if isinstance(value, dict):
            found.update(diff(old if isinstance(old, dict) else None, value, path + "."))
    return found
