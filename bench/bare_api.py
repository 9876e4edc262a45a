"""The baseline of section 1: a bare Starlette route that reads the body and answers 202.

It is served by engine.cli's own `api` command with only the app swapped (engine.api.create_app
is replaced before command_api imports it), so uvicorn.run gets exactly the options the real
API gets, whatever engine/cli.py passes now or later. The bench starts it with the api's
environment and another HOOKRULES_PORT. With --no-access-log (a reference row of the bench,
not the baseline) uvicorn.run also gets access_log=False.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402


async def hook(request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse({"event_id": "evt_bare", "duplicate": False}, status_code=202)


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "alive"})


def bare_app(settings: Any, ruleset: Any) -> Starlette:
    return Starlette(routes=[Route("/hooks/{source}", hook, methods=["POST"]), Route("/health", health, methods=["GET"])])


def without_access_log() -> None:
    """For the reference row only: the same options, plus access_log=False."""
    import uvicorn

    run = uvicorn.run
    uvicorn.run = lambda *args, **kwargs: run(*args, **{**kwargs, "access_log": False})  # type: ignore[assignment]


if __name__ == "__main__":
    import engine.api
    import engine.cli

    engine.api.create_app = bare_app  # type: ignore[assignment]
    if "--no-access-log" in sys.argv[1:]:
        without_access_log()
    sys.exit(engine.cli.main(["api"]))
