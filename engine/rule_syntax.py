"""The syntax of one rule: every key checked, every problem named with its file and line.

    id: close-finished-milestone            letters, digits, . - _
    description: ...
    on: {source: sdp, event: "milestone.*", echoes: false}  or  on: {schedule: "*/15 * * * *", fetch: {<list action>: {...}}}
    fetch: {name: {<read action>: {...}}}     optional; replies under fetched.<name>
    when: <JSONLogic>                         optional
    then: [{<action>: {...}}, ...]
    mode: on | shadow | off
    examples: [...]                           optional; see examples.py
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from croniter import croniter

from engine import yamlfile
from engine.connectors import CATALOG
from engine.examples import example_problems
from engine.explain import parts_of
from engine.logic import Condition, LogicError, compile_condition
from engine.rule_names import var_paths, wrong_fixed_keys
from engine.rules import ActionTemplate, Rule
from engine.templates import TemplateError, compile_tree, known_globals, paths_in, variables_in

RULE_KEYS = {"id", "description", "on", "fetch", "when", "then", "mode", "examples"}
MODES = ("on", "shadow", "off")
ROOTS = {"event", "entity", "payload", "previous", "changes", "now", "fetched"}
_RULE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,39}$")
_GLOB = re.compile(r"[*?\[]")


class Problems:
    """Collects `file:line: rule 'id': reason` lines for one rule."""

    def __init__(self, sink: list[str], file: str, rule_id: str, label: str | None = None, start: int | None = None) -> None:
        self.sink, self.file, self.rule_id = sink, file, rule_id
        self.start = len(sink) if start is None else start  # problems before it are not this rule's
        self.label = label or f"rule {rule_id!r}"

    def add(self, line: int, reason: str) -> None:
        self.sink.append(f"{self.file}:{line}: {self.label}: {reason}")

    @property
    def any(self) -> bool:
        return len(self.sink) > self.start


def _globs(value: Any, what: str) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(item, str) and item for item in items):
        raise ValueError(f"on.{what} must be a name or a list of names (globs such as 'milestone.*' work)")
    return tuple(items)


def parse_action(item: Any, what: str, line: int, problems: Problems, *, reads_only: bool = False) -> ActionTemplate | None:
    """One `name: {arguments}` mapping."""
    line = yamlfile.line_of(item, line)
    if not isinstance(item, dict) or len(item) != 1:
        problems.add(line, f"{what}: write it as one 'name: {{arguments}}' mapping")
        return None
    ((name, args),) = item.items()
    spec = CATALOG.get(name)
    if spec is None:
        problems.add(line, f"{what}: unknown action {name!r}; known actions: {', '.join(sorted(CATALOG))}")
        return None
    what = f"{what} ({name})"
    args = yamlfile.plain(args) if args is not None else {}
    if not isinstance(args, dict):
        problems.add(line, f"{what}: the arguments must be a mapping")
        return None
    if reads_only and (not spec.reads or (name == "http.request" and str(args.get("method", "")).upper() != "GET")):
        reads = sorted(n for n, s in CATALOG.items() if s.reads)
        problems.add(line, f"{what}: a fetch may only read: one of {', '.join(reads)} (http.request with method GET)")
        return None
    found = spec.problems(args)
    for problem in found:
        problems.add(line, f"{what}: {problem}")
    if found:
        return None
    try:
        return ActionTemplate(spec, compile_tree(args))
    except TemplateError as exc:
        problems.add(line, f"{what}: template does not compile: {exc}")
        return None


def parse_on(raw: dict, problems: Problems) -> tuple[tuple[str, ...], tuple[str, ...], str | None, ActionTemplate | None]:
    """(source globs, event globs, schedule, scan) from `on`."""
    on, line = raw.get("on"), raw.line_of("on")
    if isinstance(on, dict) and "schedule" in on:
        return _parse_schedule(on, line, problems)
    if not isinstance(on, dict) or "source" not in on or "event" not in on:
        problems.add(line, "'on' needs a source and an event, e.g. on: {source: sdp, event: 'milestone.*'}, "
                           "or a schedule, e.g. on: {schedule: '0 * * * *', fetch: {sdp.milestones.list: {project_id: '1'}}}")
        return (), (), None, None
    for key in sorted(set(on) - {"source", "event", "echoes"}, key=str):
        problems.add(line, f"unknown key 'on.{key}'; 'on' has source, event and echoes (or schedule and fetch)")
    if not isinstance(on.get("echoes", False), bool):
        problems.add(line, "on.echoes must be true or false")
    try:
        return _globs(on["source"], "source"), _globs(on["event"], "event"), None, None
    except ValueError as exc:
        problems.add(line, str(exc))
        return (), (), None, None


def _parse_schedule(on: dict, line: int, problems: Problems) -> tuple[tuple[str, ...], tuple[str, ...], str | None, ActionTemplate | None]:
    schedule = on.get("schedule")
    for key in sorted(set(on) - {"schedule", "fetch"}, key=str):
        problems.add(line, f"unknown key 'on.{key}'; a scheduled rule has on.schedule and on.fetch")
    if not isinstance(schedule, str) or not croniter.is_valid(schedule):
        problems.add(line, f"on.schedule must be a cron expression such as '*/15 * * * *' (minute hour day month weekday), got {schedule!r}")
    scan = parse_action(on.get("fetch"), "on.fetch", line, problems, reads_only=True) if "fetch" in on else None
    if "fetch" not in on:
        problems.add(line, "a scheduled rule needs on.fetch: the list to look at, e.g. {sdp.milestones.list: {project_id: '1'}}")
    if scan is None:
        return (), (), None, None
    if scan.spec.items is None:
        lists = sorted(n for n, s in CATALOG.items() if s.items)
        problems.add(line, f"on.fetch must be a list operation ({', '.join(lists)}), got {scan.spec.name}")
        return (), (), None, None
    kind = scan.spec.items[0]
    return (scan.spec.name.split(".")[0],), (f"{kind}.scanned",), schedule, scan


def parse_fetches(raw: dict, problems: Problems) -> tuple[tuple[str, ActionTemplate], ...]:
    fetch = raw.get("fetch")
    if fetch is None:
        return ()
    line = raw.line_of("fetch")
    if not isinstance(fetch, dict) or not fetch:
        problems.add(line, "'fetch' must map names to reads, e.g. fetch: {project: {zoho.projects.get: {project_id: '...'}}}")
        return ()
    fetches = []
    for name, item in fetch.items():
        if not isinstance(name, str) or not _NAME.match(name):
            problems.add(fetch.line_of(name), f"fetch name {name!r} must be lower-case letters, digits and _")
        elif (action := parse_action(item, f"fetch {name}", fetch.line_of(name), problems, reads_only=True)) is not None:
            fetches.append((name, action))
    return tuple(fetches)


def parse_actions(raw: dict, problems: Problems) -> tuple[ActionTemplate, ...]:
    then, line = raw.get("then"), raw.line_of("then")
    if not isinstance(then, list) or not then:
        problems.add(line, "'then' must be a list of actions, e.g. '- sdp.milestones.update: {...}'")
        return ()
    actions = [parse_action(item, f"action {n}", line, problems) for n, item in enumerate(then, start=1)]
    return tuple(action for action in actions if action is not None)


def check_names(rule: Rule, raw: dict, problems: Problems) -> None:
    """A misspelt name (`milestne.status`, `event.typ`) is a load error, not an action that
    fails later."""
    if rule.condition is not None:
        for problem in wrong_fixed_keys(var_paths(rule.condition.source)):
            problems.add(raw.line_of("when"), f"'when' reads {problem}")
    for key, action in rule.templates():
        for problem in wrong_fixed_keys(paths_in(action.args)):
            problems.add(raw.line_of(key), f"{action.spec.name}: a template reads {problem}")
    kinds = {e.split(".")[0] for e in rule.events}
    if any(_GLOB.search(kind) for kind in kinds):
        return  # the rule listens to any kind: any name may be the entity
    known = ROOTS | kinds
    if rule.condition is not None:
        for name in sorted({path[0] for path in var_paths(rule.condition.source)} - known):
            problems.add(raw.line_of("when"), f"'when' reads {name!r}, {unknown_name(name, kinds, known)}")
    for key, action in rule.templates():
        for name in sorted(variables_in(action.args) - known - known_globals()):
            problems.add(raw.line_of(key), f"{action.spec.name}: a template reads {name!r}, {unknown_name(name, kinds, known)}")


def unknown_name(name: str, kinds: set[str], known: set[str]) -> str:
    """Why a name is not there, and the nearest it may be. When `on.event` names the plural
    (`milestones.updated`) of what the rule reads (`milestone`), the event type is the slip."""
    if name + "s" in kinds:  # a plural kind is the usual slip: SDP and Zoho name kinds singular
        return (f"but this rule hears events of kind {name + 's'!r}, whose entity is under {name + 's'!r}; "
                f"if it is about {name}s, 'on.event' should be {name}.* (events are named after their kind)")
    near = difflib.get_close_matches(name, sorted(known), n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return f"which a rule never has{hint}; it can read: {', '.join(sorted(known))}"


def parse_condition(raw: dict, problems: Problems) -> Condition | None:
    if raw.get("when") is None:
        return None
    try:
        return compile_condition(yamlfile.plain(raw["when"]))
    except LogicError as exc:
        problems.add(line_at(raw["when"], exc.pointer, raw.line_of("when")), f"'when' is not valid JSONLogic: {exc}")
        return None


def line_at(value: Any, pointer: str | None, default: int) -> int:
    """The line of the part of a condition a JSON pointer (/and/1) names, as near as the file
    says: a problem is shown where it is written, not at `when:`."""
    line = yamlfile.line_of(value, default)
    for step in (pointer or "").strip("/").split("/") if pointer else []:
        if isinstance(value, dict) and step in value:
            line = value.line_of(step) if hasattr(value, "line_of") else line
            value = value[step]
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            break
        line = yamlfile.line_of(value, line)
    return line


def parse_rule(raw: Any, file: str, sink: list[str]) -> Rule | None:
    line = yamlfile.line_of(raw)
    if not isinstance(raw, dict):
        sink.append(f"{file}:{line}: a rule must be a mapping with id, on, when and then")
        return None
    rule_id = raw.get("id")
    start = len(sink)
    if not isinstance(rule_id, str) or not _RULE_ID.match(rule_id):
        sink.append(f"{file}:{line}: a rule needs an 'id' of letters, digits, '.', '-' or '_', starting with a letter "
                    f"or digit, at most 100 characters; got {rule_id!r}")
        # Go on checking the rest, so one run shows every problem; its lines name the rule by line.
        problems = Problems(sink, file, "", label=f"the rule at line {line}", start=start)
    else:
        problems = Problems(sink, file, rule_id)
    for key in sorted(set(raw) - RULE_KEYS, key=str):
        problems.add(raw.line_of(key), f"unknown key {key!r}; a rule has {', '.join(sorted(RULE_KEYS))}")
    mode = raw.get("mode", "on")
    if mode not in MODES:
        problems.add(raw.line_of("mode"), f"mode must be one of on, shadow, off; got {mode!r}")
    sources, events, schedule, scan = parse_on(raw, problems)
    condition = parse_condition(raw, problems)
    rule = Rule(
        id=rule_id, description=str(raw.get("description") or ""), sources=sources, events=events,
        condition=condition, actions=parse_actions(raw, problems), mode=mode, file=file, line=line,
        explained=parts_of(condition.source, condition) if condition is not None else None,
        fetches=parse_fetches(raw, problems), schedule=schedule, scan=scan,
        examples=tuple(yamlfile.with_lines(raw.get("examples") or [])),
        echoes=isinstance(raw.get("on"), dict) and raw["on"].get("echoes") is True,
    )
    if rule.events:  # names are judged against the kinds `on` names: not when `on` is broken
        check_names(rule, raw, problems)
    for problem_line, reason in example_problems(raw.get("examples"), raw.line_of("examples")):
        problems.add(problem_line, reason)
    return None if problems.any else rule
