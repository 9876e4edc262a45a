"""The `hookrules` command: api, worker, up (everything at once), check.

Each command reads the settings and the rules first and stops with a plain message and a
non-zero exit when either is wrong, before anything is started.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine import logs, masking, redis_wire
from engine.config import ConfigError, Settings, load_settings
from engine.rule_files import load_ruleset
from engine.rule_names import rule_warnings
from engine.rules import RuleProblems, Ruleset



class Fatal(Exception):
    """Stop the command with this message and exit status 1 (2 for a usage problem)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def load(rules_dir: Path | None = None, then: str = "start again") -> tuple[Settings, Ruleset]:
    settings = load_config()
    return settings, load_rules(settings, rules_dir, then)


def load_config() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        raise Fatal(f"configuration problem: {exc}", 2) from None


def load_rules(settings: Settings, rules_dir: Path | None = None, then: str = "start again") -> Ruleset:
    directory = rules_dir or settings.rules_dir
    try:
        ruleset = load_ruleset(directory, settings.targets)
    except RuleProblems as exc:
        lines = "\n".join(f"  {problem}" for problem in exc.problems)
        raise Fatal(f"the rules in {directory} have {len(exc.problems)} problem(s); fix them and {then}:\n{lines}") from None
    return ruleset


def need_redis(settings: Settings) -> str:
    """REDIS_URL, which `api` and `worker` need: a part of the service must be told where it
    belongs, never guess it from a file a `hookrules up` left."""
    if not settings.redis_url:
        raise Fatal(
            "REDIS_URL is not set: point it at your Redis (e.g. redis://127.0.0.1:6379/0), "
            "or use `hookrules up`, which starts an embedded one"
        )
    return settings.redis_url


def redis_address(settings: Settings) -> tuple[str, str]:
    """The Redis to use, and where that address came from: REDIS_URL, else the embedded
    server of a `hookrules up` running from this directory."""
    from engine.embedded_redis import URL_FILE, data_dir, published_url

    if settings.redis_url:
        return settings.redis_url, "REDIS_URL"
    directory = data_dir(os.environ)
    if url := published_url(directory):
        return url, f"the address `hookrules up` left in {directory / URL_FILE} (is it still running?)"
    raise Fatal(
        "REDIS_URL is not set, and no `hookrules up` is running from this directory: point REDIS_URL "
        "at your Redis (e.g. redis://127.0.0.1:6379/0), or start `hookrules up`, which runs an embedded one"
    )


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


def command_dead(args: argparse.Namespace) -> int:
    from engine import deadletters

    settings, _ = load()

    async def act(redis: Any) -> int:
        try:
            if args.action == "list":
                letters = await deadletters.list_letters(redis)
                for letter in letters:
                    reply = f"HTTP {letter['http_status']}" if letter["http_status"] is not None else "no reply"
                    print(f"{letter['id']}  {letter['action']}  {reply}  {letter['error']}")
                print(f"{len(letters)} dead letter(s)")
                return 0
            ids = [x["id"] for x in await deadletters.list_letters(redis)] if args.all else args.ids
            if not ids:
                raise Fatal("name the dead letters (ids from `hookrules dead list`) or give --all", 2)
            for letter_id in ids:
                if args.action == "show":
                    print(json.dumps(await deadletters.show(redis, letter_id), indent=2))
                elif args.action == "replay":
                    await deadletters.replay(redis, letter_id)
                    print(f"replaying {letter_id}: see GET /events/{letter_id.split(':', 1)[0]}")
                else:
                    await deadletters.purge(redis, letter_id)
                    print(f"purged {letter_id}")
            return 0
        except deadletters.NotDead as exc:
            raise Fatal(str(exc)) from None

    return with_redis(settings, act)


def with_redis(settings: Settings, act: Any) -> Any:
    """Run `act(redis)` against REDIS_URL, turning an unreachable Redis into a plain message."""
    import asyncio

    from redis.exceptions import RedisError

    from engine import store

    url, where = redis_address(settings)

    async def run() -> Any:
        redis = store.connect(url)
        try:
            return await act(redis)
        finally:
            await redis.aclose()

    try:
        return asyncio.run(run())
    except (OSError, RedisError) as exc:
        raise Fatal(f"Redis at {where} is unreachable: {exc}") from None


def command_events(args: argparse.Namespace) -> int:
    from engine import store
    from engine.audit import EventFilter, find_events

    settings, _ = load()
    if args.event_id:
        record = with_redis(settings, lambda redis: store.event_record(redis, args.event_id))
        if record is None:
            raise Fatal(f"no event {args.event_id} (unknown id, or older than HOOKRULES_EVENT_TTL)")
        print(json.dumps(record, indent=2))
        return 0
    since = time.time() - args.hours * 3600 if args.hours else 0.0
    wanted = EventFilter(args.source, args.rule, args.entity, args.status, since, float("inf"), args.limit, args.outcome)
    found = with_redis(settings, lambda redis: find_events(redis, wanted))
    for event in found:
        moment = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event["received_at"]))
        actions = " ".join(f"{k}={v}" for k, v in event["actions"].items())
        print(f"{moment}  {event['id']}  {event['source']} {event['type']} {event['entity']}  {event['status']}"
              f"  matched={','.join(event['matched']) or '-'}  {actions}")
    print(f"{len(found)} event(s)")
    return 0


def command_status(args: argparse.Namespace) -> int:
    from engine.health import health_report
    from engine.reload import RulesReloader

    settings = load_config()
    try:
        ruleset, unread = load_rules(settings), None
    except Fatal as exc:  # the service's state is in Redis: say what can be said without the rules
        ruleset, unread = Ruleset((), "-", settings.targets), str(exc).splitlines()[-1].strip()
    if not settings.redis_url:
        # `up`'s own server: its settings are up's, not this shell's, whose warnings (a source
        # without a secret, say) would not be the service's.
        settings = replace(settings, warnings=())
    rules = RulesReloader(settings.rules_dir, settings.targets, ruleset)
    status, report = with_redis(settings, lambda redis: health_report(redis, rules, settings, time.time()))
    worker = report.get("worker") or {}
    queue = report.get("queue") or {}
    beat = f"heartbeat {worker['heartbeat_age_s']} s ago" if worker.get("heartbeat_age_s") is not None else "no heartbeat"
    waited = queue.get("oldest_wait_s")
    print(f"status     {report['status']}")
    print(f"redis      {'reachable' if report['redis']['reachable'] else 'UNREACHABLE'}")
    print(f"worker     {beat}, rules {worker.get('ruleset_version') or '-'}")
    print(f"queue      {queue.get('depth', '-')} job(s)" + (f", oldest due waited {waited:.0f} s" if waited is not None else ", none due"))
    print(f"rules      {report['ruleset']['rules']} rule(s), version {report['ruleset']['version']}" if unread is None
          else f"rules      not read here: {unread}")
    print(f"dead       {report.get('dead_letters', '-')} dead letter(s)")
    for problem in report["problems"]:
        print(f"PROBLEM    {problem}")
    for warning in report["warnings"]:
        print(f"warning    {warning}")
    return 0 if status == 200 else 1


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
