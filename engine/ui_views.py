"""What the dashboard's pages show, as plain data for the templates: times, the chart, rule rows
and one event's drill-down. Pure (no Redis, no requests), so each piece is easy to test.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from engine.rules import Rule

MASK = "****"
# Headers whose value is never shown, whatever a record holds. None is stored today (the
# connector adds credentials at send time); this is the net under that rule.
HIDDEN_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-hook-token"})


def utc(epoch: float | None) -> str:
    """Times on every page: UTC, 'YYYY-MM-DD HH:MM:SS'; a dash when unknown."""
    if epoch is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def masked_headers(headers: dict[str, Any] | None) -> dict[str, Any]:
    return {name: MASK if name.lower() in HIDDEN_HEADERS else value for name, value in (headers or {}).items()}


def nice_ceiling(value: float) -> int:
    """The axis top: 1, 2 or 5 times a power of ten, at least `value` (and at least 1)."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    return next(int(step * power) for step in (1, 2, 5, 10) if step * power >= value)


def chart(timeline: list[dict[str, Any]], width: int = 640, height: int = 180) -> dict[str, Any]:
    """Events and actions per minute as SVG polyline points, with the axis labels."""
    left, right, top, bottom = 44, 12, 12, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    top_value = nice_ceiling(max([p["events"] for p in timeline] + [p["actions"] for p in timeline] + [0]))
    step = plot_w / max(1, len(timeline) - 1)

    def points(series: str) -> str:
        return " ".join(
            f"{left + i * step:.1f},{top + plot_h - p[series] / top_value * plot_h:.1f}" for i, p in enumerate(timeline)
        )

    x_ticks = sorted({0, len(timeline) // 2, len(timeline) - 1}) if timeline else []
    return {
        "width": width,
        "height": height,
        "plot": {"x": left, "y": top, "w": plot_w, "h": plot_h, "bottom": top + plot_h, "right": left + plot_w},
        "events": points("events"),
        "actions": points("actions"),
        "y_ticks": [{"y": top + plot_h - f * plot_h, "label": f"{top_value * f:g}"} for f in (0, 0.5, 1)],
        # The first and last labels lean inwards, so neither is cut at the edge.
        "x_ticks": [
            {"x": left + i * step, "label": time.strftime("%H:%M", time.gmtime(timeline[i]["minute"])),
             "anchor": "start" if i == 0 else "end" if i == len(timeline) - 1 else "middle"}
            for i in x_ticks
        ],
        "total_events": sum(p["events"] for p in timeline),
        "total_actions": sum(p["actions"] for p in timeline),
    }


def rule_on(rule: Rule) -> str:
    """What a rule listens to, as one line: its schedule, or its sources and event types."""
    if rule.schedule:
        return f"schedule {rule.schedule}"
    return f"source {', '.join(rule.sources)}; event {', '.join(rule.events)}"


def rule_rows(rules: tuple[Rule, ...], counts: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    empty = {"candidates": 0, "matched": 0, "errors": 0, "last_match": None, "last_error": None}
    return [
        {"id": r.id, "description": r.description, "mode": r.mode, "on": rule_on(r), "where": f"{r.file}:{r.line}",
         **counts.get(r.id, empty)}
        for r in rules
    ]


def request_view(request: dict[str, Any] | None) -> str | None:
    """A stored request as text, as it would go on the wire: the request line, headers
    (credential headers masked), then the body pretty-printed."""
    if not request:
        return None
    query = "&".join(f"{k}={v}" for k, v in (request.get("query") or {}).items())
    lines = [f"{request.get('method')} {request.get('url')}" + (f"?{query}" if query else "")]
    lines += [f"{name}: {value}" for name, value in masked_headers(request.get("headers")).items()]
    if request.get("json") is not None:
        lines += ["", pretty(request["json"])]
    for name, value in (request.get("form") or {}).items():
        lines += ["", f"{name} = {_maybe_json(value)}"]  # SDP's input_data: JSON inside a form field
    for name, (filename, _content, content_type) in sorted((request.get("files") or {}).items()):
        lines += ["", f"[file part {name}: {filename}, {content_type}]"]
    return "\n".join(lines)


def _maybe_json(value: Any) -> str:
    try:
        return pretty(json.loads(value)) if isinstance(value, str) and value[:1] in "{[" else str(value)
    except ValueError:
        return str(value)


def action_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Every action of the event, planned (sent or shadowed) or only recorded, with its outcome
    and attempt history. A replayed action keeps its key, so one row covers its whole story."""
    decision = record.get("decision") or {}
    planned = [(a, False) for a in decision.get("actions", [])] + [(a, True) for a in decision.get("shadowed", [])]
    rows, seen = [], set()
    for action, shadow in planned:
        key = f"{action['rule_id']}:{action['index']}"
        seen.add(key)
        rows.append(_action_row(key, action["action"], action.get("request"), action.get("error"), shadow,
                                record["actions"].get(key)))
    for key, outcome in record["actions"].items():
        if key not in seen:
            rows.append(_action_row(key, outcome.get("action"), outcome.get("request"), None, False, outcome))
    return rows


def _action_row(key: str, name: str | None, request: dict[str, Any] | None, render_error: str | None,
                shadow: bool, outcome: dict[str, Any] | None) -> dict[str, Any]:
    outcome = outcome or {}
    return {
        "key": key,
        "action": name,
        "shadow": shadow,
        "render_error": render_error,
        "request": request_view(outcome.get("request") or request),
        "outcome": outcome.get("outcome") or ("shadow" if shadow else "pending"),
        "http_status": outcome.get("http_status"),
        "attempts": outcome.get("attempts"),
        "error": outcome.get("error"),
        "response": outcome.get("response"),
        "replay": outcome.get("replay", 0),
        "history": outcome.get("history", []),
    }


def event_view(record: dict[str, Any]) -> dict[str, Any]:
    event = record["event"]
    decision = record.get("decision") or {}
    return {
        "id": event["id"],
        "source": event["source"],
        "type": event["type"],
        "received_at": event["received_at"],
        "delivery_id": event.get("delivery_id"),
        "entity": f"{event['entity']['kind']}:{event['entity']['id']}",
        "data": pretty(event["entity"]["data"]),
        "status": record.get("status"),
        "ruleset_version": decision.get("ruleset_version"),
        "results": decision.get("results", []),
        "actions": action_rows(record),
    }
