"""What every `hookrules` command reads first, the settings and the rules, and how it stops
when either is wrong: a Fatal with a plain message and a non-zero exit, before anything starts."""

from __future__ import annotations

from pathlib import Path

from engine.config import ConfigError, Settings, load_settings
from engine.rule_files import load_ruleset
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
