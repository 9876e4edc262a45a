"""Jinja2 templates in action arguments: compiled at load, rendered in a sandbox.

Only strings written in rule files are templates. Values that come from an event are passed
in as data and are never rendered again, so a milestone titled "{{ 7*7 }}" stays that text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

# ImmutableSandboxedEnvironment: no attribute access to internals and no mutating the event
# from a template. StrictUndefined: a misspelt variable is an error, not an empty string that
# quietly sends a wrong request.
_ENV = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)


class TemplateError(Exception):
    """A template does not compile, or failed to render against an event."""


@dataclass(frozen=True)
class Template:
    text: str
    _compiled: jinja2.Template

    def render(self, context: dict[str, Any]) -> str:
        try:
            return self._compiled.render(context)
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"{self.text!r}: {exc.message}") from None
        except jinja2.TemplateError as exc:
            raise TemplateError(f"{self.text!r}: {exc}") from None
        except Exception as exc:  # a filter or test given the wrong type of value, say
            raise TemplateError(f"{self.text!r}: {type(exc).__name__}: {exc}") from None


def compile_template(text: str) -> Template:
    try:
        return Template(text, _ENV.from_string(text))
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{text!r}: {exc.message}") from None


def compile_tree(value: Any) -> Any:
    """Compile every string inside a nested structure of dicts and lists. Strings without
    `{{` or `{%` stay plain strings: there is nothing to render."""
    if isinstance(value, str):
        return compile_template(value) if ("{{" in value or "{%" in value) else value
    if isinstance(value, dict):
        return {key: compile_tree(item) for key, item in value.items()}
    if isinstance(value, list):
        return [compile_tree(item) for item in value]
    return value


def render_tree(value: Any, context: dict[str, Any]) -> Any:
    if isinstance(value, Template):
        return value.render(context)
    if isinstance(value, dict):
        return {key: render_tree(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [render_tree(item, context) for item in value]
    return value
