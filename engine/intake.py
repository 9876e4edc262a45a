"""From an HTTP request's parts to an Event, or a Rejected with the status and the reason.

Pure: the API hands in the source, the headers and the raw body; nothing here touches the
network or Redis, so every bad-input case is a plain unit test.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

import defusedxml.ElementTree as DefusedET
import orjson
from defusedxml import DefusedXmlException

from engine.auth import PARAM, Rejected, authenticate
from engine.dates import normalise_dates
from engine.models import Entity, Event
from engine.shapes import mapped_entity, resolve, value_of, zoho_entity
from engine.sources import Source

DEDUP_WINDOW_S = 300  # a body posted twice within the same five-minute window is one delivery
MAX_DEPTH = 32
MAX_KEYS = 10_000
# For _parsed_fast: each ASCII digit turned into "0" and every other byte into a space, so a
# run of 19 digits is a run of 19 zeros.
_DIGITS_ONLY = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_LONG_RUN = b"0" * 19
_EVENT_TYPE = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
_DELIVERY_ID = re.compile(r"^[\x21-\x7e]{1,200}$")
# Keys SDP puts beside the object that are not the object.
_NOT_ENTITIES = {"response_status", "list_info"}


def parse_body(content_type: str, body: bytes, form: str = "input_data") -> dict[str, Any]:
    """JSON, or a form: with form="input_data" its `input_data` field holds JSON (as SDP sends
    it); with form="fields" the form's fields are the object (as Zoho Projects sends them)."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected(400, "the body is not UTF-8 text") from None
    if media_type == "application/json" or media_type.endswith("+json"):
        where, raw = "the body", body
    elif media_type in ("application/xml", "text/xml") and form == "fields":
        return xml_object(text)
    elif media_type == "application/x-www-form-urlencoded" and form == "fields":
        fields = parse_qs(text, keep_blank_values=True)
        result = {key: values[0] if len(values) == 1 else values for key, values in fields.items()}
        check_size(result, "the form")
        return result
    elif media_type == "application/x-www-form-urlencoded":
        fields = parse_qs(text, keep_blank_values=True)
        if "input_data" not in fields:
            raise Rejected(400, "a form body needs an input_data field holding JSON, as ServiceDesk Plus sends it")
        text, where = fields["input_data"][0], "the input_data field"
        raw = text.encode()
    elif not media_type:
        raise Rejected(415, "no Content-Type: send application/json or application/x-www-form-urlencoded")
    else:
        raise Rejected(
            415, f"Content-Type {media_type!r} is not supported: send application/json or application/x-www-form-urlencoded"
        )
    parsed = _parsed_fast(raw)
    if parsed is None:
        parsed = _parsed_exactly(text, where)
    if not isinstance(parsed, dict):
        raise Rejected(400, f"{where} must be a JSON object such as {{\"milestone\": {{...}}}}")
    if not _surely_small(raw):
        check_size(parsed, where)
    return parsed


def _parsed_fast(raw: bytes) -> Any | None:
    """orjson's reading of the JSON text `raw`, or None when the standard decoder must read it:
    orjson turns integers beyond 64 bits into floats (so text with a run of 19 or more digits
    anywhere, where such an integer could hide, goes to the standard decoder), and refuses some
    text the standard decoder reads, or refuses with a clearer message (lone surrogates, NaN)."""
    # One translate and one substring search: far cheaper than a regex over the text.
    if _LONG_RUN in raw.translate(_DIGITS_ONLY):
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _surely_small(raw: bytes) -> bool:
    """True when the text cannot hold what check_size refuses, counted on the text itself: it
    cannot nest deeper than it has brackets, nor hold more keys than it has colons (both
    also count those inside strings, so the count is never too low)."""
    return raw.count(b"{") + raw.count(b"[") < MAX_DEPTH and raw.count(b":") <= MAX_KEYS


def _parsed_exactly(text: str, where: str) -> Any:
    try:
        # The standard decoder: it keeps integers of any size exact, and is refused only NaN
        # and Infinity; its messages say where the text went wrong.
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise Rejected(400, f"{where} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:  # a number of thousands of digits, NaN, Infinity
        raise Rejected(400, f"{where} is not usable JSON: {exc}") from None
    except RecursionError:
        raise Rejected(400, f"{where} is nested too deeply (at most {MAX_DEPTH} levels)") from None


def _no_constant(name: str) -> Any:
    # NaN and Infinity are not JSON, though Python reads them; nothing downstream can store them.
    raise ValueError(f"{name} is not a JSON number")


# One decoder for every body: json.loads with an argument builds a new one per call.
_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def xml_object(text: str) -> dict[str, Any]:
    """An XML body (Zoho's custom webhook body may be XML) as an object: the root element's
    children by tag; repeated tags become lists; text is kept as text. defusedxml refuses
    entity expansion and external references."""
    try:
        root = DefusedET.fromstring(text)
    except (DefusedET.ParseError, DefusedXmlException) as exc:
        raise Rejected(400, f"the body is not usable XML: {exc}") from None
    value = _xml_value(root)
    result = value if isinstance(value, dict) else {root.tag: value}
    check_size(result, "the body")
    return result


def _xml_value(element: Any) -> Any:
    children = list(element)
    if not children:
        return (element.text or "").strip()
    found: dict[str, Any] = {}
    for child in children:
        value = _xml_value(child)
        if child.tag in found:
            existing = found[child.tag]
            found[child.tag] = (existing if isinstance(existing, list) else [existing]) + [value]
        else:
            found[child.tag] = value
    return found


def check_size(value: Any, where: str) -> None:
    """Refuse JSON nested deeper than MAX_DEPTH or with more than MAX_KEYS keys in all: such
    bodies cost far more to keep and decide than any real webhook."""
    keys, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise Rejected(400, f"{where} is nested too deeply (at most {MAX_DEPTH} levels)")
        if isinstance(item, dict):
            keys += len(item)
            if keys > MAX_KEYS:
                raise Rejected(400, f"{where} has too many keys (at most {MAX_KEYS} in all)")
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth >= MAX_DEPTH and children:
            raise Rejected(400, f"{where} is nested too deeply (at most {MAX_DEPTH} levels)")
        # Only containers go on the stack: scalars can be neither too deep nor hold keys.
        stack.extend([(child, depth + 1) for child in children if isinstance(child, (dict, list))])


def find_entity(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The SDP object shape: `{"milestone": {"id": ..., ...}}` names the kind by its key."""
    candidates = [
        (key, value)
        for key, value in body.items()
        if key not in _NOT_ENTITIES and isinstance(value, dict) and value.get("id") not in (None, "")
    ]
    for key, value in candidates:
        if not _usable_id(value["id"]):
            raise Rejected(400, f"{key}.id must be a number or a short string of printable characters, got {str(value['id'])[:40]!r}")
    if not candidates:
        raise Rejected(400, 'no entity in the body: expected an object with an id, such as {"milestone": {"id": "123", ...}}')
    if len(candidates) > 1:
        names = ", ".join(key for key, _ in candidates)
        raise Rejected(400, f"the body holds several objects with an id ({names}): send one entity per webhook")
    return candidates[0]


def _usable_id(value: Any) -> bool:
    """Ids go into Redis keys: numbers, or printable text that is valid UTF-8."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return False
    text = str(value)
    if len(text) > 100 or not text.isprintable():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def event_type(source: Source, headers: Mapping[str, str], body: dict[str, Any], kind: str) -> str:
    given = headers.get("x-hook-event") or body.get("event")
    if given is None and source.default_event:
        given = source.default_event.replace("{kind}", kind)
    if given is None:
        raise Rejected(400, "no event type: send the X-Hook-Event header or an \"event\" field in the body")
    if not isinstance(given, str) or not _EVENT_TYPE.match(given):
        raise Rejected(400, f"event type {given!r} must be 1-100 letters, digits, '.', ':', '-' or '_'")
    return given


def delivery_id(headers: Mapping[str, str]) -> str | None:
    given = headers.get("x-delivery-id") or headers.get("webhook-id")
    if given is None:
        return None
    if not _DELIVERY_ID.match(given):
        raise Rejected(400, "the delivery id must be 1-200 printable characters without spaces")
    return given


def event_id_for(source: str, delivery: str | None) -> str:
    """A resend carries the same delivery id, so it gets the same event id: that is what makes
    the queue treat it as the same job. Without a delivery id every request is new."""
    if delivery is None:
        return "evt_" + os.urandom(12).hex()  # 96 random bits, as the 24 hex digits of a uuid4 held
    return "evt_" + hashlib.sha256(f"{source}\0{delivery}".encode()).hexdigest()[:24]


def derived_delivery(source: str, body: bytes, received_at: float) -> str:
    """For senders that give no delivery id: the same body from the same source within the
    same DEDUP_WINDOW_S counts as one delivery, so an accidental double post is processed once."""
    return f"auto:{hashlib.sha256(body).hexdigest()[:24]}:{int(received_at // DEDUP_WINDOW_S)}"


def read_entity(source: Source, payload: dict[str, Any], parts: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    if source.shape == "zoho":
        return zoho_entity(payload)
    if source.shape == "json":
        return mapped_entity(source.mapping, parts)
    kind, obj = find_entity(payload)
    return kind, normalise_dates(obj)


def to_event(source: Source, headers: Mapping[str, str], body: bytes, received_at: float,
             query: Mapping[str, str] | None = None) -> Event:
    """Authenticate and read a webhook the way its source's shape says. `headers` must have
    lower-case names."""
    authenticate(source, headers, body, received_at, query)
    return read_request(source, headers, body, received_at, query)


def read_request(source: Source, headers: Mapping[str, str], body: bytes, received_at: float,
                 query: Mapping[str, str] | None = None) -> Event:
    """Read a request as its source's shape says, without authenticating it: `to_event` does
    that first; `hookrules try` reads what a user pasted."""
    # parse_body has checked the size of whatever shape it read.
    payload = parse_body(headers.get("content-type", ""), body, "input_data" if source.shape == "sdp" else "fields")
    if isinstance(payload, dict):  # a secret, never data: not stored, not read by rules
        payload.pop(PARAM, None)
    parts = {"body": payload, "headers": headers, "query": {k: v for k, v in (query or {}).items() if k != PARAM}}
    kind, data = read_entity(source, payload, parts)
    if not _usable_id(data["id"]):
        raise Rejected(400, f"{kind}.id must be a number or a short string of printable characters")
    mapped_type = value_of(source.mapping["type"], parts) if "type" in source.mapping else None
    mapped_delivery = resolve(source.mapping["delivery"], parts) if "delivery" in source.mapping else None
    delivery = delivery_id(headers) or (str(mapped_delivery) if mapped_delivery not in (None, "") else None)
    if delivery is None and source.shape != "sdp":
        delivery = derived_delivery(source.name, body, received_at)
    return Event(
        id=event_id_for(source.name, delivery),
        source=source.name,
        type=event_type(source, {**headers, **({"x-hook-event": mapped_type} if mapped_type and "x-hook-event" not in headers else {})},
                        payload, kind),
        entity=Entity(kind=kind, id=str(data["id"]), data=data),
        received_at=received_at,
        delivery_id=delivery,
        payload=payload,
    )
