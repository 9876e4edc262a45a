"""The sandbox's seed data and stores, and the request-body parsing both emulated APIs share.

Everything here is built fresh by a function call, never kept at module level, so that each
`create_sandbox` (and each `/_sandbox/reset`) starts from the same known state:

ServiceDesk Plus (any portal name)
  project 2258743870606263 (PJT-131), 30 milestones: 2007594064055157 is the milestone of
    samples/milestone-completed.json (index 1, status Open, actual_end_time set, with a
    timesheet); 2007594064055158-...186 are "Phase 2".."Phase 30" (indexes 2-30; 2-9 Closed)
  project 1685000622838068 (PJT-132), one milestone 1833218547112732
  owner/user: Lincoln 1883741825469733, Lincoln 2387253526439501 (creator), Charles 1256498736565975
  priority: Low, Normal, High 1968809555410719, Medium 1968809555410720
  status: Open 2058840951375596, In Progress, On Hold, Closed 2058840951375599
Zoho Projects (any portal id)
  170876000003152069 and 170876000000765009 (active), 170876000001849005 (archived),
  170876000002000001 (a template); custom fields UDF_CHAR1 "Supported browser" (default
  Chrome) and UDF_DATE1 "Due Date"
"""

from __future__ import annotations

import copy
import email.parser
import email.policy
import itertools
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl

# SDP's samples show 1512974940000 as "Dec 11, 2017 12:19 PM": the portal user is on IST.
SDP_ZONE = timezone(timedelta(hours=5, minutes=30))
SDP_PROJECT = "2258743870606263"
SDP_OTHER_PROJECT = "1685000622838068"
SDP_MILESTONE = "2007594064055157"
SDP_MILESTONES_IN_PROJECT = 30

# The first Zoho sample shows 1455621643662 as "02-16-2016 03:20:43 AM": a portal on UTC-8.
ZOHO_ZONE = timezone(timedelta(hours=-8))
ZOHO_PROJECTS = ("170876000003152069", "170876000000765009", "170876000001849005", "170876000002000001")


class BodyError(ValueError):
    """A request body is not what the API reads; the message says what is wrong."""


# ---- request bodies ------------------------------------------------------------------------


def parse_urlencoded(raw: bytes) -> dict[str, str]:
    """Form fields, each at most once: a field sent twice is ambiguous, so it is refused."""
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(raw))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BodyError(f"the body is not a valid form: {exc}") from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:
            raise BodyError(f"the form field '{name}' is given more than once")
        fields[name] = value
    return fields


@dataclass(frozen=True)
class Part:
    name: str
    filename: str | None
    content_type: str
    data: bytes


def parse_multipart(content_type: str, raw: bytes) -> list[Part]:
    """The parts of a multipart/form-data body. The stdlib's MIME parser reads it, since the
    project does not depend on python-multipart."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
    if not message.is_multipart() or message.defects:
        raise BodyError("the body is not valid multipart/form-data")
    parts = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or not name:
            raise BodyError("a multipart part has no name in its Content-Disposition")
        payload = part.get_payload(decode=True)
        parts.append(Part(name, part.get_filename(), part.get_content_type(), payload or b""))
    return parts


# ---- ServiceDesk Plus ----------------------------------------------------------------------


def sdp_display(ms: str) -> str:
    moment = datetime.fromtimestamp(int(ms) / 1000, SDP_ZONE)
    return moment.strftime("%b %d, %Y %I:%M %p")


def sdp_date(ms: str | int) -> dict[str, str]:
    return {"display_value": sdp_display(str(ms)), "value": str(ms)}


def _lincoln(user_id: str) -> dict[str, Any]:
    return {
        "email_id": "lincoln@zmail.com",
        "is_technician": False,
        "sms_mail": "linc123@xys_sms.co",
        "phone": "test-phone",
        "name": "Lincoln",
        "mobile": "test-mobile",
        "id": user_id,
        "photo_url": "test-photo_url",
        "is_vip_user": False,
    }


def sdp_catalog() -> dict[str, list[dict[str, Any]]]:
    """What `owner`, `priority` and `status` may name, by id or by name; ids from the samples."""
    charles = {"email_id": "charles@zmail.com", "is_technician": True, "name": "Charles", "id": "1256498736565975"}
    priorities = [("Low", "1968809555410717"), ("Normal", "1968809555410718"), ("High", "1968809555410719"),
                  ("Medium", "1968809555410720")]
    statuses = [("Open", "2058840951375596"), ("In Progress", "2058840951375597"), ("On Hold", "2058840951375598"),
                ("Closed", "2058840951375599")]
    return {
        "owner": [_lincoln("1883741825469733"), _lincoln("2387253526439501"), charles],
        "priority": [{"color": "#ffffff", "name": name, "id": ref} for name, ref in priorities],
        "status": [{"internal_name": name, "color": "#ffffff", "name": name, "id": ref} for name, ref in statuses],
    }


def _sdp_project(project_id: str, number: int) -> dict[str, Any]:
    return {
        "project_code": "test-project_code",
        "id": project_id,
        "display_id": {"display_value": f"PJT-{number}", "value": str(number)},
        "title": "test-title",
    }


def _sample_milestone(catalog: dict[str, list[dict[str, Any]]], project: dict[str, Any]) -> dict[str, Any]:
    """The milestone of samples/milestone-completed.json, field for field."""
    return {
        "owner": copy.deepcopy(catalog["owner"][0]),
        "created_time": {"display_value": "Nov 10, 2016 11:44 AM", "value": "1478758440000"},
        "index": "1",
        "description": "test-description",
        "project": copy.deepcopy(project),
        "title": "test-title",
        "priority": copy.deepcopy(catalog["priority"][2]),
        "scheduled_end_time": sdp_date("1512974940000"),
        "actual_hours": "1605",
        "actual_end_time": sdp_date("1512974940000"),
        "estimated_hours": "2204",
        "id": SDP_MILESTONE,
        "actual_start_time": sdp_date("1421988300000"),
        "projected_end": sdp_date("1512974940000"),
        "user": copy.deepcopy(catalog["owner"][1]),
        "scheduled_start_time": sdp_date("1421988300000"),
        "status": copy.deepcopy(catalog["status"][0]),
    }


def _made_milestone(catalog: dict[str, list[dict[str, Any]]], project: dict[str, Any], index: int) -> dict[str, Any]:
    """A plausible milestone: one a week from Jan 2018, the early ones closed."""
    week = 7 * 24 * 3600 * 1000
    start = 1514764800000 + (index - 2) * week
    closed = index < 10
    return {
        "owner": copy.deepcopy(catalog["owner"][index % 3]),
        "created_time": sdp_date(1478758440000 + index * 60000),
        "index": str(index),
        "description": f"Phase {index} of the roll-out",
        "project": copy.deepcopy(project),
        "title": f"Phase {index}",
        "priority": copy.deepcopy(catalog["priority"][index % 4]),
        "scheduled_start_time": sdp_date(start),
        "scheduled_end_time": sdp_date(start + week),
        "actual_start_time": sdp_date(start) if closed else None,
        "actual_end_time": sdp_date(start + week) if closed else None,
        "projected_end": sdp_date(start + week + (index % 3) * week),
        "estimated_hours": str(10 * index),
        "actual_hours": str(9 * index) if closed else "0",
        "id": str(int(SDP_MILESTONE) + index - 1),
        "user": copy.deepcopy(catalog["owner"][1]),
        "status": copy.deepcopy(catalog["status"][3 if closed else 0]),
    }


def _sample_timesheet() -> list[dict[str, Any]]:
    return [{
        "owner": {"photo-url": "test-photo-url", "name": "Charles", "id": "1256498736565975", "email": "charles@zmail.com"},
        "total_tech_charge": "10.00",
        "total_time_spent": {"hours": "02", "minutes": "20"},
        "total_amount_spent": "18.23",
        "total_other_charge": "3.00",
    }]


@dataclass
class SdpStore:
    catalog: dict[str, list[dict[str, Any]]]
    projects: dict[str, dict[str, Any]]  # project id -> the project reference milestones carry
    milestones: dict[str, dict[str, dict[str, Any]]]  # project id -> milestone id -> milestone
    timesheets: dict[str, list[dict[str, Any]]]  # milestone id -> timesheet rows
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(2007594064100001))
    file_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(4001))


def seed_sdp() -> SdpStore:
    catalog = sdp_catalog()
    projects = {SDP_PROJECT: _sdp_project(SDP_PROJECT, 131), SDP_OTHER_PROJECT: _sdp_project(SDP_OTHER_PROJECT, 132)}
    main = [_sample_milestone(catalog, projects[SDP_PROJECT])]
    main += [_made_milestone(catalog, projects[SDP_PROJECT], i) for i in range(2, SDP_MILESTONES_IN_PROJECT + 1)]
    other = _made_milestone(catalog, projects[SDP_OTHER_PROJECT], 1)
    other["id"] = "1833218547112732"  # the id in the document's list sample
    milestones = {SDP_PROJECT: {m["id"]: m for m in main}, SDP_OTHER_PROJECT: {other["id"]: other}}
    return SdpStore(catalog, projects, milestones, {SDP_MILESTONE: _sample_timesheet()})


# ---- Zoho Projects -------------------------------------------------------------------------


@dataclass
class ZohoProject:
    id: str
    name: str
    status: str  # active | archived | template
    created_long: int
    updated_long: int
    description: str = ""
    start_date: str | None = None  # MM-DD-YYYY
    end_date: str | None = None
    custom_fields: dict[str, str] = field(default_factory=dict)  # field name -> value, as Zoho shows them
    task_count: tuple[int, int] = (0, 0)  # (open, closed)
    milestone_count: tuple[int, int] = (0, 0)
    bug_count: tuple[int, int] = (0, 0)
    owner_name: str = "Patricia Boyle"
    owner_id: str = "2060758"


def zoho_custom_fields() -> list[dict[str, Any]]:
    return [
        {"is_visible": True, "field_name": "Supported browser", "field_type": "single_line",
         "default_value": "Chrome", "field_id": "UDF_CHAR1"},
        {"is_visible": True, "field_name": "Due Date", "field_type": "date", "field_id": "UDF_DATE1"},
    ]


def _zoho_seed_projects() -> list[ZohoProject]:
    banner_fields = {"Template design": "Rightnav_temp", "Promos per second": "2", "Blog announcement": "02-25-2016",
                     "Promo publish date": "02-17-2016", "Content approval": "Amritha Agrawal"}
    return [
        ZohoProject(ZOHO_PROJECTS[0], "Promotional banner for women's day", "active", 1455621643662, 1455621643662,
                    "fdb df b", custom_fields=banner_fields),
        ZohoProject(ZOHO_PROJECTS[1], "Website Design Templates", "active", 1350926134092, 1350926134092,
                    "This project is to discuss different design templates to build a website",
                    task_count=(6, 7), milestone_count=(2, 1), bug_count=(2, 1)),
        ZohoProject(ZOHO_PROJECTS[2], "SAP Projects", "archived", 1401109494737, 1401109494737,
                    "The project has been successfully implemented in 100 companies.", "05-26-2014", "12-31-2014",
                    task_count=(22, 11), milestone_count=(15, 7), bug_count=(18, 8)),
        ZohoProject(ZOHO_PROJECTS[3], "Website launch (template)", "template", 1340000000000, 1340000000000,
                    "Tasks and milestones every website launch needs", task_count=(12, 0), milestone_count=(3, 0)),
    ]


@dataclass
class ZohoStore:
    projects: dict[str, ZohoProject]
    custom_fields: list[dict[str, Any]]
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(170876000004000001))


def seed_zoho() -> ZohoStore:
    return ZohoStore({p.id: p for p in _zoho_seed_projects()}, zoho_custom_fields())
