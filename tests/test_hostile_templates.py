"""Hostile inputs to engine.templates: payload text is never a template, and no template escapes the sandbox.

See tests/hostile.py for what every property promises and how the inputs are made.
"""

from __future__ import annotations

from typing import Any

import jinja2
import pytest
from hostile import BOUNDED, hostile_text, show
from hypothesis import example, given
from hypothesis import strategies as st
from jinja2.sandbox import SecurityError

from engine.templates import Template, TemplateError, compile_tree, render_tree

# --------------------------------------------------------------------------------------------
# 5. engine.templates
# --------------------------------------------------------------------------------------------

# Rule templates (written by the admin) that read payload strings (sent by anyone).
RULE_TEMPLATES = compile_tree({
    "whole": "{{ milestone.title }}",
    "text": "Title: {{ milestone.title }}!",
    "two": "{{ milestone.title }}|{{ previous.title }}",
    "changes_to": "{{ changes['title'].to }}",
    "changes_from": "was {{ changes['title']['from'] }}",
    "if": "{% if milestone.title is string %}{{ milestone.title }}{% endif %}",
    "loop": "{% for tag in milestone.tags %}[{{ tag }}]{% endfor %}",
    "concat": "{{ milestone.title ~ '' }}",
    "list": ["{{ payload.note }}", "note: {{ payload.note }}"],
    "nested": {"fields": {"description": "{{ milestone.title }}\n-- {{ event.type }}"}},
    "plain": "no template here",
})

TEMPLATE_PAYLOADS = [
    "{{ 7*7 }}",
    "{% for %}",
    "{% for x in range(3) %}{{ x }}{% endfor %}",
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ config }}",
    "{{ milestone.title }}",
    "{# comment #}",
    "{% raw %}{{ x }}{% endraw %}",
    "{{",
    "}}",
    "{0.__class__}",
    "%(x)s",
]
hostile_strings = st.one_of(
    st.sampled_from(TEMPLATE_PAYLOADS),
    hostile_text,
    st.builds(lambda a, p, b: a + p + b, st.text(max_size=5), st.sampled_from(TEMPLATE_PAYLOADS), st.text(max_size=5)),
)


@BOUNDED
@given(title=hostile_strings, old_title=hostile_strings, note=hostile_strings, tags=st.lists(hostile_strings, max_size=3))
@example(title="{{ 7*7 }}", old_title="{% for %}", note="{{ ''.__class__.__mro__ }}", tags=["{{ config }}"])
def test_payload_strings_are_never_templates(title: str, old_title: str, note: str, tags: list[str]) -> None:
    context = {
        "milestone": {"id": "1", "title": title, "tags": tags},
        "previous": {"id": "1", "title": old_title},
        "changes": {"title": {"from": old_title, "to": title}},
        "payload": {"note": note},
        "event": {"type": "milestone.updated"},
    }
    show(context=context)
    assert isinstance(RULE_TEMPLATES["whole"], Template) and RULE_TEMPLATES["whole"].native
    assert render_tree(RULE_TEMPLATES, context) == {
        "whole": title,
        "text": f"Title: {title}!",
        "two": f"{title}|{old_title}",
        "changes_to": title,
        "changes_from": f"was {old_title}",
        "if": title,
        "loop": "".join(f"[{tag}]" for tag in tags),
        "concat": title,
        "list": [note, f"note: {note}"],
        "nested": {"fields": {"description": f"{title}\n-- milestone.updated"}},
        "plain": "no template here",
    }


# Names that are not in a rule's context (nor among the sandbox's globals): StrictUndefined
# makes each an error, never an empty string or a Flask-style object.
UNDEFINED_NAMES = ["request", "config", "os", "subprocess", "__builtins__", "import", "g", "url_for",
                   "get_flashed_messages", "session", "settings", "environ"]

# Reaching Python internals from a template. The sandbox refuses the attribute (SecurityError,
# "access to attribute ... is unsafe"), or the attribute does not exist (range is the sandbox's
# safe_range, a plain function without __self__); engine.templates reports both as TemplateError.
ATTRIBUTE_ESCAPES = [
    "''.__class__",
    "''.__class__.__mro__[1].__subclasses__()",
    "().__class__.__bases__[0].__subclasses__()",
    "[].__class__.__base__",
    "(1).__class__",
    "x.__init__.__globals__",
    "milestone.__class__",
    "milestone['__class__']",
    "milestone.title|attr('__class__')",
    "milestone.title['\\x5f\\x5fclass\\x5f\\x5f']",
    "'{0.__class__}'.format(milestone)",
    "'%s' % milestone.__class__",
    "cycler.__init__.__globals__.os",
    "cycler(1).__init__.__globals__",
    "joiner.__init__.__globals__",
    "namespace.__init__.__globals__",
    "namespace(a=1).__dict__",
    "lipsum.__globals__",
    "lipsum.__globals__['os']",
    "range.__self__",
    "range.__globals__",
    "''.join.__self__",
    "dict.mro()",
    "dict.__subclasses__()",
    "self._TemplateReference__context",
    "self._TemplateReference__context.cycler",
    "self.__init__.__globals__",
    "milestone.values().__iter__",
    "milestone.title.__len__",
]

# ImmutableSandboxedEnvironment: a template cannot change the event it reads.
MUTATIONS = ["milestone.update({'title': 'x'})", "milestone.pop('id')", "milestone.setdefault('a', 1)",
             "milestone.clear()", "milestone.tags.append(1)", "milestone.tags.pop()", "milestone.tags.sort()"]

STATEMENT_ESCAPES = [
    "{% import 'os' as os %}",
    "{% include '/etc/passwd' %}",
    "{% extends '/etc/passwd' %}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{% set a = milestone.title.__class__ %}{{ a }}",
    "{% set _ = milestone.clear() %}x",
]


def _escape_context() -> dict[str, Any]:
    return {"x": "hello", "milestone": {"id": "5", "title": "t", "tags": ["a", "b"]}, "previous": None}


def _render_attempt(text: str) -> tuple[Exception, dict[str, Any]]:
    """The exception a rule template fails with, at compile or at render, and the context
    after the attempt. Returning a value at all fails the test."""
    context = _escape_context()
    try:
        compiled = compile_tree(text)
    except TemplateError as exc:
        return exc, context
    try:
        value = render_tree(compiled, context)
    except (TemplateError, SecurityError) as exc:
        return exc, context
    text_value = str(value)
    pytest.fail(f"{text!r} rendered to {text_value[:200]!r}" + (" (leaks internals)" if any(
        marker in text_value for marker in ("<class", "subprocess", "os")) else ""))


@pytest.mark.parametrize("wrap", ["{{{{ {} }}}}", "x {{{{ {} }}}} y"], ids=["native", "text"])
@pytest.mark.parametrize("name", UNDEFINED_NAMES)
def test_unknown_names_are_template_errors(name: str, wrap: str) -> None:
    exc, _ = _render_attempt(wrap.format(name))
    assert isinstance(exc, TemplateError)
    assert f"'{name}' is undefined" in str(exc)


@pytest.mark.parametrize("wrap", ["{{{{ {} }}}}", "x {{{{ {} }}}} y"], ids=["native", "text"])
@pytest.mark.parametrize("expression", ATTRIBUTE_ESCAPES)
def test_attribute_escapes_are_refused(expression: str, wrap: str) -> None:
    exc, _ = _render_attempt(wrap.format(expression))
    assert isinstance(exc, (TemplateError, SecurityError))
    message = str(exc)
    assert "is unsafe" in message or "has no attribute" in message, message


@pytest.mark.parametrize("expression", MUTATIONS)
def test_templates_cannot_mutate_the_event(expression: str) -> None:
    exc, context = _render_attempt("{{ " + expression + " }}")
    assert isinstance(exc, TemplateError) and "is unsafe" in str(exc)
    assert context == _escape_context()


@pytest.mark.parametrize("text", STATEMENT_ESCAPES)
def test_statement_escapes_fail(text: str) -> None:
    exc, context = _render_attempt(text)
    assert isinstance(exc, TemplateError)
    assert context == _escape_context()


def test_sandbox_security_error_is_a_jinja_template_error() -> None:
    # Why engine.templates reports sandbox refusals as its own TemplateError.
    assert issubclass(SecurityError, jinja2.TemplateError)
