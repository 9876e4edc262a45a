"""The plain data that flows through the engine: events in, decisions and requests out.

Everything here is JSON-shaped (to_dict/from_dict) because it crosses Redis between the API and
the workers, and JSON is what an operator can read with redis-cli.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Entity:
    kind: str  # "milestone", "project", ...
    id: str
    data: dict[str, Any]  # the object as sent, with dates made comparable (see dates.py)


@dataclass(frozen=True)
class Event:
    id: str
    source: str
    type: str
    entity: Entity
    received_at: float  # epoch seconds
    delivery_id: str | None
    payload: dict[str, Any]  # the body as sent, for reference only

    def to_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it deep-copies the payload, which is most of an intake's cost,
        # and the dict is only ever encoded as JSON.
        entity = {"kind": self.entity.kind, "id": self.entity.id, "data": self.entity.data}
        return {"id": self.id, "source": self.source, "type": self.type, "entity": entity,
                "received_at": self.received_at, "delivery_id": self.delivery_id, "payload": self.payload}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Event:
        return cls(**{**raw, "entity": Entity(**raw["entity"])})

    def context(self) -> dict[str, Any]:
        """What rules and templates see. The entity's fields are also under its kind, so a
        rule about milestones reads `milestone.status.name`, as in the SDP documents."""
        entity = {"kind": self.entity.kind, "id": self.entity.id, "data": self.entity.data}
        return {
            "event": {
                "id": self.id,
                "source": self.source,
                "type": self.type,
                "received_at": self.received_at,
                "delivery_id": self.delivery_id,
            },
            "entity": entity,
            self.entity.kind: self.entity.data,
            "payload": self.payload,
        }


@dataclass(frozen=True)
class Request:
    """An HTTP request ready to send, without credentials: the connector adds those at send
    time, so what is stored and shown never holds a secret."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    form: dict[str, str] | None = None
    json: Any = None
    # Multipart file parts: field name -> [file name, text content, content type].
    files: dict[str, list[str]] | None = None
    # The connector ("sdp", "zoho") whose credentials, rate limits and way of reading replies
    # apply; None for a plain http.request.
    connector: str | None = None
    paging: str | None = None  # "sdp": follow list_info.has_more_rows page after page

    def to_dict(self) -> dict[str, Any]:
        # By hand, not dataclasses.asdict (a deep copy): it is only ever encoded as JSON.
        return {"method": self.method, "url": self.url, "headers": self.headers, "query": self.query, "form": self.form,
                "json": self.json, "files": self.files, "connector": self.connector, "paging": self.paging}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Request:
        return cls(**raw)


@dataclass(frozen=True)
class PlannedAction:
    rule_id: str
    index: int  # position in the rule's `then`, from 0
    action: str  # "sdp.milestones.update", "http.request", ...
    request: Request | None  # None when rendering failed
    error: str | None = None  # why rendering failed

    @property
    def key(self) -> str:
        return f"{self.rule_id}:{self.index}"


@dataclass(frozen=True)
class RuleResult:
    rule_id: str
    mode: str  # on | shadow
    matched: bool
    error: str | None = None  # the condition could not be evaluated, a fetch failed, or a loop was stopped
    skipped: str | None = None  # why the rule was not asked at all (an echo of our own write)
    because: str | None = None  # the part of the condition that decided, and its value


@dataclass(frozen=True)
class Decision:
    event_id: str
    ruleset_version: str
    results: list[RuleResult]
    actions: list[PlannedAction]  # only the actions to send: shadow rules plan none here
    shadowed: list[PlannedAction]  # what shadow rules would have sent

    def to_dict(self) -> dict[str, Any]:
        # By hand, not dataclasses.asdict: a decision is written for every event.
        return {
            "event_id": self.event_id,
            "ruleset_version": self.ruleset_version,
            "results": [{"rule_id": r.rule_id, "mode": r.mode, "matched": r.matched, "error": r.error,
                         "skipped": r.skipped, "because": r.because} for r in self.results],
            "actions": [_planned(a) for a in self.actions],
            "shadowed": [_planned(a) for a in self.shadowed],
        }


def _planned(action: PlannedAction) -> dict[str, Any]:
    return {"rule_id": action.rule_id, "index": action.index, "action": action.action,
            "request": action.request.to_dict() if action.request else None, "error": action.error}
