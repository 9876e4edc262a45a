"""Zoho Projects REST API, Projects: the actions and the wire format.

Zoho takes form parameters (not JSON), dates as `MM-DD-YYYY`, custom fields by their
`field_id` (`UDF_CHAR1`, from `zoho.projects.custom_fields`), and reports failure with the
HTTP status and a body such as `{"error": {"code": 6831, "message": "..."}}`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from engine.actions import ActionError, ActionSpec, choice, digits, literal_check, mapping
from engine.dates import to_millis
from engine.models import Request

if TYPE_CHECKING:
    from engine.config import Targets

FORM = "application/x-www-form-urlencoded"
NAME_MAX = 100
_FIELD_ID = re.compile(r"^UDF_[A-Z]+\d+$")
LIST_STATUSES = ("active", "archived", "template")
STATUSES = ("active", "archived")
SORT_COLUMNS = ("created_time", "last_modified_time")
SORT_ORDERS = ("ascending", "descending")
STRICT = ("1", "2")  # 1 = not strict, 2 = strict


def base_url(targets: Targets) -> str:
    if not targets.zoho.base_url:
        raise ActionError(
            "Zoho Projects is not configured: set HOOKRULES_ZOHO_PORTAL (your portal id) or HOOKRULES_ZOHO_URL "
            "(e.g. https://projectsapi.zoho.com/restapi/portal/<portal id>)"
        )
    return targets.zoho.base_url


def projects_url(targets: Targets, project_id: str | None = None) -> str:
    return f"{base_url(targets)}/projects/" + (f"{project_id}/" if project_id else "")


def zoho_date(name: str, value: Any) -> str:
    """Any date a rule may have, as Zoho wants it: MM-DD-YYYY (in UTC)."""
    millis = to_millis(value)
    if millis is None:
        raise ActionError(f"{name} must be a date (MM-DD-YYYY, epoch milliseconds or {{value: ...}}), got {value!r}")
    try:
        return datetime.fromtimestamp(millis / 1000, tz=timezone.utc).strftime("%m-%d-%Y")
    except (OverflowError, OSError, ValueError):
        raise ActionError(f"{name} is not a date Zoho can hold, got {value!r}") from None


def name_param(args: Mapping[str, Any]) -> str:
    name = str(args.get("name") or "").strip()
    if not name:
        raise ActionError("name is mandatory")
    if len(name) > NAME_MAX:
        raise ActionError(f"name must be at most {NAME_MAX} characters, got {len(name)}")
    return name


def project_params(args: Mapping[str, Any]) -> dict[str, str]:
    """The optional parameters create and update share (template_id: create only)."""
    params: dict[str, str] = {}
    for key in ("description", "template_id"):
        if args.get(key) not in (None, ""):
            params[key] = str(args[key])
    if "template_id" in params:
        params["template_id"] = digits(params, "template_id")
    for key in ("start_date", "end_date"):
        if args.get(key) not in (None, ""):
            params[key] = zoho_date(key, args[key])
    strict = choice({k: str(v) for k, v in args.items() if k == "strict_project"}, "strict_project", STRICT)
    if strict:
        params["strict_project"] = strict
    for field_id, value in mapping(args, "custom_fields").items():
        if not _FIELD_ID.match(str(field_id)):
            raise ActionError(f"custom_fields: {field_id!r} is not a field_id such as UDF_CHAR1 (see zoho.projects.custom_fields)")
        # Date fields (UDF_DATE1, ...) go out as MM-DD-YYYY like the project's own dates.
        is_date = str(field_id).startswith("UDF_DATE")
        params[str(field_id)] = zoho_date(f"custom_fields.{field_id}", value) if is_date else str(value)
    return params


def request(method: str, url: str, form: dict[str, str] | None = None, query: dict[str, str] | None = None) -> Request:
    headers = {"Content-Type": FORM} if form is not None else {}
    return Request(method=method, url=url, headers=headers, form=form, query=query or {}, connector="zoho")


def build_list(args: dict[str, Any], targets: Targets) -> Request:
    query: dict[str, str] = {}
    for key in ("index", "range"):
        if args.get(key) not in (None, ""):
            value = str(args[key]).strip()
            if not value.isdigit() or int(value) < 1:
                raise ActionError(f"{key} must be a whole number from 1, got {value!r}")
            query[key] = value
    for key, allowed in (("status", LIST_STATUSES), ("sort_column", SORT_COLUMNS), ("sort_order", SORT_ORDERS)):
        value = choice(args, key, allowed)
        if value:
            query[key] = value
    if "index" in query or "range" in query:
        return request("GET", projects_url(targets), query=query)  # the page asked for, as asked
    # Every project: a read (a fetch, a scheduled scan) follows the pages (see next_page).
    listing = request("GET", projects_url(targets), query={**query, "index": "1", "range": str(PAGE_ROWS)})
    return Request(**{**listing.to_dict(), "paging": "zoho"})


PAGE_ROWS = 200  # the most one Zoho list page holds


def next_page(listing: Request, page_rows: int) -> Request | None:
    """The same list from the row after this page, or None when this page was the last
    (Zoho says no more with a short page, or 204 and no body)."""
    if page_rows < int(listing.query.get("range", PAGE_ROWS)):
        return None
    query = {**listing.query, "index": str(int(listing.query.get("index", 1)) + page_rows)}
    return Request(**{**listing.to_dict(), "query": query})


def build_get(args: dict[str, Any], targets: Targets) -> Request:
    return request("GET", projects_url(targets, digits(args, "project_id")))


def build_custom_fields(args: dict[str, Any], targets: Targets) -> Request:
    return request("GET", projects_url(targets) + "customfields/")


def build_create(args: dict[str, Any], targets: Targets) -> Request:
    return request("POST", projects_url(targets), form={"name": name_param(args), **project_params(args)})


def build_update(args: dict[str, Any], targets: Targets) -> Request:
    status = choice(args, "status", STATUSES)
    if status is None:
        raise ActionError("status is mandatory: active or archived")
    form = {"name": name_param(args), "status": status, **project_params(args)}
    return request("POST", projects_url(targets, digits(args, "project_id")), form=form)


def build_delete(args: dict[str, Any], targets: Targets) -> Request:
    return request("DELETE", projects_url(targets, digits(args, "project_id")))


def read_reply(status: int, body: Any) -> str | None:
    """Zoho's error as text a user can act on; None on success."""
    if 200 <= status < 300:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return f"Zoho {error.get('code', status)}: {error.get('message', 'failed')}"
    if isinstance(error, str):
        return f"Zoho: {error}" + (f": {body['error_description']}" if body.get("error_description") else "")
    return f"HTTP {status}"


_OPTIONAL = frozenset({"description", "template_id", "start_date", "end_date", "strict_project", "custom_fields"})
ACTIONS = (
    ActionSpec("zoho.projects.list", "List projects (index, range, status, sort_column, sort_order)", build_list,
               optional=frozenset({"index", "range", "status", "sort_column", "sort_order"}), check=literal_check(build_list),
               reads=True, items=("project", "projects")),
    ActionSpec("zoho.projects.get", "Read one project", build_get, frozenset({"project_id"}), check=literal_check(build_get),
               reads=True),
    ActionSpec("zoho.projects.custom_fields", "List the project custom fields and their field_id", build_custom_fields,
               reads=True),
    ActionSpec("zoho.projects.create", "Create a project (name at most 100 characters; dates MM-DD-YYYY)", build_create,
               frozenset({"name"}), _OPTIONAL, check=literal_check(build_create)),
    ActionSpec("zoho.projects.update", "Update a project (name and status are mandatory)", build_update,
               frozenset({"project_id", "name", "status"}), _OPTIONAL - {"template_id"}, check=literal_check(build_update)),
    ActionSpec("zoho.projects.delete", "Delete a project", build_delete, frozenset({"project_id"}), check=literal_check(build_delete)),
)
