"""Rule edits picked up while running, in the API and in every worker.

Each process looks at the rules directory every few seconds (file names, sizes and modification
times: cheap). When something changed it loads the whole directory again. A good edit replaces
the ruleset at once; a broken one is refused: the last good ruleset keeps running, and the
problems are kept here for /health and the logs until the files are fixed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path
from typing import Any

from engine.config import Targets
from engine.rule_files import load_ruleset, rule_files
from engine.rule_names import rule_warnings
from engine.rules import RuleProblems, Ruleset

log = logging.getLogger("hookrules.rules")


def fingerprint(directory: Path) -> str:
    digest = hashlib.sha256()
    try:
        for path in rule_files(directory):
            stat = path.stat()
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    except OSError as exc:  # the directory went away: a change too, and load_ruleset says what
        digest.update(str(exc).encode())
    return digest.hexdigest()


class RulesReloader:
    """Holds the ruleset in use and replaces it when the files change and still load."""

    def __init__(self, directory: Path, targets: Targets, ruleset: Ruleset) -> None:
        self.directory = directory
        self.targets = targets
        self.ruleset = ruleset
        self.errors: tuple[str, ...] = ()  # problems of the newest edit, () when it is in use
        self._seen = fingerprint(directory)
        self._warned: tuple[Any, list[str]] = (None, [])

    def warnings(self, source_names: frozenset[str], allow_hosts: tuple[str, ...]) -> list[str]:
        """rule_warnings of the running rules, worked out once per version: /ready asks for
        them on every call, and a probe calls often."""
        key = (self.ruleset.version, source_names, allow_hosts)
        if self._warned[0] != key:
            self._warned = (key, rule_warnings(self.ruleset.rules, source_names, allow_hosts))
        return list(self._warned[1])

    def poll(self) -> bool:
        """Look once; True when the files changed since the last look."""
        seen = fingerprint(self.directory)
        if seen == self._seen:
            return False
        self._seen = seen
        try:
            ruleset = load_ruleset(self.directory, self.targets)
        except RuleProblems as exc:
            self.errors = tuple(exc.problems)
            log.error("rule edit refused; still running version %s. %d problem(s):\n  %s",
                      self.ruleset.version, len(exc.problems), "\n  ".join(exc.problems))
            return True
        if ruleset.version != self.ruleset.version:
            log.info("rules reloaded: version %s, %d rule(s) (was %s)", ruleset.version, len(ruleset.rules), self.ruleset.version)
        elif self.errors:  # put back as it was: say so, or the last word in the log stays the refusal
            log.info("the rule files load again, as the running version %s (%d rule(s))", ruleset.version, len(ruleset.rules))
        self.ruleset, self.errors = ruleset, ()
        return True

    async def watch(self, interval_s: float) -> None:
        """Poll forever; reading and compiling files happens in a thread, off the event loop."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await asyncio.to_thread(self.poll)
            except Exception:  # never let a surprise stop the watching
                log.exception("looking at the rules directory failed")
