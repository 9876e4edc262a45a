"""Zoho Projects, Projects API (the `restapi` of the document), as the sandbox emulates it.

Paths are under `/restapi/portal/{portal_id}/projects/`, with or without the trailing slash.
Writes take form parameters (or query parameters, as Zoho also reads them), never JSON. Every
parameter is checked: unknown ones are refused, custom fields must be a known `field_id`, dates
are `MM-DD-YYYY`. Errors use Zoho's shape `{"error": {"code": ..., "message": ...}}` with its
documented codes: 6401 unauthorised, 6404 not found, 6831 a bad or missing parameter, 6500
internal. Zoho does not document a throttling body; the sandbox's 429 uses code 6403.
A list with nothing in it answers 204 with no body, as Zoho Projects does.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from engine.sandbox_data import ZOHO_ZONE, BodyError, ZohoProject, ZohoStore, parse_multipart, parse_urlencoded

log = logging.getLogger("hookrules.sandbox")

BASE = "/restapi/portal/{portal_id}/projects/"
OPTIONAL = frozenset({"description", "start_date", "end_date", "strict_project"})
LIST_PARAMETERS = frozenset({"index", "range", "status", "sort_column", "sort_order"})
LINKS = {"self": "", "activity": "activities/", "status": "statuses/", "milestone": "milestones/",
         "tasklist": "tasklists/", "task": "tasks/", "bug": "bugs/", "timesheet": "logs/", "event": "events/",
         "document": "documents/", "folder": "folders/", "forum": "forums/", "user": "users/"}
_DATE = re.compile(r"^(\d{2})-(\d{2})-(\d{4})$")

Endpoint = Callable[[Request], Awaitable[Response]]


class Invalid(Exception):
    """A request Zoho would refuse: the HTTP status, Zoho's code, and what is wrong."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def unauthorized() -> JSONResponse:
    return error(401, 6401, "Invalid OAuth access token: send Authorization: Zoho-oauthtoken <a valid token>")


def fault_response(status: int) -> JSONResponse:
    code = {429: 6403, 401: 6401, 404: 6404}.get(status, 6500 if status >= 500 else 6831)
    return error(status, code, f"sandbox fault: HTTP {status}")


def _bad(message: str) -> Invalid:
    return Invalid(400, 6831, message)


def _date(name: str, value: str) -> datetime:
    match = _DATE.match(value)
    try:
        if not match:
            raise ValueError
        month, day, year = (int(group) for group in match.groups())
        return datetime(year, month, day, tzinfo=ZOHO_ZONE)
    except ValueError:
        raise _bad(f"{name} must be a date written MM-DD-YYYY, got {value!r}") from None


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _dates(prefix: str, moment: datetime) -> dict[str, Any]:
    return {prefix: moment.strftime("%m-%d-%Y"), f"{prefix}_format": moment.strftime("%m-%d-%Y %I:%M:%S %p"),
            f"{prefix}_long": _ms(moment)}


def render(project: ZohoProject, base_url: str, portal_id: str) -> dict[str, Any]:
    """A project in the shape of the document's samples."""
    url = f"{base_url}/restapi/portal/{portal_id}/projects/{project.id}/"
    shown: dict[str, Any] = {
        "id": int(project.id), "id_string": project.id, "name": project.name, "description": project.description,
        "status": project.status, "owner_name": project.owner_name, "owner_id": project.owner_id, "role": "admin",
        "IS_BUG_ENABLED": True,
        **_dates("created_date", datetime.fromtimestamp(project.created_long / 1000, ZOHO_ZONE)),
        **_dates("updated_date", datetime.fromtimestamp(project.updated_long / 1000, ZOHO_ZONE)),
    }
    for name in ("start_date", "end_date"):
        if value := getattr(project, name):
            shown.update(_dates(name, _date(name, value)))
    for name in ("task_count", "milestone_count", "bug_count"):
        opened, closed = getattr(project, name)
        shown[name] = {"open": opened, "closed": closed}
    if project.custom_fields:
        shown["custom_fields"] = [{name: value} for name, value in project.custom_fields.items()]
    shown["link"] = {name: {"url": url + tail} for name, tail in LINKS.items()}
    return shown


async def _parameters(request: Request) -> dict[str, str]:
    """The parameters of a write: form fields and query parameters, each given once."""
    body = await request.body()
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "application/json" or body.lstrip().startswith((b"{", b"[")):
        raise _bad("Zoho Projects takes form parameters (application/x-www-form-urlencoded), not a JSON body")
    if media == "multipart/form-data":
        parts = parse_multipart(request.headers["content-type"], body)
        form = {part.name: part.data.decode("utf-8", "replace") for part in parts if part.filename is None}
    elif media == "application/x-www-form-urlencoded" or not body:
        form = parse_urlencoded(body)
    else:
        raise _bad(f"unsupported Content-Type {media!r}: send form parameters")
    return _merge(form, request.query_params.multi_items())


def _merge(form: dict[str, str], query: list[tuple[str, str]]) -> dict[str, str]:
    merged = dict(form)
    for name, value in query:
        if name in merged:
            raise _bad(f"the parameter {name} is given more than once")
        merged[name] = value
    return merged


class ZohoApi:
    """The project endpoints over one store; `store` is replaced on a sandbox reset."""

    def __init__(self, store: ZohoStore) -> None:
        self.store = store

    def endpoints(self) -> list[tuple[str, list[str], Endpoint]]:
        return [
            (BASE, ["GET", "POST"], self._guard(self.collection)),
            (BASE + "customfields/", ["GET"], self._guard(self.custom_fields)),
            (BASE + "{project_id}/", ["GET", "POST", "DELETE"], self._guard(self.item)),
        ]

    def _guard(self, endpoint: Endpoint) -> Endpoint:
        async def guarded(request: Request) -> Response:
            try:
                return await endpoint(request)
            except Invalid as problem:
                return error(problem.status, problem.code, problem.message)
            except BodyError as problem:
                return error(400, 6831, str(problem))

        return guarded

    def _project(self, request: Request) -> ZohoProject:
        project_id = request.path_params["project_id"]
        if project_id not in self.store.projects:
            raise Invalid(404, 6404, f"no project with id {project_id} in this portal")
        return self.store.projects[project_id]

    def _reply(self, request: Request, project: ZohoProject, status: int = 200) -> JSONResponse:
        base = f"{request.url.scheme}://{request.url.netloc}"
        return JSONResponse({"projects": [render(project, base, request.path_params["portal_id"])]}, status_code=status)

    async def collection(self, request: Request) -> Response:
        return await (self.create(request) if request.method == "POST" else self.listing(request))

    async def item(self, request: Request) -> Response:
        project = self._project(request)
        if request.method == "GET":
            return self._reply(request, project)
        if request.method == "POST":
            return await self.update(request, project)
        del self.store.projects[project.id]
        log.info("sandbox: Zoho project %s deleted", project.id)
        return JSONResponse({"response": "Project Deleted Successfully"})

    async def custom_fields(self, request: Request) -> Response:
        return JSONResponse({"project_custom_fields": [dict(f) for f in self.store.custom_fields]})

    async def listing(self, request: Request) -> Response:
        query = _merge({}, request.query_params.multi_items())
        if extra := sorted(set(query) - LIST_PARAMETERS):
            raise _bad(f"unknown parameter {extra[0]} (known: {', '.join(sorted(LIST_PARAMETERS))})")
        index, count = _whole(query, "index", 1, 1, None), _whole(query, "range", 100, 1, 200)
        status = _choice(query, "status", ("active", "archived", "template"))
        column = _choice(query, "sort_column", ("created_time", "last_modified_time"))
        order = _choice(query, "sort_order", ("ascending", "descending"))
        found = [p for p in self.store.projects.values() if p.status == status or (not status and p.status != "template")]
        if column or order:
            attribute = "updated_long" if column == "last_modified_time" else "created_long"
            found.sort(key=lambda p: getattr(p, attribute), reverse=order == "descending")
        page = found[index - 1:index - 1 + count]
        if not page:
            return Response(status_code=204)
        base = f"{request.url.scheme}://{request.url.netloc}"
        return JSONResponse({"projects": [render(p, base, request.path_params["portal_id"]) for p in page]})

    async def create(self, request: Request) -> Response:
        given = await _parameters(request)
        values = self._checked(given, required=("name",), allowed=OPTIONAL | {"template_id"})
        now = int(time.time() * 1000)
        project = ZohoProject(str(next(self.store.ids)), values.pop("name"), "active", now, now)
        if "template_id" in values:
            template = self.store.projects[values.pop("template_id")]
            project.task_count, project.milestone_count = template.task_count, template.milestone_count
        project.custom_fields = {f["field_name"]: f["default_value"] for f in self.store.custom_fields if "default_value" in f}
        self._apply(project, values)
        self.store.projects[project.id] = project
        log.info("sandbox: Zoho project %s created with %s", project.id, json.dumps(given, ensure_ascii=False))
        return self._reply(request, project, status=201)

    async def update(self, request: Request, project: ZohoProject) -> Response:
        given = await _parameters(request)
        values = self._checked(given, required=("name", "status"), allowed=OPTIONAL, current=project)
        if values["status"] not in ("active", "archived"):
            raise _bad(f"status must be active or archived, got {values['status']!r}")
        project.name, project.status = values.pop("name"), values.pop("status")
        self._apply(project, values)
        project.updated_long = int(time.time() * 1000)
        log.info("sandbox: Zoho project %s now %s", project.id, json.dumps(given, ensure_ascii=False))
        return self._reply(request, project)

    def _checked(self, given: dict[str, str], required: tuple[str, ...], allowed: frozenset[str],
                 current: ZohoProject | None = None) -> dict[str, str]:
        """The parameters of a create or update, each checked; the message names the first bad one."""
        fields = {f["field_id"]: f for f in self.store.custom_fields}
        for name in given:
            if name.upper().startswith("UDF_") and name not in fields:
                raise _bad(f"{name} is not a project custom field (known field_id: {', '.join(sorted(fields))})")
            if name not in fields and name not in allowed and name not in required:
                raise _bad(f"unknown parameter {name}")
        for name in required:
            if not given.get(name, "").strip():
                raise _bad(f"{name} is mandatory")
        if len(given["name"]) > 100:
            raise _bad(f"name must be at most 100 characters, got {len(given['name'])}")
        if given.get("strict_project", "1") not in ("1", "2"):
            raise _bad(f"strict_project must be 1 (not strict) or 2 (strict), got {given['strict_project']!r}")
        if "template_id" in given:
            self._check_template(given["template_id"])
        for name, field in fields.items():
            if name in given and field["field_type"] == "date":
                _date(name, given[name])
        _check_period(given, current)
        return dict(given)

    def _check_template(self, template_id: str) -> None:
        template = self.store.projects.get(template_id)
        if template is None or template.status != "template":
            raise _bad(f"template_id {template_id!r} is not the id of a project template")

    def _apply(self, project: ZohoProject, values: dict[str, str]) -> None:
        fields = {f["field_id"]: f["field_name"] for f in self.store.custom_fields}
        values.pop("strict_project", None)  # accepted and checked; Zoho shows it nowhere in a project
        for name, value in values.items():
            if name in fields:
                project.custom_fields[fields[name]] = value
            elif name == "description":
                project.description = value
            else:
                setattr(project, name, value or None)  # an empty date clears it


def _check_period(given: dict[str, str], current: ZohoProject | None) -> None:
    start = given.get("start_date") or (current.start_date if current else None)
    end = given.get("end_date") or (current.end_date if current else None)
    start_day = _date("start_date", start) if start else None
    end_day = _date("end_date", end) if end else None
    if start_day and end_day and end_day < start_day:
        raise _bad(f"end_date {end} is before start_date {start}")


def _whole(query: dict[str, str], name: str, default: int, low: int, high: int | None) -> int:
    text = query.get(name)
    if text is None:
        return default
    if not text.isdigit() or int(text) < low or (high is not None and int(text) > high):
        raise _bad(f"{name} must be a whole number from {low}{f' to {high}' if high else ''}, got {text!r}")
    return int(text)


def _choice(query: dict[str, str], name: str, allowed: tuple[str, ...]) -> str | None:
    value = query.get(name)
    if value is not None and value not in allowed:
        raise _bad(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value
