"""The `hookrules` command: its parser, and api, worker, up (everything at once), sandbox,
check and try. `status`, `events` and `dead` are in cli_service.py; what every command loads
first, and its plain-message failure (Fatal), in cli_load.py.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine import logs, masking, redis_wire
from engine.cli_load import Fatal, load, need_redis
from engine.cli_service import command_dead, command_events, command_status
from engine.rule_names import rule_warnings


def command_api(args: argparse.Namespace) -> int:
    import uvicorn

    from engine.api import create_app
    from engine.http_server import server_options

    settings, ruleset = load()
    need_redis(settings)
    for warning in settings.warnings:
        logging.getLogger("hookrules").warning(warning)
    app = create_app(settings, ruleset)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, server_header=False,
                timeout_keep_alive=5, **server_options(settings.header_timeout_s))
    return 0


def command_worker(args: argparse.Namespace) -> int:
    import asyncio

    import uvloop

    from workers.settings import run_worker

    # arq's Worker takes the event loop from the policy: uvloop's is the faster loop.
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

    settings, ruleset = load()
    need_redis(settings)
    logging.getLogger("hookrules").info("worker starting with %d rule(s), version %s", len(ruleset.rules), ruleset.version)
    run_worker(settings, ruleset)
    return 0


def command_sandbox(args: argparse.Namespace) -> int:
    import uvicorn

    from engine.sandbox import SandboxSettings, create_sandbox

    settings = SandboxSettings.from_env(os.environ)
    log = logging.getLogger("hookrules.sandbox")
    log.info("sandbox for ServiceDesk Plus (/app/<portal>/api/v3/...) and Zoho Projects (/restapi/portal/<portal>/...)")
    log.info("OAuth token endpoint: http://%s:%d/oauth/v2/token, client id %r", args.host, args.port, settings.client_id)
    uvicorn.run(create_sandbox(settings), host=args.host, port=args.port, log_config=None, access_log=False)
    return 0


def command_up(args: argparse.Namespace) -> int:
    from engine.supervisor import run_up

    settings, ruleset = load()
    return run_up(settings, ruleset, demo=args.demo, env=dict(os.environ))


def command_check(args: argparse.Namespace) -> int:
    from engine.examples import run_examples

    directory = Path(args.directory) if args.directory else None
    settings, ruleset = load(directory, then="check again")
    print(f"OK: {len(ruleset.rules)} rule(s) in {len(ruleset.files)} file(s), version {ruleset.version}")
    for rule in ruleset.rules:
        when = f"schedule {rule.schedule}" if rule.schedule else f"{'|'.join(rule.sources)} {'|'.join(rule.events)}"
        print(f"  {rule.id:<32} {rule.mode:<6} {when:<28} {rule.file}:{rule.line}")
    for warning in rule_warnings(ruleset.rules, frozenset(settings.sources), settings.targets.http_allow_hosts):
        print(f"warning: {warning}")
    results = run_examples(ruleset)
    for result in results:
        status = "PASS" if result.passed else "FAIL"
        print(f"{status} {result.rule.file}:{result.line}: rule {result.rule.id!r}: {result.name}")
        for failure in result.failures:
            print(f"       {failure}")
    failed = sum(not r.passed for r in results)
    print(f"examples: {len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


def read_json(path: str | None, what: str) -> Any:
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise Fatal(f"cannot read the {what} file {path}: {exc.strerror}", 2) from None
    except json.JSONDecodeError as exc:
        raise Fatal(f"the {what} file {path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", 2) from None


def command_try(args: argparse.Namespace) -> int:
    from engine.dryrun import dry_run
    from engine.intake import Rejected, find_entity, read_request

    settings, ruleset = load()
    source = settings.sources.get(args.source)
    if source is None:
        raise Fatal(f"unknown source {args.source!r}; the sources file has: {', '.join(sorted(settings.sources))}", 2)
    try:
        body = Path(args.event).read_bytes()
    except OSError as exc:
        raise Fatal(f"cannot read the event file {args.event}: {exc.strerror}", 2) from None
    content_type = args.content_type or guess_content_type(body)
    headers = {"content-type": content_type, **({"x-hook-event": args.event_type} if args.event_type else {})}
    previous = read_json(args.previous, "previous")
    if previous is not None and not isinstance(previous, dict):
        raise Fatal("the previous file must hold the entity itself, e.g. {\"id\": \"1\", \"status\": {...}}", 2)
    if isinstance(previous, dict) and "id" not in previous:
        try:
            previous = find_entity(previous)[1]  # given as a webhook body: {"milestone": {...}}
        except Rejected:
            pass
    try:
        event = read_request(source, headers, body, time.time())
    except Rejected as exc:
        raise Fatal(f"the event cannot be used: {exc.reason}", 2) from None
    print(dry_run(ruleset, event, previous, read_json(args.fetched, "fetched")))
    return 0


def positive(kind: type) -> Any:
    """An argparse type: a number above 0, else argparse's plain usage error."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text!r}: give a number above 0")
        return value
    parse.__name__ = kind.__name__
    return parse


def guess_content_type(body: bytes) -> str:
    """JSON or XML when the body looks like it, else a form (`a=1&b=2`, as Zoho Projects posts)."""
    first = body.lstrip()[:1]
    return "application/json" if first in (b"{", b"[") else "application/xml" if first == b"<" else "application/x-www-form-urlencoded"


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="hookrules", description="Webhook-driven automation rules for ServiceDesk Plus and Zoho Projects.")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = commands.add_parser("up", help="start everything: Redis (unless REDIS_URL is set), the API and a worker")
    up.add_argument("--demo", action="store_true", help="also start a stand-in ServiceDesk Plus and point the rules at it")
    up.set_defaults(run=command_up)
    commands.add_parser("api", help="run the HTTP API (needs REDIS_URL)").set_defaults(run=command_api)
    commands.add_parser("worker", help="run a worker (needs REDIS_URL)").set_defaults(run=command_worker)
    check = commands.add_parser("check", help="load the rule files and report every problem")
    check.add_argument("directory", nargs="?", help="rules directory (default: HOOKRULES_RULES_DIR or rules/)")
    check.set_defaults(run=command_check)
    dry = commands.add_parser("try", help="show what the rules would do with an event, without sending anything")
    dry.add_argument("event", help="a file with the body as the sender posts it, e.g. samples/milestone-completed.json")
    dry.add_argument("--content-type",
                     help="the body's Content-Type (default: application/json for a body that starts with { or [, "
                          "else application/x-www-form-urlencoded, as Zoho's form webhooks)")
    dry.add_argument("--previous", help="a JSON file with the entity as it was before (default: first sight)")
    dry.add_argument("--source", default="sdp", help="the source it came from, read as that source's shape (default: sdp)")
    dry.add_argument("--event-type", help="the event type (default: <kind>.updated)")
    dry.add_argument("--fetched", help="a JSON file with the replies for the rules' fetch, by name")
    dry.set_defaults(run=command_try)
    dead = commands.add_parser("dead", help="dead letters: actions given up on (list, show, replay, purge)")
    dead.add_argument("action", choices=["list", "show", "replay", "purge"])
    dead.add_argument("ids", nargs="*", help="dead letter ids, as `hookrules dead list` prints them")
    dead.add_argument("--all", action="store_true", help="every dead letter")
    dead.set_defaults(run=command_dead)
    events = commands.add_parser("events", help="recent events and what became of them (needs REDIS_URL)")
    events.add_argument("event_id", nargs="?", help="show this event's whole record")
    events.add_argument("--source")
    events.add_argument("--rule", help="events this rule was a candidate for")
    events.add_argument("--entity", help="kind:id or id, e.g. milestone:2007594064055157")
    events.add_argument("--status", choices=["queued", "decided", "failed"])
    events.add_argument("--outcome", choices=["done", "failed", "retrying", "shadow"], help="events with an action that came to this")
    events.add_argument("--hours", type=positive(float), help="only the last N hours")
    events.add_argument("--limit", type=positive(int), default=50, help="at most N events (default 50)")
    events.set_defaults(run=command_events)
    commands.add_parser("status", help="the health summary; exit 1 when unhealthy (needs REDIS_URL)").set_defaults(run=command_status)
    sandbox = commands.add_parser("sandbox", help="run a local emulator of the ServiceDesk Plus and Zoho Projects APIs")
    sandbox.add_argument("--port", type=int, default=8001, help="port to listen on (default 8001)")
    # Loopback unless asked: the sandbox has no secrets worth guarding, but nothing outside this
    # machine should mistake it for a real system. Containers need 0.0.0.0 (deploy/compose.yaml).
    sandbox.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sandbox.set_defaults(run=command_sandbox)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # The command in each line tells apart the processes `up` runs in one terminal.
    logs.configure(args.command, os.environ.get("HOOKRULES_LOG_FORMAT", "text"))
    # httpx (used by `up` to poll /health) logs every URL it asks at INFO; actions go out
    # through aiohttp (engine/http_client.py), which logs nothing per request.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    masking.install(os.environ)
    redis_wire.pack_with_hiredis()
    try:
        return args.run(args)
    except Fatal as exc:
        print(f"hookrules {args.command}: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `hookrules events | head`: the reader has what it wanted. Python would print a
        # traceback for the output it can no longer flush at exit: point it at nothing.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
