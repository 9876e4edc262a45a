"""The reads a rule asks for before its `when` (`fetch:`), done by the worker before decide().

One read per distinct request per event, however many rules ask for it. A read that fails
leaves its rule unmatched, with the reason recorded on the event; other rules go on.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from engine.actions import ActionError
from engine.decide import rule_context
from engine.models import Event, Request
from engine.rules import Ruleset
from engine.sending import ReadError, Sender
from engine.templates import TemplateError, render_tree

log = logging.getLogger("hookrules.fetch")


def request_key(request: Request) -> str:
    return json.dumps([request.method, request.url, request.query], sort_keys=True)


async def fetch_for_event(
    sender: Sender, ruleset: Ruleset, event: Event, previous: dict[str, Any] | None, now: float
) -> dict[str, dict[str, Any] | str]:
    """Per rule id: its reads by name, or the text of the error that stopped them."""
    wanting = [r for r in ruleset.listening(event) if r.fetches and r.mode != "off"]
    if not wanting:
        return {}
    context = rule_context(event, previous, now)
    done: dict[str, Any] = {}  # request key -> reply, or ReadError
    fetched: dict[str, dict[str, Any] | str] = {}
    for rule in wanting:
        reads: dict[str, Any] = {}
        try:
            for name, action in rule.fetches:
                request = action.spec.build(render_tree(action.args, context), ruleset.targets)
                key = request_key(request)
                if key not in done:
                    try:
                        done[key] = await sender.read(request)
                    except ReadError as exc:
                        done[key] = exc
                if isinstance(done[key], ReadError):
                    raise ReadError(f"{name}: {done[key]}")
                reads[name] = done[key]
            fetched[rule.id] = reads
        except (ReadError, ActionError, TemplateError) as exc:
            log.warning("event %s: rule %s: fetch failed: %s", event.id, rule.id, exc)
            fetched[rule.id] = str(exc)
    return fetched
