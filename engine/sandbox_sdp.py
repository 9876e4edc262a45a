"""ServiceDesk Plus Cloud, Projects -> Milestones (API v3), as the sandbox emulates it.

Paths are under `/app/{portal}/api/v3/projects/{project_id}/milestones`. The checks follow the
API document: the v3 Accept header, the body as one form field `input_data` holding
`{"milestone": {...}}`, dates written as `{"value": "<epoch ms>"}` only, references (`owner`,
`priority`, `status`) as objects with an `id` or a `name` (the id wins when both are given, as
SDP documents). Failures use SDP's shape and its documented inner codes: 4001 a bad value or an
unknown field, 4007 not found, 4012 a mandatory field missing, 4014 a read-only field, 4015 rate
limit, 4016 a start after its end.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from engine.sandbox_data import BodyError, SdpStore, parse_multipart, parse_urlencoded, sdp_date

log = logging.getLogger("hookrules.sandbox")

# Written out here rather than imported from the connector: the emulator states what the API
# wants independently, so a typo in the client cannot agree with itself.
ACCEPT = "application/vnd.manageengine.sdp.v3+json"
BASE = "/app/{portal}/api/v3/projects/{project_id}/milestones"
DATE_FIELDS = frozenset({"scheduled_start_time", "scheduled_end_time", "actual_start_time", "actual_end_time",
                         "projected_end"})
REFERENCE_FIELDS = frozenset({"owner", "priority", "status"})
HOURS_FIELDS = frozenset({"estimated_hours", "actual_hours"})
WRITABLE = DATE_FIELDS | REFERENCE_FIELDS | HOURS_FIELDS | {"title", "description"}
READ_ONLY = frozenset({"id", "project", "user", "created_time", "index", "attachments"})
SORTABLE = frozenset({"index", "title", "created_time"}) | DATE_FIELDS
LIST_INFO_KEYS = frozenset({"row_count", "start_index", "sort_field", "sort_order", "get_total_count"})
MAX_ATTACHMENTS = 50
_DIGITS = re.compile(r"^\d{1,18}$")

Endpoint = Callable[[Request], Awaitable[Response]]


class Invalid(Exception):
    """A request SDP would refuse: the HTTP status, SDP's inner code, and what is wrong."""

    def __init__(self, status: int, code: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


def failure(status: int, code: int, message: str, field: str | None = None) -> JSONResponse:
    detail: dict[str, Any] = {"status_code": code, "message": message, "type": "failed"}
    if field:
        detail["field"] = field
    body = {"response_status": {"status_code": 4000, "status": "failed", "messages": [detail]}}
    return JSONResponse(body, status_code=status)


def unauthorized() -> JSONResponse:
    return failure(401, 4002, "UNAUTHORISED: the Zoho-oauthtoken is missing, unknown or expired")


def fault_response(status: int) -> JSONResponse:
    if status == 429:
        return failure(429, 4015, "API rate limit reached; try again later")
    return failure(status, 4004 if status >= 500 else 4000, f"sandbox fault: HTTP {status}")


def _success(body: dict[str, Any], status: int = 200, as_list: bool = False) -> JSONResponse:
    state = {"status_code": 2000, "status": "success"}
    return JSONResponse({**body, "response_status": [state] if as_list else state}, status_code=status)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _check_accept(request: Request) -> None:
    offered = [item.split(";")[0].strip().lower() for item in request.headers.get("accept", "").split(",")]
    if ACCEPT not in offered:
        raise Invalid(400, 4000, f"the Accept header must be {ACCEPT}")


async def _input_data(request: Request) -> dict[str, Any]:
    """The `milestone` object of a POST or PUT, after checking the envelope around it."""
    if _media_type(request) != "application/x-www-form-urlencoded":
        raise Invalid(400, 4000, "the body must be application/x-www-form-urlencoded with the field input_data")
    form = parse_urlencoded(await request.body())
    if extra := sorted(set(form) - {"input_data"}):
        raise Invalid(400, 4000, f"unexpected form field '{extra[0]}': send only input_data", extra[0])
    if "input_data" not in form:
        raise Invalid(400, 4012, "input_data is mandatory: input_data={\"milestone\": {...}}", "input_data")
    data = _json_object(form["input_data"])
    if set(data) != {"milestone"} or not isinstance(data["milestone"], dict):
        raise Invalid(400, 4000, "input_data must be exactly {\"milestone\": {...}}", "input_data")
    return data["milestone"]


def _json_object(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise Invalid(400, 4000, f"input_data is not valid JSON: {exc}", "input_data") from None
    if not isinstance(data, dict):
        raise Invalid(400, 4000, "input_data must be a JSON object", "input_data")
    return data


class SdpApi:
    """The milestone endpoints over one store; `store` is replaced on a sandbox reset."""

    def __init__(self, store: SdpStore) -> None:
        self.store = store

    def endpoints(self) -> list[tuple[str, list[str], Endpoint]]:
        return [
            (BASE, ["GET", "POST"], self._guard(self.collection)),
            (BASE + "/{milestone_id}", ["GET", "PUT", "DELETE"], self._guard(self.item)),
            (BASE + "/{milestone_id}/_timesheet", ["GET"], self._guard(self.timesheet)),
            (BASE + "/{milestone_id}/_uploads", ["POST"], self._guard(self.upload)),
        ]

    def _guard(self, endpoint: Endpoint) -> Endpoint:
        async def guarded(request: Request) -> Response:
            try:
                _check_accept(request)
                return await endpoint(request)
            except Invalid as problem:
                return failure(problem.status, problem.code, problem.message, problem.field)
            except BodyError as problem:
                return failure(400, 4000, str(problem))

        return guarded

    # ---- lookups ----

    def _milestones(self, request: Request) -> dict[str, dict[str, Any]]:
        project_id = request.path_params["project_id"]
        if project_id not in self.store.milestones:
            raise Invalid(404, 4007, f"no project with id {project_id}")
        return self.store.milestones[project_id]

    def _milestone(self, request: Request) -> dict[str, Any]:
        milestone_id = request.path_params["milestone_id"]
        milestones = self._milestones(request)
        if milestone_id not in milestones:
            raise Invalid(404, 4007, f"no milestone with id {milestone_id} in project {request.path_params['project_id']}")
        return milestones[milestone_id]

    # ---- endpoints ----

    async def collection(self, request: Request) -> Response:
        return await (self.add(request) if request.method == "POST" else self.listing(request))

    async def item(self, request: Request) -> Response:
        if request.method == "PUT":
            return await self.edit(request)
        milestone = self._milestone(request)
        if request.method == "GET":
            return _success({"milestone": render(milestone)})
        del self._milestones(request)[milestone["id"]]
        self.store.timesheets.pop(milestone["id"], None)
        log.info("sandbox: milestone %s of project %s deleted", milestone["id"], milestone["project"]["id"])
        return _success({})

    async def add(self, request: Request) -> Response:
        milestones = self._milestones(request)
        sent = await _input_data(request)
        changes = self._validate(sent, creating=True)
        project_id = request.path_params["project_id"]
        index = max((int(m["index"]) for m in milestones.values()), default=0) + 1
        milestone = self._new_milestone(project_id, index)
        milestone.update(changes)
        _check_times(milestone)
        milestones[milestone["id"]] = milestone
        log.info("sandbox: milestone %s of project %s added as %s", milestone["id"], project_id, json.dumps(sent))
        return _success({"milestone": render(milestone)}, status=201)

    async def edit(self, request: Request) -> Response:
        milestone = self._milestone(request)
        sent = await _input_data(request)
        changed = {**milestone, **self._validate(sent, creating=False)}
        _check_times(changed)
        milestone.update(changed)
        log.info("sandbox: milestone %s of project %s now %s", milestone["id"], milestone["project"]["id"], json.dumps(sent))
        return _success({"milestone": render(milestone)})

    async def listing(self, request: Request) -> Response:
        milestones = list(self._milestones(request).values())
        info = _list_info(request.query_params.get("input_data"))
        field, descending = info.get("sort_field", "index"), info.get("sort_order") == "desc"
        milestones.sort(key=lambda m: _sort_key(m, field), reverse=descending)
        start, rows = info.get("start_index", 1), info.get("row_count", 10)
        page = milestones[start - 1:start - 1 + rows]
        reply_info: dict[str, Any] = {"has_more_rows": start - 1 + rows < len(milestones), "row_count": len(page),
                                      "start_index": start}
        reply_info.update({k: info[k] for k in ("sort_field", "sort_order") if k in info})
        if info.get("get_total_count"):
            reply_info["total_count"] = len(milestones)
        return _success({"list_info": reply_info, "milestones": [render(m) for m in page]}, as_list=True)

    async def timesheet(self, request: Request) -> Response:
        milestone = self._milestone(request)
        return _success({"timesheet": copy.deepcopy(self.store.timesheets.get(milestone["id"], []))})

    async def upload(self, request: Request) -> Response:
        milestone = self._milestone(request)
        if _media_type(request) != "multipart/form-data":
            raise Invalid(400, 4000, "an upload must be multipart/form-data with a file part named filename")
        parts = {}
        for part in parse_multipart(request.headers["content-type"], await request.body()):
            if part.name not in ("filename", "addtoattachment") or part.name in parts:
                raise Invalid(400, 4001, f"unexpected or repeated part '{part.name}'", part.name)
            parts[part.name] = part
        upload = parts.get("filename")
        if upload is None or upload.filename is None:
            raise Invalid(400, 4012, "filename is mandatory: a file part named filename", "filename")
        attach = _boolean(parts["addtoattachment"].data) if "addtoattachment" in parts else False
        attachments = milestone.setdefault("attachments", [])
        if attach and len(attachments) >= MAX_ATTACHMENTS:
            raise Invalid(400, 4001, f"a milestone has at most {MAX_ATTACHMENTS} attachments", "attachments")
        file_id = str(next(self.store.file_ids))
        described = {"content_type": upload.content_type, "size": str(len(upload.data)), "file_id": file_id,
                     "name": upload.filename}
        if attach:
            attachments.append(dict(described))
        url = f"/projects/{milestone['project']['id']}/milestones/{milestone['id']}/_uploads/{file_id}"
        log.info("sandbox: milestone %s got file %s (%s bytes, attached: %s)", milestone["id"], file_id,
                 described["size"], attach)
        files = [{**described, "content_url": url, "id": str(next(self.store.ids))}]
        return _success({"files": files}, as_list=True)

    # ---- validation ----

    def _new_milestone(self, project_id: str, index: int) -> dict[str, Any]:
        milestone: dict[str, Any] = {name: None for name in WRITABLE}
        milestone.update(
            id=str(next(self.store.ids)),
            project=copy.deepcopy(self.store.projects[project_id]),
            index=str(index),
            created_time=sdp_date(int(time.time() * 1000)),
            user=copy.deepcopy(self.store.catalog["owner"][1]),  # the token's user
        )
        return milestone

    def _validate(self, sent: dict[str, Any], creating: bool) -> dict[str, Any]:
        changes = {}
        for name, value in sent.items():
            if name in READ_ONLY:
                raise Invalid(400, 4014, f"'{name}' is read-only and cannot be set", name)
            if name not in WRITABLE:
                raise Invalid(400, 4001, f"'{name}' is not a milestone field", name)
            changes[name] = self._value(name, value)
        if creating and not changes.get("title"):
            raise Invalid(400, 4012, "'title' is mandatory", "title")
        return changes

    def _value(self, name: str, value: Any) -> Any:
        if value is None:
            if name == "title":
                raise Invalid(400, 4012, "'title' is mandatory and cannot be null", name)
            return None
        if name in DATE_FIELDS:
            return _date(name, value)
        if name in REFERENCE_FIELDS:
            return self._reference(name, value)
        if name in HOURS_FIELDS:
            if isinstance(value, bool) or not (isinstance(value, int) and value >= 0 or _is_digits(value)):
                raise Invalid(400, 4001, f"'{name}' must be a whole number of hours, got {value!r}", name)
            return str(value)
        if not isinstance(value, str):
            raise Invalid(400, 4001, f"'{name}' must be text, got {value!r}", name)
        if name == "title" and (not value.strip() or "\n" in value or "\r" in value):
            raise Invalid(400, 4001, "'title' must be plain text on one line, not empty", name)
        return value

    def _reference(self, name: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict) or not ({"id", "name"} & set(value)):
            raise Invalid(400, 4001, f"'{name}' must be an object with an id or a name, e.g. {{\"name\": ...}}", name)
        key = "id" if "id" in value else "name"
        if not isinstance(value[key], str) or (key == "id" and not _is_digits(value[key])):
            raise Invalid(400, 4001, f"'{name}.{key}' must be a string{' of digits' if key == 'id' else ''}", name)
        for entry in self.store.catalog[name]:
            if entry[key] == value[key]:
                return copy.deepcopy(entry)
        raise Invalid(400, 4001, f"no {name} with {key} {value[key]!r} exists or is in use", name)


def render(milestone: dict[str, Any]) -> dict[str, Any]:
    """A milestone as SDP shows it; `attachments` only when there are some. A shallow copy: it
    is encoded into the reply at once, and nothing changes it on the way."""
    shown = dict(milestone)
    if not shown.get("attachments"):
        shown.pop("attachments", None)
    return shown


def _is_digits(value: Any) -> bool:
    return isinstance(value, str) and bool(_DIGITS.match(value))


def _boolean(raw: bytes) -> bool:
    text = raw.decode("utf-8", "replace").strip().lower()
    if text not in ("true", "false"):
        raise Invalid(400, 4001, f"addtoattachment must be true or false, got {text!r}", "addtoattachment")
    return text == "true"


def _date(name: str, value: Any) -> dict[str, str]:
    # SDP writes send only `value`; an echoed display_value means the object was copied from
    # a read, and the time a person reads is not what the API takes.
    if not isinstance(value, dict) or set(value) != {"value"} or not _is_digits(value["value"]):
        raise Invalid(400, 4001, f"'{name}' must be written as {{\"value\": \"<epoch milliseconds as digits>\"}}, "
                                 f"got {json.dumps(value)}", name)
    return sdp_date(value["value"])


def _check_times(milestone: dict[str, Any]) -> None:
    for start, end in (("scheduled_start_time", "scheduled_end_time"), ("actual_start_time", "actual_end_time")):
        if milestone.get(start) and milestone.get(end) and int(milestone[start]["value"]) > int(milestone[end]["value"]):
            raise Invalid(400, 4016, f"'{end}' is before '{start}'", end)


def _sort_key(milestone: dict[str, Any], field: str) -> tuple[int, Any]:
    value = milestone.get(field)
    if isinstance(value, dict):
        value = int(value["value"])
    elif field == "index":
        value = int(value)
    return (value is None, value if value is not None else 0)


def _list_info(raw: str | None) -> dict[str, Any]:
    """The list_info of a list request's input_data, checked; {} when none was sent."""
    data = _json_object(raw) if raw is not None else {}
    if extra := sorted(set(data) - {"list_info"}):
        raise Invalid(400, 4001, f"'{extra[0]}' is not supported in input_data of a milestone list", extra[0])
    info = data.get("list_info", {})
    if not isinstance(info, dict):
        raise Invalid(400, 4001, "list_info must be an object", "list_info")
    if extra := sorted(set(info) - LIST_INFO_KEYS):
        known = ", ".join(sorted(LIST_INFO_KEYS))
        raise Invalid(400, 4001, f"list_info.{extra[0]} is not supported (known: {known})", extra[0])
    for name, low, high in (("row_count", 1, 100), ("start_index", 1, None)):
        value = info.get(name, low)
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (high and value > high):
            raise Invalid(400, 4001, f"list_info.{name} must be a whole number from {low}{f' to {high}' if high else ''}", name)
    if info.get("sort_field", "index") not in SORTABLE:
        raise Invalid(400, 4001, f"list_info.sort_field must be one of {', '.join(sorted(SORTABLE))}", "sort_field")
    if info.get("sort_order", "asc") not in ("asc", "desc"):
        raise Invalid(400, 4001, "list_info.sort_order must be asc or desc", "sort_order")
    if not isinstance(info.get("get_total_count", False), bool):
        raise Invalid(400, 4001, "list_info.get_total_count must be true or false", "get_total_count")
    return info
