"""Rule files: read, check and compile every rule in the rules directory.

A rule file holds one rule, or `rules:` followed by a list of them. Every problem is reported
as `file:line: rule 'id': reason`, all of them at once, so one run of `hookrules check` (or
one failed start) shows everything to fix.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import yamlfile
from engine.config import Targets
from engine.actions import ActionSpec
from engine.connectors import CATALOG
from engine.logic import Condition, LogicError, compile_condition
from engine.templates import TemplateError, compile_tree

RULE_KEYS = {"id", "description", "on", "when", "then", "mode"}
MODES = ("on", "shadow", "off")
_RULE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class ActionTemplate:
    spec: ActionSpec
    args: dict[str, Any]  # compiled templates inside (see templates.compile_tree)


@dataclass(frozen=True)
class Rule:
    id: str
    description: str
    sources: tuple[str, ...]  # globs
    events: tuple[str, ...]  # globs
    condition: Condition | None  # None: every event that passes `on` matches
    actions: tuple[ActionTemplate, ...]
    mode: str
    file: str
    line: int

    def listens_to(self, source: str, event_type: str) -> bool:
        return any(fnmatch.fnmatchcase(source, s) for s in self.sources) and any(
            fnmatch.fnmatchcase(event_type, e) for e in self.events
        )


@dataclass(frozen=True)
class Ruleset:
    rules: tuple[Rule, ...]
    version: str
    targets: Targets
    files: tuple[str, ...] = field(default_factory=tuple)


class RuleProblems(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _globs(value: Any, what: str) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(item, str) and item for item in items):
        raise ValueError(f"on.{what} must be a name or a list of names (globs such as 'milestone.*' work)")
    return tuple(items)


def _parse_on(on: Any, where: str, problems: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The source and event globs of `on`; problems are appended, prefixed with `where`."""
    if not isinstance(on, dict) or "source" not in on or "event" not in on:
        problems.append(f"{where}: 'on' needs a source and an event, e.g. on: {{source: sdp, event: 'milestone.*'}}")
        return (), ()
    for key in sorted(set(on) - {"source", "event"}, key=str):
        problems.append(f"{where}: unknown key 'on.{key}'; 'on' has source and event")
    try:
        return _globs(on["source"], "source"), _globs(on["event"], "event")
    except ValueError as exc:
        problems.append(f"{where}: {exc}")
        return (), ()


def _parse_actions(raw: Any, file: str, rule_id: str, line: int, problems: list[str]) -> tuple[ActionTemplate, ...]:
    if not isinstance(raw, list) or not raw:
        problems.append(
            f"{file}:{line}: rule {rule_id!r}: 'then' must be a list of actions, e.g. '- sdp.milestones.update: {{...}}'"
        )
        return ()
    actions = []
    for n, item in enumerate(raw, start=1):
        prefix = f"{file}:{yamlfile.line_of(item, line)}: rule {rule_id!r}: action {n}"
        if not isinstance(item, dict) or len(item) != 1:
            problems.append(f"{prefix}: write each action as one 'name: {{arguments}}' mapping")
            continue
        ((name, args),) = item.items()
        spec = CATALOG.get(name)
        if spec is None:
            problems.append(f"{prefix}: unknown action {name!r}; known actions: {', '.join(sorted(CATALOG))}")
            continue
        args = yamlfile.plain(args) if args is not None else {}
        if not isinstance(args, dict):
            problems.append(f"{prefix} ({name}): the arguments must be a mapping")
            continue
        arg_problems = spec.problems(args)
        if arg_problems:
            problems.extend(f"{prefix} ({name}): {p}" for p in arg_problems)
            continue
        try:
            actions.append(ActionTemplate(spec, compile_tree(args)))
        except TemplateError as exc:
            problems.append(f"{prefix} ({name}): template does not compile: {exc}")
    return tuple(actions)


def _parse_rule(raw: Any, file: str, problems: list[str]) -> Rule | None:
    line = yamlfile.line_of(raw)
    if not isinstance(raw, dict):
        problems.append(f"{file}:{line}: a rule must be a mapping with id, on, when and then")
        return None
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not _RULE_ID.match(rule_id):
        problems.append(f"{file}:{line}: a rule needs an 'id' of letters, digits, '.', '-' or '_', got {rule_id!r}")
        return None
    before = len(problems)

    def at(key: str) -> str:
        return f"{file}:{raw.line_of(key)}: rule {rule_id!r}"

    for key in sorted(set(raw) - RULE_KEYS, key=str):
        problems.append(f"{at(key)}: unknown key {key!r}; a rule has {', '.join(sorted(RULE_KEYS))}")
    mode = raw.get("mode", "on")
    if mode not in MODES:
        problems.append(f"{at('mode')}: mode must be one of on, shadow, off; got {mode!r}")
    sources, events = _parse_on(raw.get("on"), at("on"), problems)
    condition = None
    if raw.get("when") is not None:
        try:
            condition = compile_condition(yamlfile.plain(raw["when"]))
        except LogicError as exc:
            problems.append(f"{at('when')}: 'when' is not valid JSONLogic: {exc}")
    actions = _parse_actions(raw.get("then"), file, rule_id, raw.line_of("then"), problems)
    if len(problems) > before:
        return None
    return Rule(
        id=rule_id,
        description=str(raw.get("description") or ""),
        sources=sources,
        events=events,
        condition=condition,
        actions=actions,
        mode=mode,
        file=file,
        line=line,
    )


def parse_file(text: str, file: str) -> tuple[list[Rule], list[str]]:
    """The rules in one file's text, and the problems found in it."""
    try:
        raw = yamlfile.load(text)
    except yamlfile.YamlError as exc:
        return [], [f"{file}:{exc.line}: {exc.reason}"]
    if raw is None:
        return [], []
    if isinstance(raw, dict) and "rules" in raw and "id" not in raw:
        items = raw["rules"]
        if not isinstance(items, list):
            return [], [f"{file}:{raw.line_of('rules')}: 'rules' must be a list of rules"]
    else:
        items = [raw]
    problems: list[str] = []
    rules = [rule for item in items if (rule := _parse_rule(item, file, problems))]
    return rules, problems


def rule_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("**/*") if p.suffix in (".yaml", ".yml") and p.is_file())


def load_ruleset(directory: Path, targets: Targets) -> Ruleset:
    """Every rule in `directory`. Raises RuleProblems listing every problem, if there is any:
    a ruleset with a rule missing is worse than a loud refusal to start."""
    if not directory.is_dir():
        raise RuleProblems([f"{directory}: the rules directory does not exist (set HOOKRULES_RULES_DIR)"])
    digest = hashlib.sha256()
    rules: list[Rule] = []
    problems: list[str] = []
    files = rule_files(directory)
    for path in files:
        text = path.read_text(encoding="utf-8")
        digest.update(str(path.relative_to(directory)).encode() + b"\0" + text.encode() + b"\0")
        file_rules, file_problems = parse_file(text, str(path))
        rules.extend(file_rules)
        problems.extend(file_problems)
    seen: dict[str, Rule] = {}
    for rule in rules:
        if rule.id in seen:
            first = seen[rule.id]
            problems.append(f"{rule.file}:{rule.line}: rule id {rule.id!r} is already used at {first.file}:{first.line}")
        seen[rule.id] = rule
    if problems:
        raise RuleProblems(problems)
    return Ruleset(
        rules=tuple(rules),
        version=digest.hexdigest()[:12],
        targets=targets,
        files=tuple(str(p) for p in files),
    )
