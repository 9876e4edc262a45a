"""Sections 3 and 4, in process (no network, no Redis): decide() per event with 10, 1,000 and
10,000 rules loaded from generated rule files, and conditions evaluated per second through
engine.logic, custom operators included."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import datalogic_py

import engine.logic
import payloads
from engine.config import Connector, Targets
from engine.decide import decide, rule_context
from engine.intake import read_request
from engine.logic import compile_condition
from engine.models import Event
from engine.operators import CUSTOM_OPERATORS, rewrite
from engine.rule_files import load_ruleset
from engine.sources import Source
from report import Goal, Summary, num, print_table

SCALING_TARGET = 2.0
TARGETS = Targets(sdp=Connector("sdp", base_url="http://127.0.0.1:1/app/bench", token="t"))
SOURCE = Source("sdp", shape="sdp", default_event="{kind}.updated")


def rate(fn: Callable[[int], object], budget_s: float, max_calls: int, min_calls: int = 3) -> float:
    """Calls per second of fn(i), for about budget_s and at most max_calls; at least min_calls."""
    calls, start = 0, time.perf_counter()
    while calls < max_calls and (calls < min_calls or time.perf_counter() - start < budget_s):
        fn(calls)
        calls += 1
    return calls / (time.perf_counter() - start)


def events(count: int = 64) -> list[tuple[Event, dict]]:
    """Bench webhooks as the worker sees them: the event, and the milestone as it stood before
    (the same milestone with an earlier projected end)."""
    found = []
    for n in range(count):
        milestone = str(9_100_000_000_000 + n)
        before = read_request(SOURCE, {"content-type": "application/json"}, payloads.body(milestone, payloads.BASE_PE), 0.0)
        event = read_request(SOURCE, {"content-type": "application/json"},
                             payloads.body(milestone, payloads.BASE_PE + 60_000 * (n + 1)), time.time())
        found.append((event, before.entity.data))
    return found


def load_rules(rules: list[dict], where: Path) -> tuple[object, float]:
    payloads.write_rules(where, rules)
    start = time.perf_counter()
    ruleset = load_ruleset(where, TARGETS)
    return ruleset, time.perf_counter() - start


def run_rules(args: argparse.Namespace, summary: Summary) -> None:
    print("\n## 3. Rule scaling: decide() per event, rules spread over 100 (source, event) pairs "
          "(~1% listen to the event), and the worst case with every rule listening")
    sample = events()
    now = time.time()
    rows, cost = [], {}
    with tempfile.TemporaryDirectory(prefix="hookrules-bench-rules-") as tmp:
        for count in args.rule_counts:
            for listening in (False, True) if count <= args.worst_case_max else (False,):
                ruleset, load_s = load_rules(payloads.spread_rules(count, all_listening=listening),
                                             Path(tmp) / f"{count}-{listening}")
                check = decide(*sample[0], ruleset, now)
                matched = sum(r.matched for r in check.results)
                per_s = rate(lambda i: decide(*sample[i % len(sample)], ruleset, now), args.budget_s, 200_000)
                cost[(count, listening)] = 1e6 / per_s
                rows.append([num(count), "all" if listening else "~1%", str(len(check.results)), str(matched),
                             f"{1e6 / per_s:,.1f}", num(per_s), f"{load_s:.2f}"])
    print_table("", ["rules loaded", "listening", "rules asked", "matched", "µs per event", "events/s",
                     "load s (files to Ruleset)"], rows)
    if any(count > args.worst_case_max for count in args.rule_counts):
        print(f"\n(every rule listening: measured up to {num(args.worst_case_max)} rules in this mode)")
    if (10, False) in cost and (1000, False) in cost:
        ratio = cost[(1000, False)] / cost[(10, False)]
        goal = summary.add(Goal("rules", "decide() cost, 1,000 rules ÷ 10 rules (~1% listening)", ratio,
                                SCALING_TARGET, "x", False))
        print_table("Target", ["figure", "value", "target", "value/target", "met?"], [goal.row()])


CONDITIONS = {
    "standard JSONLogic (and, ==, !=, <, var)": {"and": [
        {"==": [{"var": "milestone.status.name"}, "Open"]},
        {"!=": [{"var": "milestone.priority.name"}, "High"]},
        {"<": [{"var": "milestone.scheduled_end_time.value"}, {"var": "milestone.projected_end.value"}]}]},
    "bench-match (changed, after, !=, !=)": payloads.MATCHING_WHEN,
    "custom only (changed_to, days_between, before)": {"or": [
        {"changed_to": ["milestone.status.name", "Closed"]},
        {">": [{"days_between": [{"var": "milestone.scheduled_end_time"}, {"var": "milestone.projected_end"}]}, 365]},
        {"before": [{"var": "milestone.projected_end"}, {"var": "milestone.scheduled_start_time"}]}]},
}


def run_logic(args: argparse.Namespace, summary: Summary) -> None:
    handle_fn = getattr(engine.logic, "data_handle", None)
    print("\n## 4. Rule evaluations per second through engine.logic (Condition.evaluate on the rule context: "
          "event, milestone, previous, changes, payload)")
    event, previous = events(1)[0]
    context = rule_context(event, previous, time.time())
    raw_engine = datalogic_py.Engine(custom_operators=CUSTOM_OPERATORS)
    raw_handle = datalogic_py.DataHandle(json.dumps(context))
    handle = handle_fn(context) if handle_fn else None
    rows = []
    for label, source in CONDITIONS.items():
        condition = compile_condition(source)
        raw = raw_engine.compile(json.dumps(rewrite(source)))
        dict_rate = rate(lambda i: condition.evaluate(context), args.budget_s, 2_000_000)
        handle_rate = rate(lambda i: condition.evaluate(handle), args.budget_s, 5_000_000) if handle is not None else 0.0
        raw_dict = rate(lambda i: raw.evaluate(context), args.budget_s, 2_000_000)
        raw_data = rate(lambda i: raw.evaluate_data(raw_handle), args.budget_s, 5_000_000)
        rows.append([label, num(dict_rate), num(handle_rate) if handle is not None else "n/a", num(raw_dict), num(raw_data)])
    print_table("", ["condition", "engine.logic, dict", "engine.logic, data_handle", "datalogic-py, dict",
                     "datalogic-py, DataHandle"], rows)
    if handle_fn is not None:
        build = rate(lambda i: handle_fn(context), args.budget_s, 200_000)
        print(f"\nengine.logic.data_handle(context): {1e6 / build:,.1f} µs to build, once per event")
    else:
        print("\nengine.logic has no data_handle yet: that column is n/a")
    print("datalogic-py columns: the same rewritten rule on datalogic-py directly (reference, not the engine's path)")
    summary.notes.append("logic evals/s (bench-match, dict): " + rows[1][1])
