"""Finding events: the audit trail behind GET /events and `hookrules events`.

Each event's record (store.event_record) holds what it was, the decision (every candidate rule,
matched or not) and every action's attempts. Listing walks the index newest first and keeps the
records that pass the filters, so a filter never needs an index of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from arq.connections import ArqRedis

from engine import store

SCAN_LIMIT = 5_000  # records looked at for one listing, at most


@dataclass(frozen=True)
class EventFilter:
    source: str | None = None
    rule: str | None = None  # a rule that was a candidate for the event
    entity: str | None = None  # "milestone:123" or just the id
    status: str | None = None  # queued | decided | failed (could not be decided)
    since: float = 0.0  # epoch seconds
    until: float = float("inf")
    limit: int = 50
    outcome: str | None = None  # an action of the event came to this: done | failed | retrying | shadow

    def keeps(self, record: dict[str, Any]) -> bool:
        event = record["event"]
        entity = event["entity"]
        if self.source and event["source"] != self.source:
            return False
        if self.status and record["status"] != self.status:
            return False
        if self.entity and self.entity not in (entity["id"], f"{entity['kind']}:{entity['id']}"):
            return False
        if self.outcome and not any(a.get("outcome") == self.outcome for a in record["actions"].values()):
            return False
        if self.rule:
            results = (record["decision"] or {}).get("results", [])
            return any(r["rule_id"] == self.rule for r in results)
        return True


def summary(record: dict[str, Any]) -> dict[str, Any]:
    event = record["event"]
    decision = record["decision"] or {}
    return {
        "id": event["id"],
        "received_at": event["received_at"],
        "source": event["source"],
        "type": event["type"],
        "entity": f"{event['entity']['kind']}:{event['entity']['id']}",
        "status": record["status"],
        "matched": [r["rule_id"] for r in decision.get("results", []) if r["matched"]],
        "actions": {key: action.get("outcome") for key, action in record["actions"].items()},
    }


async def find_events(redis: ArqRedis, wanted: EventFilter) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for event_id in await store.recent_event_ids(redis, wanted.since, wanted.until, SCAN_LIMIT):
        record = await store.event_record(redis, event_id)
        if record is not None and wanted.keeps(record):
            found.append(summary(record))
            if len(found) >= wanted.limit:
                break
    return found
