"""Reading the rules directory: every file, every rule, every problem at once.

A rule file holds one rule, or `rules:` followed by a list of them. Every problem is reported
as `file:line: rule 'id': reason`, all of them at once, so one run of `hookrules check` (or one
failed start) shows everything to fix. A ruleset with one problem is refused whole: a ruleset
with a rule silently missing is worse than a loud refusal.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from engine import yamlfile
from engine.config import Targets
from engine.rule_syntax import parse_rule
from engine.rules import Rule, RuleProblems, Ruleset


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
    rules = [rule for item in items if (rule := parse_rule(item, file, problems))]
    return rules, problems


def rule_files(directory: Path) -> list[Path]:
    """Every *.yaml / *.yml file under `directory`, but none under a hidden name: a Kubernetes
    ConfigMap mounted as the rules directory also holds the kubelet's `..data` and
    `..<timestamp>` directories, which would load each file again; editors' swap files are
    hidden too."""
    return sorted(p for p in directory.glob("**/*")
                  if p.suffix in (".yaml", ".yml") and not _hidden(p.relative_to(directory)) and p.is_file())


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def load_ruleset(directory: Path, targets: Targets) -> Ruleset:
    """Every rule in `directory`. Raises RuleProblems listing every problem, if there is any:
    a ruleset with a rule missing is worse than a loud refusal to start."""
    if directory.is_file():
        raise RuleProblems([f"{directory}: a file, not a rules directory: give the directory that holds the rule "
                            f"files (to see what the rules do with an event body, use `hookrules try {directory}`)"])
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
