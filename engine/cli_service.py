"""`hookrules status`, `events` and `dead`: the commands that read a running service's state
from Redis (REDIS_URL, else the embedded server of a `hookrules up` run from this directory)."""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from typing import Any

from engine.cli_load import Fatal, load, load_config, load_rules
from engine.config import Settings
from engine.rules import Ruleset


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
    wanted = EventFilter(source=args.source, rule=args.rule, entity=args.entity, status=args.status, outcome=args.outcome,
                         since=since, limit=args.limit)
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
