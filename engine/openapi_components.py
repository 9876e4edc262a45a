"""The shared parts of the OpenAPI description (engine/openapi.py): the admin token scheme,
path parameters, the schemas of what the API answers, and its error answers."""

from __future__ import annotations

from typing import Any

JSON = "application/json"
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before sending again.",
        "schema": {"type": "integer", "minimum": 0},
    }
}


def _error(description: str, retry_after: bool = False) -> dict[str, Any]:
    """An error answer: `{"error": "<reason>"}`, with Retry-After where sending again helps."""
    return {
        "description": description,
        **({"headers": _RETRY_AFTER} if retry_after else {}),
        "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


COMPONENTS: dict[str, Any] = {
    "securitySchemes": {
        "adminToken": {
            "type": "http",
            "scheme": "bearer",
            "description": "`Authorization: Bearer <HOOKRULES_ADMIN_TOKEN>`. While it is unset, the routes that need it answer 403.",
        }
    },
    "parameters": {
        "Source": {
            "name": "source",
            "in": "path",
            "required": True,
            "description": "A source named in sources.yaml (shipped: `sdp`).",
            "schema": {"type": "string", "pattern": "^[a-z][a-z0-9_-]{0,39}$"},
        },
        "LetterId": {
            "name": "letter_id",
            "in": "path",
            "required": True,
            "description": "`<event id>:<rule id>:<n>`, as listed.",
            "schema": {"type": "string", "pattern": "^evt_[0-9a-f]{24}:[A-Za-z0-9][A-Za-z0-9_.-]{0,99}:[0-9]+$"},
        },
    },
    "schemas": {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "string", "description": "What was wrong, in words."}},
        },
        "Accepted": {
            "type": "object",
            "required": ["event_id", "duplicate"],
            "properties": {
                "event_id": {"type": "string", "pattern": "^evt_[0-9a-f]{24}$"},
                "duplicate": {"type": "boolean", "description": "True for a resend of a stored delivery id."},
            },
        },
        "WebhookBody": {
            "type": "object",
            "description": (
                "Exactly one object with an `id`, keyed by its kind: `{\"milestone\": {\"id\": \"123\", ...}}`. "
                "`response_status` and `list_info` beside it are ignored."
            ),
            "properties": {
                "event": {"type": "string", "description": "Event type, when X-Hook-Event is not sent."},
            },
            "additionalProperties": True,
        },
        "WebhookForm": {
            "type": "object",
            "required": ["input_data"],
            "properties": {
                "input_data": {"type": "string", "description": "The JSON object, as in an application/json body."},
            },
        },
        "Health": {
            "type": "object",
            "description": "Only `status` without the admin token.",
            "required": ["status"],
            "properties": {
                "status": {"type": "string", "enum": ["ok", "unavailable"]},
                "scope": {"type": "string", "enum": ["api"]},
                "problems": {"type": "array", "items": {"type": "string"}},
                "warnings": {"type": "array", "items": {"type": "string"}},
                "redis": {
                    "type": "object",
                    "required": ["reachable"],
                    "properties": {"reachable": {"type": "boolean"}, "error": {"type": "string"}},
                },
                "queue": {"type": "object", "properties": {"depth": {"type": "integer"}}},
                "worker": {"type": "object"},
                "ruleset": {"type": "object"},
                "sources": {"type": "array", "items": {"type": "string"}},
                "connectors": {"type": "object"},
                "schedules": {"type": "object"},
                "dead_letters": {"type": "integer"},
                "loops": {"type": "array"},
            },
        },
        "EventRecord": {
            "type": "object",
            "required": ["event", "status", "decision", "actions"],
            "properties": {
                "event": {"type": "object", "description": "The event as normalised."},
                "status": {"type": "string", "nullable": True, "description": "`queued`, `decided`."},
                "decision": {
                    "type": "object",
                    "nullable": True,
                    "description": "Each candidate rule, matched or not, and the planned requests (no credentials).",
                },
                "actions": {
                    "type": "object",
                    "description": "Per `<rule id>:<n>`: outcome (`done`, `retrying`, `failed`, `shadow`), attempts, history.",
                    "additionalProperties": {"type": "object"},
                },
            },
        },
        "DeadLetter": {
            "type": "object",
            "required": ["id", "event_id", "rule", "failed_at"],
            "properties": {
                "id": {"type": "string"},
                "event_id": {"type": "string"},
                "rule": {"type": "string"},
                "action": {"type": "string", "nullable": True},
                "error": {"type": "string", "nullable": True},
                "http_status": {"type": "integer", "nullable": True},
                "attempts": {"type": "integer", "nullable": True},
                "failed_at": {"type": "number", "description": "Epoch seconds."},
            },
        },
        "DeadLetterList": {
            "type": "object",
            "required": ["dead_letters"],
            "properties": {"dead_letters": {"type": "array", "items": {"$ref": "#/components/schemas/DeadLetter"}}},
        },
        "DeadLetterDetail": {
            "type": "object",
            "required": ["id", "event", "outcome"],
            "properties": {
                "id": {"type": "string"},
                "event": {"type": "object"},
                "outcome": {"type": "object", "nullable": True},
            },
        },
    },
    "responses": {
        "BadRequest": _error(
            "Not UTF-8, not valid JSON, not an object, nested too deeply or with too many keys, no or "
            "several objects with an id, a form without input_data, or a bad event type or delivery id."),
        "HookUnauthorized": _error(
            "No valid credentials for any scheme the source accepts (a webhook-timestamp more than "
            "5 minutes off included), or no secret configured for the source."),
        "Forbidden": _error("The sender's address is not in the source's allow_ips."),
        "UnknownSource": _error("Unknown source; the reason names the accepted ones."),
        "RequestTimeout": _error("The body did not arrive within HOOKRULES_BODY_TIMEOUT seconds."),
        "TooLarge": _error("The body is over HOOKRULES_MAX_BODY."),
        "UnsupportedMediaType": _error("No Content-Type, or one other than JSON or form."),
        "TooManyRequests": _error("The source sent more than its `rate` of webhooks a second.", retry_after=True),
        "RedisDown": _error("Redis is unreachable; nothing was done. Send again later.", retry_after=True),
        "AdminUnauthorized": _error("Missing or wrong `Authorization: Bearer <HOOKRULES_ADMIN_TOKEN>`."),
        "AdminOff": _error("HOOKRULES_ADMIN_TOKEN is unset: these routes are off."),
        "NotFound": _error("No such event (unknown id, or older than HOOKRULES_EVENT_TTL)."),
        "NoDeadLetter": _error("No such dead letter: a wrong id, already replayed or purged, or its event expired."),
    },
}
