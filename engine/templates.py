"""Jinja2 templates in action arguments: compiled at load, rendered in a sandbox.

Only strings written in rule files are templates. Values that come from an event are passed
in as data and are never rendered again, so a milestone titled "{{ 7*7 }}" stays that text.
A string that is exactly one `{{ expression }}` gives the expression's value (a number, an
object); any other template gives text.
"""

from __future__ import annotations

import contextvars
import functools
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engine.dates import to_millis

MAX_OUTPUT = 65_536  # characters one template may render
MAX_RENDER_S = 0.5  # seconds one template may take
MAX_RANGE = 10_000  # items one range() may have
_DEADLINE: contextvars.ContextVar[float] = contextvars.ContextVar("template_deadline", default=float("inf"))


def _on_time() -> None:
    if time.monotonic() > _DEADLINE.get():
        raise SecurityError(f"the template takes longer than {MAX_RENDER_S:g} s")


def _bounded_range(*args: int) -> Iterator[int]:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise SecurityError(f"range() of {len(numbers)} items; at most {MAX_RANGE}")
    for n, number in enumerate(numbers):
        if n % 256 == 0:
            _on_time()
        yield number


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox (no underscore attributes, no mutating the event), with the
    costs a template can run up bounded: `*` and `**` cannot build huge values, range() is
    short and watched by the clock, and rendering stops at MAX_OUTPUT or MAX_RENDER_S."""

    intercepted_binops = frozenset(["*", "**"])

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, (int, float)) and abs(right) > 64:
            raise SecurityError("an exponent above 64")
        if operator == "*":
            for items, times in ((left, right), (right, left)):
                if isinstance(items, (str, list, tuple)) and isinstance(times, int) and len(items) * times > MAX_OUTPUT:
                    raise SecurityError(f"'*' would build more than {MAX_OUTPUT} items")
        return super().call_binop(context, operator, left, right)


# StrictUndefined: a misspelt variable is an error, not an empty string that quietly sends a
# wrong request.
_ENV = BoundedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)
_ENV.globals["range"] = _bounded_range


def _date(value: Any, format: str = "%Y-%m-%d %H:%M UTC") -> str:  # noqa: A002 (Jinja's argument name)
    """`{{ milestone.scheduled_end_time | date }}`: a time (an SDP date object, epoch
    milliseconds, a Zoho MM-DD-YYYY date) as UTC text; `date("%d %b %Y")` for another layout."""
    millis = to_millis(value)
    if millis is None:
        raise ValueError(f"date: {value!r} is not a time")
    return datetime.fromtimestamp(millis / 1000, tz=timezone.utc).strftime(format)


def _millis(value: Any) -> int:
    """`{{ milestone.scheduled_end_time | millis }}`: the time as epoch milliseconds, to
    compute with (`+ 7 * 86400000` is a week later)."""
    millis = to_millis(value)
    if millis is None:
        raise ValueError(f"millis: {value!r} is not a time")
    return millis


_ENV.filters["date"] = _date
_ENV.filters["millis"] = _millis


class TemplateError(Exception):
    """A template does not compile, or failed to render against an event."""


_MISSING = object()
# "{{ milestone.project.id }}": names joined by dots, no filters, calls or indexes.
_PATH = re.compile(r"\{\{\s*([A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*)\s*\}\}")


def plain_parts(text: str) -> tuple[str | tuple[str, ...], ...] | None:
    """The template as literal text and dotted names, when that is all it is: such templates
    (most of them) are filled in by dict lookups, without Jinja. None for anything else."""
    parts: list[str | tuple[str, ...]] = []
    position = 0
    for match in _PATH.finditer(text):
        parts += [text[position:match.start()], tuple(match.group(1).split("."))]
        position = match.end()
    parts.append(text[position:])
    literal = "".join(part for part in parts if isinstance(part, str))
    # Anything else Jinja reads ({% %}, {# #}, filters, a trailing newline it would drop):
    # leave it to Jinja.
    if "{{" in literal or "{%" in literal or "{#" in literal or text.endswith("\n"):
        return None
    return tuple(part for part in parts if part != "")


def lookup(context: dict[str, Any], path: tuple[str, ...]) -> Any:
    """What Jinja's `a.b.c` gives when every step is a dict holding the key (and the key is not
    one of dict's own attributes, which Jinja would give instead); else _MISSING."""
    value: Any = context
    for name in path:
        if not isinstance(value, dict) or name not in value or hasattr(dict, name):
            return _MISSING
        value = value[name]
    return value


@dataclass(frozen=True)
class Template:
    text: str
    _compiled: Any  # a jinja2.Template, or a compiled expression when `native`
    native: bool = False  # the whole string is one {{ expression }}: render its value, not text
    variables: frozenset[str] = frozenset()  # the top-level names it reads: checked at load
    plain: tuple[str | tuple[str, ...], ...] | None = None  # see plain_parts

    def render(self, context: dict[str, Any]) -> Any:
        if self.plain is not None and (filled := self._fill(context)) is not _MISSING:
            return filled
        token = _DEADLINE.set(time.monotonic() + MAX_RENDER_S)
        try:
            if self.native:
                value = self._compiled(**context)
                if isinstance(value, jinja2.Undefined):
                    value._fail_with_undefined_error()
                if isinstance(value, str) and len(value) > MAX_OUTPUT:
                    raise SecurityError(f"the template renders more than {MAX_OUTPUT} characters")
                return value
            return self._text(context)
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"{self.text!r}: {exc.message}") from None
        except jinja2.TemplateError as exc:
            raise TemplateError(f"{self.text!r}: {exc}") from None
        except Exception as exc:  # a filter or test given the wrong type of value, say
            raise TemplateError(f"{self.text!r}: {type(exc).__name__}: {exc}") from None
        finally:
            _DEADLINE.reset(token)

    def _fill(self, context: dict[str, Any]) -> Any:
        """The plain template filled in, or _MISSING (then Jinja renders it, errors included)."""
        assert self.plain is not None
        values = []
        for part in self.plain:
            value = part if isinstance(part, str) else lookup(context, part)
            if value is _MISSING:
                return _MISSING
            values.append(value)
        if self.native:
            return values[0]
        text = "".join(value if isinstance(value, str) else str(value) for value in values)
        return text if len(text) <= MAX_OUTPUT else _MISSING

    def _text(self, context: dict[str, Any]) -> str:
        parts, size = [], 0
        for part in self._compiled.generate(context):
            size += len(part)
            if size > MAX_OUTPUT:
                raise SecurityError(f"the template renders more than {MAX_OUTPUT} characters")
            _on_time()
            parts.append(part)
        return "".join(parts)


# "{{ milestone.projected_end }}" and nothing else: the value itself (an object, a number),
# so a date object or a reference can be passed on whole instead of as its text.
_ONE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expression>(?:(?!\{\{|\}\}).)*)\}\}\s*$", re.DOTALL)


def compile_template(text: str) -> Template:
    try:
        variables = frozenset(meta.find_undeclared_variables(_ENV.parse(text)))
        one = _ONE_EXPRESSION.match(text)
        if one:
            plain = plain_parts(text.strip())
            native_plain = plain if plain is not None and len(plain) == 1 and isinstance(plain[0], tuple) else None
            return Template(text, _ENV.compile_expression(one["expression"], undefined_to_none=False), True, variables,
                            native_plain)
        return Template(text, _ENV.from_string(text), False, variables, plain_parts(text))
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


def variables_in(value: Any) -> set[str]:
    """Every top-level name the templates inside a compiled tree read."""
    return _over_templates(value, lambda template: template.variables)


def _over_templates(value: Any, read: Callable[[Template], Iterable[Any]]) -> set[Any]:
    if isinstance(value, Template):
        return set(read(value))
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return set().union(*(_over_templates(item, read) for item in items))


def known_globals() -> set[str]:
    """Names every template has without a rule providing them (range, dict, namespace...)."""
    return set(_ENV.globals)


def paths_in(value: Any) -> set[tuple[str, ...]]:
    """Every dotted path the templates inside a compiled tree read (`milestone.status.name`
    as ('milestone', 'status', 'name')), as far as it is spelt out: for checking field names."""
    return _over_templates(value, lambda template: _paths(template.text))


@functools.lru_cache(maxsize=4096)
def _paths(text: str) -> frozenset[tuple[str, ...]]:
    tree = _ENV.parse(text)
    # `event.get('x')`, `previous.items()`: a method called, not a field read.
    called = {id(call.node) for call in tree.find_all(nodes.Call)}
    found = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        if id(node) in called:
            continue
        path: list[str] = []
        while True:
            if isinstance(node, nodes.Getattr):
                path.append(node.attr)
            elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                path.append(node.arg.value)
            else:
                break
            node = node.node
        if isinstance(node, nodes.Name) and path:
            found.add((node.name, *reversed(path)))
    return frozenset(found)
