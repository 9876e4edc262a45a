"""ServiceDesk Plus Cloud, API v3, Projects → Milestones: the actions and the wire format.

SDP wants `Accept: application/vnd.manageengine.sdp.v3+json`, the body as ONE form field
`input_data` holding JSON (`{"milestone": {...}}`; on GET, in the query string), dates written
as `{"value": "<epoch ms>"}`, and answers with `response_status.status_code`: 2000 is success,
4000 is failure with `messages` that say why. See seeds/ in the design documents.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from engine.actions import ActionError, ActionSpec, digits, flag, literal_check
from engine.dates import to_millis
from engine.echo import holds
from engine.models import Request

if TYPE_CHECKING:
    from engine.config import Targets

ACCEPT = "application/vnd.manageengine.sdp.v3+json"
FORM = "application/x-www-form-urlencoded"
DATE_FIELDS = frozenset({"scheduled_start_time", "scheduled_end_time", "actual_start_time", "actual_end_time", "projected_end"})
REFERENCE_FIELDS = frozenset({"owner", "priority", "status"})
WRITABLE_FIELDS = DATE_FIELDS | REFERENCE_FIELDS | {"title", "description", "estimated_hours", "actual_hours"}
# What a milestone has, as the API document lists it (what rules may read).
MILESTONE_FIELDS = WRITABLE_FIELDS | {"id", "index", "project", "created_time", "user", "attachments"}
SUCCESS = 2000
PAGE_SIZE = 100  # SDP's largest row_count
MAX_PAGES = 50


def base_url(targets: Targets) -> str:
    if not targets.sdp.base_url:
        raise ActionError(
            "ServiceDesk Plus is not configured: set HOOKRULES_SDP_URL "
            "(e.g. https://sdpondemand.manageengine.com/app/<portal>) or HOOKRULES_SDP_PORTAL"
        )
    return targets.sdp.base_url


def milestones_url(args: Mapping[str, Any], targets: Targets, *, one: bool = True) -> str:
    url = f"{base_url(targets)}/api/v3/projects/{digits(args, 'project_id')}/milestones"
    return f"{url}/{digits(args, 'milestone_id')}" if one else url


def write_date(name: str, value: Any) -> dict[str, str]:
    """Any date a rule may have (SDP date object, epoch ms, MM-DD-YYYY) as SDP writes it."""
    millis = to_millis(value)
    if millis is None:
        raise ActionError(f"fields.{name} must be a date (epoch milliseconds, MM-DD-YYYY or {{value: ...}}), got {value!r}")
    return {"value": str(millis)}


def write_reference(name: str, value: Any) -> dict[str, Any]:
    """owner, priority, status: SDP wants an object with a name or an id; a bare word is
    taken as the name, so `status: Closed` works."""
    if isinstance(value, Mapping):
        ref = {key: value[key] for key in ("id", "name") if value.get(key) not in (None, "")}
        if not ref:
            raise ActionError(f"fields.{name} needs a name or an id, e.g. {{name: High}}")
        return ref
    if isinstance(value, str) and value.strip():
        return {"name": value.strip()}
    raise ActionError(f"fields.{name} must be a name or {{name: ...}}/{{id: ...}}, got {value!r}")


def field_problems(fields: Mapping[str, Any]) -> list[str]:
    unknown = sorted(set(fields) - WRITABLE_FIELDS, key=str)
    return [f"fields.{name} is not a milestone field SDP lets you write (writable: {', '.join(sorted(WRITABLE_FIELDS))})" for name in unknown]


def milestone_fields(args: Mapping[str, Any]) -> dict[str, Any]:
    fields = args.get("fields")
    if not isinstance(fields, Mapping) or not fields:
        raise ActionError("fields must be a mapping of the milestone fields to set, e.g. {status: {name: Closed}}")
    problems = field_problems(fields)
    if problems:
        raise ActionError("; ".join(problems))
    written: dict[str, Any] = {}
    for name, value in fields.items():
        if name in DATE_FIELDS:
            written[name] = write_date(name, value)
        elif name in REFERENCE_FIELDS:
            written[name] = write_reference(name, value)
        else:
            written[name] = value
    return written


def input_data(fields: dict[str, Any]) -> dict[str, str]:
    return {"input_data": json.dumps({"milestone": fields}, separators=(",", ":"))}


def request(method: str, url: str, **parts: Any) -> Request:
    headers = {"Accept": ACCEPT}
    if parts.get("files"):
        headers["Content-Type"] = "multipart/form-data"  # as shown; the client adds the boundary
    elif parts.get("form") is not None:
        headers["Content-Type"] = FORM
    return Request(method=method, url=url, headers=headers, connector="sdp", **parts)


def build_add(args: dict[str, Any], targets: Targets) -> Request:
    fields = milestone_fields(args)
    if not str(fields.get("title") or "").strip():
        raise ActionError("fields.title is mandatory when adding a milestone")
    return request("POST", milestones_url(args, targets, one=False), form=input_data(fields))


def build_update(args: dict[str, Any], targets: Targets) -> Request:
    return request("PUT", milestones_url(args, targets), form=input_data(milestone_fields(args)))


def build_get(args: dict[str, Any], targets: Targets) -> Request:
    return request("GET", milestones_url(args, targets))


def build_delete(args: dict[str, Any], targets: Targets) -> Request:
    return request("DELETE", milestones_url(args, targets))


def build_timesheet(args: dict[str, Any], targets: Targets) -> Request:
    return request("GET", milestones_url(args, targets) + "/_timesheet")


def build_list(args: dict[str, Any], targets: Targets) -> Request:
    if not isinstance(args.get("list_info") or {}, Mapping):
        raise ActionError("list_info must be a mapping, e.g. {sort_field: title, sort_order: asc}")
    list_info = dict(args.get("list_info") or {})
    list_info.setdefault("row_count", PAGE_SIZE)
    list_info.setdefault("start_index", 1)
    query = {"input_data": json.dumps({"list_info": list_info}, separators=(",", ":"))}
    return request("GET", milestones_url(args, targets, one=False), query=query, paging="sdp")


def build_upload(args: dict[str, Any], targets: Targets) -> Request:
    name = str(args["filename"]).strip()
    if not name or "/" in name or "\\" in name:
        raise ActionError(f"filename must be a plain file name such as report.txt, got {name!r}")
    content_type = str(args.get("content_type") or "text/plain")
    return request(
        "POST",
        milestones_url(args, targets) + "/_uploads",
        form={"addtoattachment": "true" if flag(args, "addtoattachment", True) else "false"},
        files={"filename": [name, str(args["content"]), content_type]},
    )


def read_reply(status: int, body: Any) -> str | None:
    """The failure SDP reports in `response_status`, as text a user can act on; None when the
    reply says success. `body` is the parsed JSON, or None when the reply was not JSON."""
    statuses = body.get("response_status") if isinstance(body, dict) else None
    if statuses is None:
        return None if 200 <= status < 300 else f"HTTP {status} without an SDP response_status"
    statuses = statuses if isinstance(statuses, list) else [statuses]
    failures = [s for s in statuses if isinstance(s, dict) and s.get("status_code") != SUCCESS]
    if not failures:
        return None
    messages = []
    for failure in failures:
        details = [m.get("message") or m.get("status_code") for m in failure.get("messages") or [] if isinstance(m, dict)]
        messages.append(f"SDP {failure.get('status_code')}: " + ("; ".join(str(d) for d in details) or failure.get("status", "failed")))
    return " | ".join(messages)


def already_applied(request: Request, reply_body: Any) -> bool:
    """For an update: does the milestone as read back already carry every field it writes?"""
    milestone = reply_body.get("milestone") if isinstance(reply_body, dict) else None
    if not isinstance(milestone, dict) or not request.form:
        return False
    fields = json.loads(request.form["input_data"])["milestone"]
    return all(holds(value, milestone.get(name)) for name, value in fields.items())


def has_more_rows(body: Any) -> bool:
    return isinstance(body, dict) and bool((body.get("list_info") or {}).get("has_more_rows"))


def next_page(request: Request, page_rows: int) -> Request:
    """The same list request, starting after the rows already read."""
    list_info = json.loads(request.query["input_data"])["list_info"]
    list_info["start_index"] = int(list_info.get("start_index", 1)) + page_rows
    query = {**request.query, "input_data": json.dumps({"list_info": list_info}, separators=(",", ":"))}
    return Request(**{**request.to_dict(), "query": query})


_IDS = frozenset({"project_id", "milestone_id"})
_READS = {"sdp.milestones.get", "sdp.milestones.list", "sdp.milestones.timesheet"}
ACTIONS = tuple(
    ActionSpec(name, summary, build, frozenset(required), frozenset(optional), check=literal_check(build),
               reads=name in _READS, items=("milestone", "milestones") if name == "sdp.milestones.list" else None)
    for name, summary, build, required, optional in (
        ("sdp.milestones.add", "Add a milestone to a project (fields.title is mandatory)", build_add, {"project_id", "fields"}, ()),
        ("sdp.milestones.update", "Edit a milestone's fields", build_update, _IDS | {"fields"}, ()),
        ("sdp.milestones.get", "Read one milestone", build_get, _IDS, ()),
        ("sdp.milestones.list", "List a project's milestones, following every page", build_list, {"project_id"}, {"list_info"}),
        ("sdp.milestones.delete", "Delete a milestone", build_delete, _IDS, ()),
        ("sdp.milestones.timesheet", "Read a milestone's timesheet", build_timesheet, _IDS, ()),
        ("sdp.milestones.upload", "Attach a file written by the rule to a milestone", build_upload,
         _IDS | {"filename", "content"}, {"addtoattachment", "content_type"}),
    )
)
