"""Secrets never reach a log line: a logging filter that blanks every known secret value.

The engine does not log secrets on purpose anywhere; this is the net under that rule, for what
a library or an error message might repeat (a URL with a key in it, a reply that echoes a
token). The values come from the environment variables that hold secrets.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from urllib.parse import quote, quote_plus

MASK = "****"
_SECRET_NAMES = re.compile(r"^HOOKRULES_.*(SECRET|TOKEN|PASSWORD)(_PREVIOUS)?$")
MIN_LENGTH = 6  # shorter values would blank ordinary words


def secret_values(env: Mapping[str, str]) -> list[str]:
    values = {value for name, value in env.items() if _SECRET_NAMES.match(name) and len(value) >= MIN_LENGTH}
    # As a URL carries it too (a hook_token in a query string, in the access log line).
    values |= {quote(value, safe="") for value in values} | {quote_plus(value, safe="") for value in values}
    return sorted(values, key=len, reverse=True)  # longest first: a secret inside another


def mask(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


class MaskSecrets(logging.Filter):
    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            masked = mask(message, self.secrets)
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = mask(record.exc_text, self.secrets)
            if masked != message:
                record.msg, record.args = masked, ()
        return True


def install(env: Mapping[str, str]) -> None:
    """Mask on every handler of the root logger (filters on a logger do not see records
    that propagate from its children; handler filters see them all)."""
    secrets = secret_values(env)
    for handler in logging.getLogger().handlers:
        handler.addFilter(MaskSecrets(secrets))
