"""The image deploy/Dockerfile builds (hadolint's check is in test_deploy_validators.py): two
stages, the final one small and run by a numeric non-root user, with its HEALTHCHECK; and a
build context (.dockerignore) that holds everything the Dockerfile copies and nothing secret.
"""

from __future__ import annotations

import json
import os
import re
import shlex

from conftest import ROOT
from deploy_files import dockerfile_env, stages


def dockerignore_excludes(path: str) -> bool:
    """Docker's .dockerignore rule: the last pattern matching the path or a parent decides."""
    excluded = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!")).lstrip("/")
        regex = re.compile(re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
                           .replace(r"\*", "[^/]*").replace(r"\?", "[^/]") + r"\Z")
        parts = path.split("/")
        if any(regex.match("/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            excluded = not negated
    return excluded


def test_dockerfile_is_multi_stage_small_and_non_root() -> None:
    builder, final = stages()
    assert builder[0][1].endswith(" AS builder")
    assert final[0] == ("FROM", "python:3.11-slim")
    copies = [args for instruction, args in final if instruction == "COPY"]
    assert "--from=builder /opt/venv /opt/venv" in copies  # the final stage gets the venv, no build tools
    assert not any(instruction == "RUN" and "pip" in args for instruction, args in final)
    user = next(args for instruction, args in final if instruction == "USER")
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user), "a numeric, non-root user"
    env = dockerfile_env()
    assert env["HOOKRULES_HOST"] == "0.0.0.0"
    expose = next(args for instruction, args in final if instruction == "EXPOSE")
    assert expose == env["HOOKRULES_PORT"]
    healthcheck = next(args for instruction, args in final if instruction == "HEALTHCHECK")
    command = json.loads(healthcheck.split(" CMD ", 1)[1])
    assert command == ["python", "/opt/hookrules/healthcheck.py"]
    assert f"deploy/healthcheck.py {command[1]}" in copies


def test_build_context_has_what_the_dockerfile_copies_and_no_secrets() -> None:
    for stage in stages():
        for instruction, args in stage:
            if instruction != "COPY" or args.startswith("--from"):
                continue
            for source in shlex.split(args)[:-1]:
                path = ROOT / source
                assert path.exists(), source
                files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
                for file in files:
                    assert not dockerignore_excludes(str(file.relative_to(ROOT))), f"{file} is left out of the build context"
    # What pip needs to build (pyproject's readme, the dashboard's templates) is there too.
    for needed in ("README.md", "engine/ui_templates/base.html", "workers/settings.py"):
        assert not dockerignore_excludes(needed), needed
    for secret in ("deploy/hookrules.env", ".venv/bin/python", ".git/config", "tests/conftest.py", ".hookrules/admin-token"):
        assert dockerignore_excludes(secret), secret
