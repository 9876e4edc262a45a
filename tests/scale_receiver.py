"""The system the scale test's actions reach: a small ServiceDesk Plus stand-in, run as a process
of its own (`python tests/scale_receiver.py --port N --token T --items K`), that records every
request it applies so the test can count each action exactly once.

It speaks just enough of SDP's milestone API for what hookrules sends (tests/test_scale.py):

- `PUT  /app/<portal>/api/v3/projects/<p>/milestones/<m>`: an update; recorded (project,
  milestone, the fields written, when), the fields kept, 2000 answered. Every PUT is recorded,
  a repeated one too: a duplicate is what the test looks for.
- `GET  /app/<portal>/api/v3/projects/<p>/milestones/<m>`: the milestone as written so far
  (hookrules reads it back before sending again after an interrupted try), or SDP's 4007.
- `GET  /app/<portal>/api/v3/projects/<p>/milestones?input_data={"list_info": ...}`: a scheduled
  scan's list. Recorded with the tick the rule put in `list_info.search_criteria.value` (its
  `{{ now }}`, the tick in epoch ms); answers K milestones, one page.
- `GET  /_summary` (counts: PUTs per project, lists, read-backs, refusals) and `GET /_records` (everything recorded), for the test.

Requests without SDP's Accept header or without the expected token get 400 / 401 in SDP's shape,
so a wiring mistake shows as actions that never arrive, not as silent passes.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from aiohttp import web

ACCEPT = "application/vnd.manageengine.sdp.v3+json"
ITEM_BASE = 9_000_001  # the scanned milestones' ids: ITEM_BASE, ITEM_BASE + 1, ...


def sdp_reply(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response({**body, "response_status": {"status_code": 2000, "status": "success"}}, status=status)


def sdp_failure(status: int, code: int, message: str) -> web.Response:
    detail = {"status_code": code, "message": message, "type": "failed"}
    return web.json_response({"response_status": {"status_code": 4000, "status": "failed", "messages": [detail]}}, status=status)


class Receiver:
    def __init__(self, token: str, items: int) -> None:
        self.token = token
        self.items = items
        self.puts: list[dict[str, Any]] = []  # every applied PUT, repeats included
        self.lists: list[dict[str, Any]] = []  # every list read
        self.readbacks = 0
        self.refused: list[str] = []
        self.milestones: dict[tuple[str, str], dict[str, Any]] = {}

    def check(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Accept") != ACCEPT:
            self.refused.append(f"{request.method} {request.path}: Accept {request.headers.get('Accept')!r}")
            return sdp_failure(400, 4000, f"the Accept header must be {ACCEPT}")
        if request.headers.get("Authorization") != f"Zoho-oauthtoken {self.token}":
            self.refused.append(f"{request.method} {request.path}: bad token")
            return sdp_failure(401, 4001, "invalid token")
        return None

    async def put(self, request: web.Request) -> web.Response:
        if (refused := self.check(request)) is not None:
            return refused
        form = await request.post()
        fields = json.loads(form["input_data"])["milestone"]
        project, milestone = request.match_info["project"], request.match_info["milestone"]
        self.puts.append({"project": project, "milestone": milestone, "fields": fields, "at": time.time()})
        stored = self.milestones.setdefault((project, milestone), {"id": milestone, "project": {"id": project}})
        stored.update(fields)
        return sdp_reply({"milestone": stored})

    async def get(self, request: web.Request) -> web.Response:
        if (refused := self.check(request)) is not None:
            return refused
        project, milestone = request.match_info["project"], request.match_info["milestone"]
        self.readbacks += 1
        stored = self.milestones.get((project, milestone))
        if stored is None:
            return sdp_failure(404, 4007, f"no milestone with id {milestone} in project {project}")
        return sdp_reply({"milestone": stored})

    async def listing(self, request: web.Request) -> web.Response:
        if (refused := self.check(request)) is not None:
            return refused
        info = json.loads(request.query.get("input_data") or "{}").get("list_info") or {}
        tick_ms = (info.get("search_criteria") or {}).get("value")
        self.lists.append({"project": request.match_info["project"], "tick_ms": tick_ms, "at": time.time(),
                           "start_index": info.get("start_index")})
        milestones = [{"id": str(ITEM_BASE + n), "title": f"scanned {n}", "project": {"id": request.match_info["project"]}}
                      for n in range(self.items)]
        return sdp_reply({"list_info": {"has_more_rows": False, "row_count": len(milestones), "start_index": 1},
                          "milestones": milestones})

    async def summary(self, request: web.Request) -> web.Response:
        projects: dict[str, int] = {}
        for put in self.puts:
            projects[put["project"]] = projects.get(put["project"], 0) + 1
        return web.json_response({"puts": projects, "lists": len(self.lists), "readbacks": self.readbacks,
                                  "refused": len(self.refused)})

    async def records(self, request: web.Request) -> web.Response:
        return web.json_response({"puts": self.puts, "lists": self.lists, "readbacks": self.readbacks,
                                  "refused": self.refused})


def app(receiver: Receiver) -> web.Application:
    application = web.Application()
    base = "/app/{portal}/api/v3/projects/{project:\\d+}/milestones"
    application.add_routes([
        web.put(base + "/{milestone:\\d+}", receiver.put),
        web.get(base + "/{milestone:\\d+}", receiver.get),
        web.get(base, receiver.listing),
        web.get("/_summary", receiver.summary),
        web.get("/_records", receiver.records),
    ])
    return application


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--items", type=int, default=3)
    args = parser.parse_args()
    web.run_app(app(Receiver(args.token, args.items)), host="127.0.0.1", port=args.port, access_log=None,
                print=lambda line: print(line, flush=True), handle_signals=True)


if __name__ == "__main__":
    main()
