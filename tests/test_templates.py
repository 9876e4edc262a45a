"""Plain templates (text and dotted names) are filled in without Jinja: they must give exactly
what Jinja gives, errors included."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.templates import TemplateError, compile_template

NAMES = st.sampled_from(["milestone", "id", "project", "value", "items", "keys", "name", "a1"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5))
VALUES = st.recursive(SCALARS | st.lists(SCALARS, max_size=2), lambda inner: st.dictionaries(NAMES, inner, max_size=4), max_leaves=12)
PATHS = st.lists(NAMES, min_size=1, max_size=3).map(".".join)


def rendered(template: Any, context: dict[str, Any]) -> Any:
    try:
        value = template.render(context)
    except TemplateError as exc:
        return ("error", str(exc))
    return (type(value).__name__, repr(value) if callable(value) is False else "a method")


@settings(max_examples=300, deadline=None)
@given(context=st.dictionaries(NAMES, VALUES, max_size=4), paths=st.lists(PATHS, min_size=1, max_size=3),
       texts=st.lists(st.text(alphabet="ab -}{%#\n", max_size=4), min_size=4, max_size=4), native=st.booleans())
def test_plain_templates_render_as_jinja_does(context: dict, paths: list[str], texts: list[str], native: bool) -> None:
    if native:
        text = "{{ %s }}" % paths[0]
    else:
        text = texts[0] + "".join("{{ %s }}%s" % (path, texts[n + 1]) for n, path in enumerate(paths))
    try:
        template = compile_template(text)
    except TemplateError:
        return  # not a template Jinja reads: nothing to compare
    by_jinja = replace(template, plain=None)
    assert rendered(template, context) == rendered(by_jinja, context)


def test_the_usual_templates_take_the_plain_path() -> None:
    assert compile_template("{{ milestone.project.id }}").plain == (("milestone", "project", "id"),)
    assert compile_template("Slipping: {{ milestone.projected_end.value }} ms").plain is not None
    assert compile_template("{{ milestone.title | upper }}").plain is None
    assert compile_template("{% if x %}y{% endif %}").plain is None


SDP_DATE = {"value": 1512974940000, "display_value": "Dec 11, 2017 12:19 PM"}


def test_the_date_filter_writes_any_time_as_utc_text() -> None:
    context = {"milestone": {"end": SDP_DATE, "zoho": "12-31-2016", "digits": "1512974940000", "gone": None}}
    assert compile_template("due {{ milestone.end | date }}").render(context) == "due 2017-12-11 06:49 UTC"
    assert compile_template('{{ milestone.zoho | date("%d %b %Y") }}').render(context) == "31 Dec 2016"
    assert compile_template("{{ milestone.digits | date }}").render(context) == "2017-12-11 06:49 UTC"
    with pytest.raises(TemplateError, match="date: None is not a time"):
        compile_template("{{ milestone.gone | date }}").render(context)


def test_the_millis_filter_gives_a_number_to_compute_with() -> None:
    week_later = compile_template("{{ (milestone.end | millis) + 7 * 86400000 }}").render({"milestone": {"end": SDP_DATE}})
    assert week_later == 1512974940000 + 7 * 86_400_000
