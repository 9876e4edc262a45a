"""What a loaded rule is: the compiled form every part of the engine works with.

Reading rule files is in rule_files.py, the syntax of one rule in rule_syntax.py.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

from engine.actions import ActionSpec
from engine.config import Targets
from engine.explain import Part
from engine.logic import Condition
from engine.models import Event


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
    # Enrichment: named reads done before `when`, their replies under `fetched.<name>`.
    fetches: tuple[tuple[str, ActionTemplate], ...] = ()
    # A scheduled rule: a cron expression and the list it scans each time.
    schedule: str | None = None
    scan: ActionTemplate | None = None
    examples: tuple[dict[str, Any], ...] = ()  # see examples.py; each has its "line"
    echoes: bool = False  # also fire on the echo of hookrules' own write (see echo.py)
    explained: Part | None = None  # the condition's parts, compiled, for `because` (explain.py)

    def listens_to(self, event: Event) -> bool:
        if self.schedule is not None:
            # Its own scan's items only; other rules may listen to <kind>.scanned by glob.
            return (event.payload.get("scan") or {}).get("rule") == self.id and event.type in self.events
        return any(fnmatch.fnmatchcase(event.source, s) for s in self.sources) and any(
            fnmatch.fnmatchcase(event.type, e) for e in self.events
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
