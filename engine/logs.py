"""Log lines: readable text by default, or one JSON object a line (HOOKRULES_LOG_FORMAT=json)
for log collectors, carrying the event and rule ids a line is about so a search by id finds
everything that happened to an event."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone

TEXT = "%(asctime)s %(levelname)-7s [{command}] %(name)s: %(message)s"
FIELDS = ("event_id", "rule_id", "action", "source")  # passed with extra={...} where known


class JsonFormatter(logging.Formatter):
    def __init__(self, command: str) -> None:
        super().__init__()
        self.command = command

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "process": self.command,
            "logger": record.name,
            "message": record.getMessage(),
            **{name: getattr(record, name) for name in FIELDS if getattr(record, name, None) is not None},
        }
        if record.exc_info:
            line["error"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure(command: str, form: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(command) if form == "json" else logging.Formatter(TEXT.format(command=command)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
