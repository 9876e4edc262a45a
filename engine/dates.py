"""Dates as the two target systems send them, made comparable as time.

SDP sends `{"value": "1512974940000", "display_value": "Dec 11, 2017 12:19 PM"}`: epoch
milliseconds as a *string*. JSONLogic compares two strings as text, so "999999999999" >
"1700000000000" would be true. `normalise_dates` turns those values into numbers, and
`to_millis` reads any of the shapes for the `after`/`before` operators.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

# 12 to 14 digits: epoch milliseconds from 1973 to 5138. Shorter digit strings in the same
# {value, display_value} shape are ids such as SDP's display_id {"value": "131"}, not dates.
_EPOCH_MS = re.compile(r"^\d{12,14}$")
_ZOHO_DATE = re.compile(r"^(\d{2})-(\d{2})-(\d{4})$")
_DATE_KEYS = {"value", "display_value"}


def is_sdp_date(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and "value" in value
        and set(value) <= _DATE_KEYS
        and isinstance(value["value"], str)
        and bool(_EPOCH_MS.match(value["value"]))
    )


def normalise_dates(data: Any) -> Any:
    """A copy of `data` where every SDP date object's `value` is an integer of milliseconds."""
    if is_sdp_date(data):
        return {**data, "value": int(data["value"])}
    if isinstance(data, dict):
        return {key: normalise_dates(item) for key, item in data.items()}
    if isinstance(data, list):
        return [normalise_dates(item) for item in data]
    return data


def to_millis(value: Any) -> int | None:
    """Epoch milliseconds from an SDP date object, a number, a digit string or MM-DD-YYYY
    (read as midnight UTC). None when the value is missing or is none of these."""
    if isinstance(value, dict) and "value" in value:
        return to_millis(value["value"])
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return int(text)
        match = _ZOHO_DATE.match(text)
        if match:
            month, day, year = (int(part) for part in match.groups())
            try:
                moment = datetime(year, month, day, tzinfo=timezone.utc)
            except ValueError:
                return None
            return int(moment.timestamp() * 1000)
    return None
