"""Where a sender puts the entity, the event type and the delivery id: a source's `shape`.

- `sdp`: `{"milestone": {...}}` (also as the form field `input_data`); the key is the kind.
- `zoho`: Zoho Projects workflow webhooks: form parameters (or a custom JSON object) named
  after the project's fields (`id`, `name`, `status`, `start_date`, `end_date` as MM-DD-YYYY,
  `owner_name`, custom fields...); the kind is `project`. A `{"project": {...}}` or
  `{"projects": [{...}]}` JSON body works too.
- `json`: any JSON, read through the source's `map` of paths: `body.<path>`,
  `headers.<name>`, `query.<name>`, or a literal for `kind` and `type`.

Ids stay text (Zoho's exceed what JSON numbers hold exactly elsewhere), and MM-DD-YYYY dates
gain a `<field>_long` sibling in epoch milliseconds, as Zoho's own API gives them, so rules
compare them as times.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from engine.auth import Rejected
from engine.dates import to_millis

_DATE_TEXT = re.compile(r"^(\d{2}-\d{2}-\d{4}|\d{4}-\d{2}-\d{2})$")  # MM-DD-YYYY as the API sends, or YYYY-MM-DD
PREFIXES = ("body", "headers", "query")


def resolve(path: str, parts: Mapping[str, Any]) -> Any:
    """`body.project.id` -> parts["body"]["project"]["id"]; None where it leads nowhere."""
    head, _, rest = path.partition(".")
    value: Any = parts.get(head)
    for step in rest.split(".") if rest else []:
        if isinstance(value, Mapping):
            value = value.get(step if head != "headers" else step.lower())
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            return None
    return value


def value_of(spec: str, parts: Mapping[str, Any]) -> Any:
    """A path when it starts with body., headers. or query.; otherwise the text itself."""
    return resolve(spec, parts) if spec.split(".", 1)[0] in PREFIXES and "." in spec else spec


def with_long_dates(data: dict[str, Any]) -> dict[str, Any]:
    """Each MM-DD-YYYY (or YYYY-MM-DD) field gets `<field>_long` (epoch ms, midnight UTC)
    unless it has one."""
    extra = {
        f"{key}_long": to_millis(value)
        for key, value in data.items()
        if isinstance(value, str) and _DATE_TEXT.match(value) and f"{key}_long" not in data and to_millis(value) is not None
    }
    return {**data, **extra}


def zoho_entity(payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    data: Any = payload
    if isinstance(payload.get("project"), dict):
        data = payload["project"]
    elif isinstance(payload.get("projects"), list) and payload["projects"] and isinstance(payload["projects"][0], dict):
        data = payload["projects"][0]
    project_id = data.get("id") or data.get("id_string") or data.get("project_id")
    if project_id in (None, ""):
        raise Rejected(400, "no project id: a Zoho Projects webhook must send the parameter id (or project_id)")
    return "project", with_long_dates({**data, "id": str(project_id)})


def mapped_entity(mapping: Mapping[str, str], parts: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    kind = value_of(mapping.get("kind", "item"), parts)
    fields = resolve(mapping.get("fields", "body"), parts)
    entity_id = resolve(mapping["id"], parts)
    if not isinstance(kind, str) or not kind:
        raise Rejected(400, f"the source's map.kind ({mapping.get('kind')}) gives no kind for this request")
    if not isinstance(fields, dict):
        raise Rejected(400, f"the source's map.fields ({mapping.get('fields', 'body')}) is not an object in this request")
    if entity_id in (None, "") or isinstance(entity_id, (dict, list, bool)):
        raise Rejected(400, f"the source's map.id ({mapping['id']}) finds no id in this request")
    return kind, with_long_dates({**fields, "id": str(entity_id)})
