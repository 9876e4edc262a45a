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
_DIGITS = re.compile(r"^[0-9]{1,15}$")  # ASCII digits only: "²" is a digit to str.isdigit()
MAX_MILLIS = 10**15  # year 33658: anything larger is not a date
_ZOHO_DATE = re.compile(r"^(\d{2})-(\d{2})-(\d{4})$")
_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")  # what Zoho shows some portals, and what people type


def is_sdp_date(value: Any) -> bool:
    """{"value": "<12-14 digits>"} with at most a "display_value" beside it. Checked for every
    object of every webhook: no set built per object."""
    if not isinstance(value, dict):
        return False
    millis = value.get("value")
    return (isinstance(millis, str) and len(value) <= 2 and (len(value) == 1 or "display_value" in value)
            and bool(_EPOCH_MS.match(millis)))


def normalise_dates(data: Any) -> Any:
    """A copy of `data` where every SDP date object's `value` is an integer of milliseconds."""
    if isinstance(data, dict):
        if is_sdp_date(data):
            return {**data, "value": int(data["value"])}
        # Scalars are taken as they are, without a call each: this runs on every webhook.
        return {key: normalise_dates(item) if isinstance(item, (dict, list)) else item for key, item in data.items()}
    if isinstance(data, list):
        return [normalise_dates(item) if isinstance(item, (dict, list)) else item for item in data]
    return data


def to_millis(value: Any) -> int | None:
    """Epoch milliseconds from an SDP date object, a number, a digit string, MM-DD-YYYY or
    YYYY-MM-DD (read as midnight UTC). None when the value is missing or is none of these."""
    if isinstance(value, dict) and "value" in value:
        return to_millis(value["value"])
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        # Infinity, NaN and numbers beyond any date are not times.
        # (NaN compares false, so it falls out too.)
        return int(value) if abs(value) < MAX_MILLIS else None
    if isinstance(value, str):
        text = value.strip()
        if _DIGITS.match(text):
            return int(text)
        match, iso = _ZOHO_DATE.match(text), _ISO_DATE.match(text)
        if match or iso:
            month, day, year = (int(part) for part in match.groups()) if match else (int(iso[2]), int(iso[3]), int(iso[1]))
            try:
                moment = datetime(year, month, day, tzinfo=timezone.utc)
            except ValueError:
                return None
            return int(moment.timestamp() * 1000)
    return None
