"""What a loaded rule is: the compiled form every part of the engine works with.

Reading rule files is in rule_files.py, the syntax of one rule in rule_syntax.py.
"""

from __future__ import annotations

import fnmatch
import functools
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
        """Whether `on` takes in this event. Ruleset.listening finds the same rules, faster."""
        if self.schedule is not None:
            # Its own scan's items only; other rules may listen to <kind>.scanned by glob.
            return scanned_by(event) == self.id and event.type in self.events
        return self.hears(event.source, event.type)

    def templates(self) -> list[tuple[str, ActionTemplate]]:
        """Its actions and fetches, each with the rule-file key it is written under."""
        return [("then", action) for action in self.actions] + [("fetch", action) for _, action in self.fetches]

    def hears(self, source: str, event_type: str) -> bool:
        """Whether `on.source` and `on.event` take in this source and type (not for scheduled rules)."""
        return any(fnmatch.fnmatchcase(source, s) for s in self.sources) and any(
            fnmatch.fnmatchcase(event_type, e) for e in self.events
        )


def scanned_by(event: Event) -> str | None:
    """The id of the scheduled rule whose scan brought this event, if one did."""
    scan = event.payload.get("scan")
    # A webhook's body is the payload too, and its sender may put anything under "scan".
    rule_id = scan.get("rule") if isinstance(scan, dict) else None
    return rule_id if isinstance(rule_id, str) else None


# How many (source, event type) pairs an index remembers the glob matches of. Senders choose
# the event type, so the memo must be bounded; a pair it forgot costs one pass over the globs.
MEMO_PAIRS = 4096
_GLOB_CHARACTERS = frozenset("*?[")  # the only characters fnmatch gives a meaning


def _is_plain(pattern: str) -> bool:
    return _GLOB_CHARACTERS.isdisjoint(pattern)


def _positions(
    rules: tuple[Rule, ...],
    plain: dict[tuple[str, str], tuple[int, ...]],
    globbed: tuple[int, ...],
    source: str,
    event_type: str,
) -> tuple[int, ...]:
    """The positions of the unscheduled rules that hear (source, event_type), in order."""
    matched = [position for position in globbed if rules[position].hears(source, event_type)]
    return tuple(sorted(plain.get((source, event_type), ()) + tuple(matched)))


class RuleIndex:
    """The rules that listen to an event, found with a dict lookup instead of asking every rule:
    with a thousand rules loaded, an event pays for the few that listen to it, not for all.

    Rules whose `on` names plain sources and events sit in buckets by (source, event type);
    the matches of the rules with globs are worked out once per pair and remembered; scheduled
    rules are found by the id their scan puts in the payload. The answer is in the ruleset's
    order and is exactly the rules whose listens_to(event) is true.
    """

    def __init__(self, rules: tuple[Rule, ...]) -> None:
        plain: dict[tuple[str, str], list[int]] = {}
        globbed: list[int] = []
        scheduled: dict[str, list[int]] = {}
        for position, rule in enumerate(rules):
            if rule.schedule is not None:
                scheduled.setdefault(rule.id, []).append(position)
            elif not all(_is_plain(pattern) for pattern in rule.sources + rule.events):
                globbed.append(position)
            else:
                # A set: `on: {source: [sdp, sdp]}` must not list the rule twice.
                for pair in {(source, event_type) for source in rule.sources for event_type in rule.events}:
                    plain.setdefault(pair, []).append(position)
        self._rules = rules
        self._scheduled = {rule_id: tuple(found) for rule_id, found in scheduled.items()}
        # functools.lru_cache is bounded and safe to share between threads; a partial over
        # the index's own data, not a bound method, so the memo holds no reference back to it.
        frozen = {pair: tuple(found) for pair, found in plain.items()}
        self._heard_by = functools.lru_cache(maxsize=MEMO_PAIRS)(
            functools.partial(_positions, rules, frozen, tuple(globbed))
        )

    def listening(self, event: Event) -> tuple[Rule, ...]:
        positions = self._heard_by(event.source, event.type)
        if self._scheduled and (rule_id := scanned_by(event)) is not None:
            own = [p for p in self._scheduled.get(rule_id, ()) if event.type in self._rules[p].events]
            positions = tuple(sorted(positions + tuple(own)))
        return tuple(self._rules[position] for position in positions)


@dataclass(frozen=True)
class Ruleset:
    rules: tuple[Rule, ...]
    version: str
    targets: Targets
    files: tuple[str, ...] = field(default_factory=tuple)
    # Follows from `rules`, built with the ruleset (so at load, not on the first event).
    index: RuleIndex = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", RuleIndex(self.rules))  # frozen: the one way to set it

    def listening(self, event: Event) -> tuple[Rule, ...]:
        """The rules whose listens_to(event) is true, in the ruleset's order (file order)."""
        return self.index.listening(event)


class RuleProblems(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems

