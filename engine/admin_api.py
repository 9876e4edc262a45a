"""The admin routes: everything but the webhook route and the short health answer needs
`Authorization: Bearer <HOOKRULES_ADMIN_TOKEN>`; while that variable is unset they answer 403.
"""

from __future__ import annotations

import hmac

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse

from engine import deadletters
from engine.responses import error, redis_down


def admin_refusal(request: Request) -> JSONResponse | None:
    """The admin API wants `Authorization: Bearer <HOOKRULES_ADMIN_TOKEN>`; None when given."""
    token = request.app.state.settings.admin_token
    if token is None:
        return error(403, "the admin API is off: set HOOKRULES_ADMIN_TOKEN to use it")
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return error(401, "send Authorization: Bearer <HOOKRULES_ADMIN_TOKEN>")
    return None


async def dead_letters(request: Request) -> JSONResponse:
    if (refused := admin_refusal(request)) is not None:
        return refused
    redis = request.app.state.redis
    letter_id = request.path_params.get("letter_id")
    try:
        if letter_id is None:
            return JSONResponse({"dead_letters": await deadletters.list_letters(redis)})
        if request.method == "GET":
            return JSONResponse(await deadletters.show(redis, letter_id))
        if request.method == "DELETE":
            await deadletters.purge(redis, letter_id)
            return JSONResponse({"purged": letter_id})
        job_id = await deadletters.replay(redis, letter_id)
        return JSONResponse({"replaying": letter_id, "job_id": job_id}, status_code=202)
    except deadletters.NotDead as exc:
        return error(404, str(exc))
    except (RedisError, OSError) as exc:
        return redis_down(exc)
