"""The OpenAPI 3.0.3 description of hookrules' HTTP API, as served at `GET /openapi.json`.

A plain dict, kept by hand next to engine/api.py and the README's "Webhook contract": change
them together. The routes are here; what they share (schemas, error answers, parameters) is in
engine/openapi_components.py. tests/test_openapi.py runs Schemathesis against a live service with it.
"""

from __future__ import annotations

from typing import Any

from engine.openapi_components import COMPONENTS, JSON

OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "hookrules",
        "version": "0.1.0",
        "description": (
            "Webhook intake, health, event records and the admin API (dead letters) of hookrules, "
            "a rules engine for ServiceDesk Plus Cloud and Zoho Projects webhooks. "
            "Every error answers `{\"error\": \"<reason>\"}`."
        ),
    },
    "servers": [{"url": "http://127.0.0.1:8000", "description": "the default HOOKRULES_HOST and HOOKRULES_PORT"}],
    "tags": [
        {"name": "webhooks", "description": "Receiving webhooks."},
        {"name": "status", "description": "Health and event records."},
        {"name": "admin", "description": "Dead letters: actions given up on."},
    ],
    "paths": {
        "/hooks/{source}": {
            "post": {
                "operationId": "receiveHook",
                "tags": ["webhooks"],
                "summary": "Receive a webhook",
                "description": (
                    "Checks the sender's address (the source's allow_ips) and rate, authenticates with the "
                    "source's secret by one of the schemes in its `auth` (default: token, hmac), parses the "
                    "entity, then stores the event and queues it in one Redis transaction. 202 means "
                    "stored; nothing is stored for any other status. A scheme whose header is present but "
                    "wrong is refused, never passed over. "
                    "A resend with the same delivery id (X-Delivery-Id or webhook-id) answers 202 with the "
                    "same event_id and `duplicate: true`, and is processed once."
                ),
                "parameters": [
                    {"$ref": "#/components/parameters/Source"},
                    {
                        "name": "X-Hook-Token",
                        "in": "header",
                        "required": False,
                        "description": "Scheme `token`: the source's secret (HOOKRULES_SOURCE_<NAME>_SECRET).",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "X-Hook-Signature",
                        "in": "header",
                        "required": False,
                        "description": "Scheme `hmac`: `sha256=<hex HMAC-SHA256 of the raw body, keyed with the secret>`.",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "X-Hub-Signature-256",
                        "in": "header",
                        "required": False,
                        "description": "Scheme `github`: `sha256=<hex HMAC-SHA256 of the raw body, keyed with the secret>`.",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "webhook-signature",
                        "in": "header",
                        "required": False,
                        "description": (
                            "Scheme `standard` (Standard Webhooks): `v1,<base64 HMAC-SHA256 of "
                            "\"<webhook-id>.<webhook-timestamp>.<body>\">`, several separated by spaces."
                        ),
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "webhook-timestamp",
                        "in": "header",
                        "required": False,
                        "description": "Scheme `standard`: when it was sent, in epoch seconds, within 5 minutes of now.",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "webhook-id",
                        "in": "header",
                        "required": False,
                        "description": "Delivery id when X-Delivery-Id is absent; also signed by the `standard` scheme.",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "X-Delivery-Id",
                        "in": "header",
                        "required": False,
                        "description": (
                            "Delivery id: 1-200 printable ASCII characters without spaces. A resend with the "
                            "same id gets the same event_id. Without one, every request is a new event."
                        ),
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "X-Hook-Event",
                        "in": "header",
                        "required": False,
                        "description": (
                            "Event type, 1-100 letters, digits, `.`, `:`, `-`, `_`. Else the body's `event` "
                            "field, else the source's default_event (`milestone.updated` for `sdp`)."
                        ),
                        "schema": {"type": "string"},
                    },
                ],
                "requestBody": {
                    "required": True,
                    "description": "At most HOOKRULES_MAX_BODY bytes (1 MiB by default), UTF-8.",
                    "content": {
                        JSON: {
                            "schema": {"$ref": "#/components/schemas/WebhookBody"},
                            "example": {
                                "milestone": {
                                    "id": "2007594064055157",
                                    "project": {"id": "2258743870606263"},
                                    "status": {"name": "Open"},
                                    "actual_end_time": {"value": "1512974940000"},
                                }
                            },
                        },
                        "application/x-www-form-urlencoded": {
                            "schema": {"$ref": "#/components/schemas/WebhookForm"},
                        },
                    },
                },
                "responses": {
                    "202": {
                        "description": "Stored in Redis and queued.",
                        "content": {JSON: {"schema": {"$ref": "#/components/schemas/Accepted"}}},
                    },
                    "400": {"$ref": "#/components/responses/BadRequest"},
                    "401": {"$ref": "#/components/responses/HookUnauthorized"},
                    "403": {"$ref": "#/components/responses/Forbidden"},
                    "404": {"$ref": "#/components/responses/UnknownSource"},
                    "408": {"$ref": "#/components/responses/RequestTimeout"},
                    "413": {"$ref": "#/components/responses/TooLarge"},
                    "415": {"$ref": "#/components/responses/UnsupportedMediaType"},
                    "429": {"$ref": "#/components/responses/TooManyRequests"},
                    "503": {"$ref": "#/components/responses/RedisDown"},
                },
            }
        },
        "/health": {
            "get": {
                "operationId": "getLiveness",
                "tags": ["status"],
                "summary": "Liveness: the API process answers",
                "responses": {
                    "200": {
                        "description": "Always, while the process runs.",
                        "content": {JSON: {"schema": {"type": "object", "required": ["status"],
                                                       "properties": {"status": {"type": "string", "enum": ["alive"]}}}}},
                    },
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "getMetrics",
                "tags": ["status"],
                "summary": "Prometheus metrics",
                "security": [{"adminToken": []}],
                "responses": {
                    "200": {"description": "Prometheus text exposition format.", "content": {"text/plain": {"schema": {"type": "string"}}}},
                    "401": {"$ref": "#/components/responses/AdminUnauthorized"},
                    "403": {"$ref": "#/components/responses/AdminOff"},
                },
            }
        },
        "/ready": {
            "get": {
                "operationId": "getReadiness",
                "tags": ["status"],
                "summary": "Readiness: Redis, the rules and the workers are well",
                "description": "`{\"status\": ...}` for anyone; the whole report with the admin token. "
                               "`?scope=api`: whether this API process can take webhooks (Redis answers), for a "
                               "readiness probe of one replica.",
                "security": [{}, {"adminToken": []}],
                "parameters": [
                    {"name": "scope", "in": "query", "required": False,
                     "description": "`api`: only what this API process needs to take webhooks.",
                     "schema": {"type": "string", "enum": ["api"]}},
                ],
                "responses": {
                    "200": {
                        "description": "Redis answers and a worker reported within three heartbeat intervals.",
                        "content": {JSON: {"schema": {"$ref": "#/components/schemas/Health"}}},
                    },
                    "503": {
                        "description": "Redis is unreachable or no worker reported in time (the report's `problems` says which).",
                        "content": {JSON: {"schema": {"$ref": "#/components/schemas/Health"}}},
                    },
                    "400": {"$ref": "#/components/responses/BadRequest"},
                },
            }
        },
        "/events": {
            "get": {
                "operationId": "listEvents",
                "tags": ["status"],
                "summary": "Recent events, newest first, with what became of them",
                "security": [{"adminToken": []}],
                "parameters": [
                    {"name": "source", "in": "query", "required": False, "schema": {"type": "string"}},
                    {"name": "rule", "in": "query", "required": False, "description": "A rule that was a candidate.",
                     "schema": {"type": "string"}},
                    {"name": "entity", "in": "query", "required": False, "description": "kind:id, or the id.",
                     "schema": {"type": "string"}},
                    {"name": "status", "in": "query", "required": False,
                     "schema": {"type": "string", "enum": ["queued", "decided", "failed"]}},
                    {"name": "outcome", "in": "query", "required": False, "description": "Events with an action that came to this.",
                     "schema": {"type": "string", "enum": ["done", "failed", "retrying", "shadow"]}},
                    {"name": "since", "in": "query", "required": False, "description": "Epoch seconds.", "schema": {"type": "number"}},
                    {"name": "until", "in": "query", "required": False, "description": "Epoch seconds.", "schema": {"type": "number"}},
                    {"name": "limit", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}},
                ],
                "responses": {
                    "200": {
                        "description": "The matching events, summarised.",
                        "content": {JSON: {"schema": {"type": "object", "required": ["events"],
                                                       "properties": {"events": {"type": "array", "items": {"type": "object"}}}}}},
                    },
                    "400": {"$ref": "#/components/responses/BadRequest"},
                    "401": {"$ref": "#/components/responses/AdminUnauthorized"},
                    "403": {"$ref": "#/components/responses/AdminOff"},
                    "503": {"$ref": "#/components/responses/RedisDown"},
                },
            }
        },
        "/events/{event_id}": {
            "get": {
                "operationId": "getEvent",
                "tags": ["status"],
                "summary": "An event, its decision and each action's outcome",
                "security": [{"adminToken": []}],
                "parameters": [
                    {
                        "name": "event_id",
                        "in": "path",
                        "required": True,
                        "description": "The event_id a 202 answered.",
                        "schema": {"type": "string", "pattern": "^evt_[0-9a-f]{24}$"},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "The event record.",
                        "content": {JSON: {"schema": {"$ref": "#/components/schemas/EventRecord"}}},
                    },
                    "401": {"$ref": "#/components/responses/AdminUnauthorized"},
                    "403": {"$ref": "#/components/responses/AdminOff"},
                    "404": {"$ref": "#/components/responses/NotFound"},
                    "503": {"$ref": "#/components/responses/RedisDown"},
                },
            }
        },
        "/admin/dead-letters": {
            "get": {
                "operationId": "listDeadLetters",
                "tags": ["admin"],
                "summary": "List dead letters",
                "security": [{"adminToken": []}],
                "responses": {
                    "200": {
                        "description": "Dead letters, at most 1,000.",
                        "content": {JSON: {"schema": {"$ref": "#/components/schemas/DeadLetterList"}}},
                    },
                    "401": {"$ref": "#/components/responses/AdminUnauthorized"},
                    "403": {"$ref": "#/components/responses/AdminOff"},
                    "503": {"$ref": "#/components/responses/RedisDown"},
                },
            }
        },
        "/admin/dead-letters/{letter_id}": {
            "parameters": [{"$ref": "#/components/parameters/LetterId"}],
            "get": {
                "operationId": "getDeadLetter",
                "tags": ["admin"],
                "summary": "Show a dead letter",
                "security": [{"adminToken": []}],
                "responses": {
                    "200": {
                        "description": "The dead letter, its event and the action's last outcome.",
                        "content": {JSON: {"schema": {"$ref": "#/components/schemas/DeadLetterDetail"}}},
                    },
                    "401": {"$ref": "#/components/responses/AdminUnauthorized"},
                    "403": {"$ref": "#/components/responses/AdminOff"},
                    "404": {"$ref": "#/components/responses/NoDeadLetter"},
                    "503": {"$ref": "#/components/responses/RedisDown"},
                },
            },
            "delete": {
                "operationId": "purgeDeadLetter",
                "tags": ["admin"],
                "summary": "Purge a dead letter",
                "security": [{"adminToken": []}],
                "responses": {
                    "200": {
                        "description": "Purged.",
                        "content": {
                            JSON: {
                                "schema": {
                                    "type": "object",
                                    "required": ["purged"],
                                    "properties": {"purged": {"type": "string", "description": "The letter id."}},
                                }
                            }
                        },
                    },
                    "401": {"$ref": "#/components/responses/AdminUnauthorized"},
                    "403": {"$ref": "#/components/responses/AdminOff"},
                    "404": {"$ref": "#/components/responses/NoDeadLetter"},
                    "503": {"$ref": "#/components/responses/RedisDown"},
                },
            },
        },
        "/admin/dead-letters/{letter_id}/replay": {
            "parameters": [{"$ref": "#/components/parameters/LetterId"}],
            "post": {
                "operationId": "replayDeadLetter",
                "tags": ["admin"],
                "summary": "Replay a dead letter",
                "description": (
                    "Decides the event again with the rules as they are now and queues the action once; "
                    "the letter leaves the list."
                ),
                "security": [{"adminToken": []}],
                "responses": {
                    "202": {
                        "description": "Queued.",
                        "content": {
                            JSON: {
                                "schema": {
                                    "type": "object",
                                    "required": ["replaying", "job_id"],
                                    "properties": {
                                        "replaying": {"type": "string", "description": "The letter id."},
                                        "job_id": {"type": "string", "description": "The replay job's id."},
                                    },
                                }
                            }
                        },
                    },
                    "401": {"$ref": "#/components/responses/AdminUnauthorized"},
                    "403": {"$ref": "#/components/responses/AdminOff"},
                    "404": {"$ref": "#/components/responses/NoDeadLetter"},
                    "503": {"$ref": "#/components/responses/RedisDown"},
                },
            },
        },
        "/openapi.json": {
            "get": {
                "operationId": "getOpenApi",
                "tags": ["status"],
                "summary": "This document",
                "security": [{"adminToken": []}],
                "responses": {
                    "200": {
                        "description": "The OpenAPI 3.0.3 document.",
                        "content": {JSON: {"schema": {"type": "object"}}},
                    },
                    "401": {"$ref": "#/components/responses/AdminUnauthorized"},
                    "403": {"$ref": "#/components/responses/AdminOff"},
                },
            }
        },
    },
    "components": COMPONENTS,
}
