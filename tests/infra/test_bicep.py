"""The Bicep reader understands the syntax the templates use and refuses what it cannot read."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.infra.bicep import (
    Arr,
    BicepError,
    Binary,
    Call,
    For,
    Index,
    Lambda,
    Member,
    Name,
    NonNull,
    Obj,
    Str,
    Ternary,
    Unary,
    Value,
    literal,
    parse,
    to_source,
)


def expr(source: str):
    return parse(f"var x = {source}\n").vars["x"].value


def test_strings_keep_escapes_and_interpolations_apart():
    node = expr(r"'it\'s ${a}-${toLower('B${c}')}\n\${not}'")
    assert node == Str(
        (
            "it's ",
            Name("a"),
            "-",
            Call(Name("toLower"), (Str(("B", Name("c"))),)),
            "\n${not}",
        )
    )


def test_multi_line_strings_are_verbatim():
    assert literal(expr("'''\nline ${one}\n  two\\n'''")) == "line ${one}\n  two\\n"


def test_objects_take_newlines_or_commas_and_quoted_keys():
    node = expr("{\n  a: 1\n  'b-c': [\n    true\n    null\n  ]\n  d: 'x', e: -2\n}")
    assert literal(node) == {"a": 1, "b-c": [True, None], "d": "x", "e": -2}


def test_an_interpolated_key_is_kept_as_its_source():
    node = expr("{\n  '${identityId}': {}\n}")
    assert list(node.items) == ["'${identityId}'"]
    assert to_source(node) == "{ '${identityId}': {} }"


def test_operators_bind_by_precedence():
    assert expr("a || b && !c == d + e * f") == Binary(
        "||",
        Name("a"),
        Binary(
            "&&",
            Name("b"),
            Binary(
                "==",
                Unary("!", Name("c")),
                Binary("+", Name("d"), Binary("*", Name("e"), Name("f"))),
            ),
        ),
    )


def test_conditionals_nest_to_the_right():
    assert expr("a ? b : c ? d : e") == Ternary(
        Name("a"), Name("b"), Ternary(Name("c"), Name("d"), Name("e"))
    )


def test_accessors_chain_left_to_right():
    assert expr("f(1)[0].?g.h!") == NonNull(
        Member(Member(Index(Call(Name("f"), (Value(1),)), Value(0)), "g", safe=True), "h")
    )


def test_function_arguments_may_span_lines():
    assert expr("union(tags, {\n  a: 'b'\n})") == Call(
        Name("union"), (Name("tags"), Obj({"a": Str(("b",))}))
    )


def test_lambdas_with_one_or_more_parameters():
    assert expr("map(xs, x => x.id)") == Call(
        Name("map"), (Name("xs"), Lambda(("x",), Member(Name("x"), "id")))
    )
    assert expr("sort(xs, (a, b) => a < b)").args[1] == Lambda(
        ("a", "b"), Binary("<", Name("a"), Name("b"))
    )


def test_for_expressions_with_index_and_filter():
    assert expr("[for (item, i) in items(o): if (i > 0) item.value]") == For(
        ("item", "i"),
        Call(Name("items"), (Name("o"),)),
        Member(Name("item"), "value"),
        Binary(">", Name("i"), Value(0)),
    )


def test_declarations_are_collected_with_their_decorators():
    f = parse(
        "targetScope = 'subscription'\n"
        "metadata info = { owner: 'x' }\n"
        "@description('where')\n@allowed([\n  'a'\n  'b'\n])\nparam p string = 'a'\n"
        "param q string[]\n"
        "param r 'x' | 'y' = 'x'\n"
        "var v = p\n"
        "output O string = v\n"
    )
    assert f.target_scope == "subscription"
    assert f.params["p"].type == "string"
    assert f.params["q"].type == "string[]" and f.params["q"].default is None
    assert f.params["r"].type == "'x' | 'y'"
    assert [d.name for d in f.params["p"].decorators] == ["description", "allowed"]
    assert literal(Name("v"), f, default="unknown") == "unknown"
    assert f.resolve(Name("v")) == Name("p")
    assert f.outputs["O"].value == Name("v")


def test_resources_keep_type_condition_loop_and_existing():
    f = parse(
        "resource kv 'Microsoft.KeyVault/vaults@2023-07-01' existing = {\n  name: 'kv'\n}\n"
        "resource ra 'Microsoft.Authorization/roleAssignments@2022-04-01' = "
        "[for id in ids: {\n  name: guid(id)\n  scope: kv\n}]\n"
        "resource d 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = if (on) {\n"
        "  name: 'd'\n}\n"
    )
    kv, ra, d = f.resources
    assert (kv.type, kv.api_version, kv.existing) == (
        "Microsoft.KeyVault/vaults",
        "2023-07-01",
        True,
    )
    assert ra.loop is not None and ra.loop.iterable == Name("ids") and ra.get("scope") == Name("kv")
    assert d.condition == Name("on") and d.loop is None
    assert f.resources_of("microsoft.keyvault/VAULTS") == [kv]


def test_nested_child_resources_get_full_types_and_parents():
    f = parse(
        "resource site 'Microsoft.Web/sites@2024-04-01' = {\n"
        "  name: 'app'\n"
        "  resource web 'config' = {\n    name: 'web'\n  }\n"
        "  resource slot 'slots@2023-01-01' = {\n"
        "    name: 's'\n"
        "    resource cfg 'config' = {\n      name: 'web'\n    }\n"
        "  }\n"
        "}\n"
        "resource auth 'Microsoft.Web/sites/config@2024-04-01' = {\n"
        "  parent: site\n  name: 'authsettingsV2'\n}\n"
    )
    found = [(r.symbol, r.type, r.api_version, r.parent) for r in f.resources]
    assert found == [
        ("site", "Microsoft.Web/sites", "2024-04-01", None),
        ("web", "Microsoft.Web/sites/config", "2024-04-01", "site"),
        ("slot", "Microsoft.Web/sites/slots", "2023-01-01", "site"),
        ("cfg", "Microsoft.Web/sites/slots/config", "2023-01-01", "slot"),
        ("auth", "Microsoft.Web/sites/config", "2024-04-01", "site"),
    ]


def test_modules_keep_path_params_and_condition():
    f = parse(
        "module m 'modules/x.bicep' = if (!empty(p)) {\n"
        "  name: 'm'\n  params: {\n    a: 1\n  }\n}\n"
    )
    (m,) = f.modules
    assert m.path == "modules/x.bicep"
    assert m.condition == Unary("!", Call(Name("empty"), (Name("p"),)))
    assert literal(m.get("params")) == {"a": 1}


def test_comments_are_ignored_anywhere():
    f = parse("// top\nvar a = { /* inline */ b: 1 // trailing\n  /* multi\n line */\n c: 2\n}\n")
    assert literal(f.vars["a"].value) == {"b": 1, "c": 2}


def test_literal_follows_variables_and_refuses_deployment_values():
    f = parse("param p string\nvar a = 'x-${b}'\nvar b = [1, c]\nvar c = true\nvar d = p\n")
    assert literal(Name("b"), f) == [1, True]
    with pytest.raises(BicepError, match="not a literal"):
        literal(Name("d"), f)
    assert literal(Name("d"), f, default=None) is None


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("var a = 'open\n", "line 1: unterminated string"),
        ("var a = { b: 1 c: 2 }\n", "line 1: expected a new line"),
        ("var a = [1 2]\n", "line 1: expected a new line"),
        ("var a = {\n  b: 1\n  b: 2\n}\n", "line 3: duplicate property 'b'"),
        ("var a = 1 +\n", "line 1: unexpected"),
        ("var a = 1 $ 2\n", "line 1: unexpected character"),
        ("\nbanana a = 1\n", "line 2: unsupported statement"),
        ("resource r 'Microsoft.Web/sites' = {}\n", "line 1: resource type .* no API version"),
        ("var a = 1 var b = 2\n", "line 1: expected end of line"),
        ("var a = '${b'\n", "line 1: unterminated"),
        ("var a = '${b\n}'\n", "line 1: unterminated"),
    ],
)
def test_text_it_cannot_read_is_refused_with_its_line_number(source, message):
    with pytest.raises(BicepError, match=message):
        parse(source)


# --- property: rendering a node and reading it back gives the same node

_KEYWORDS = {"true", "false", "null", "for", "if"}
names = st.from_regex(r"[a-z][A-Za-z0-9_]{0,6}", fullmatch=True).filter(
    lambda n: n not in _KEYWORDS
)
text = st.text(alphabet="ab '\\${}\n\t-", max_size=8)


def _string(children):
    parts = st.lists(st.one_of(text, children), max_size=4)

    def normalize(items):
        merged: list = []
        for item in items:
            if isinstance(item, str):
                if not item:
                    continue
                if merged and isinstance(merged[-1], str):
                    merged[-1] += item
                    continue
            merged.append(item)
        return Str(tuple(merged) if merged else ("",))

    return parts.map(normalize)


leaves = st.one_of(
    names.map(Name),
    st.integers(min_value=0, max_value=10**6).map(Value),
    st.sampled_from([Value(True), Value(False), Value(None)]),
    text.map(lambda t: Str((t,))),
)


def _extend(children):
    return st.one_of(
        _string(children),
        st.dictionaries(st.one_of(names, text), children, max_size=3).map(Obj),
        st.lists(children, max_size=3).map(lambda items: Arr(tuple(items))),
        st.tuples(children, names).map(lambda p: Member(*p)),
        st.tuples(children, children).map(lambda p: Index(*p)),
        st.tuples(names.map(Name), st.lists(children, max_size=3)).map(
            lambda p: Call(p[0], tuple(p[1]))
        ),
        st.tuples(st.sampled_from(["!", "-"]), children).map(lambda p: Unary(*p)),
        st.tuples(
            st.sampled_from(["&&", "||", "==", "!=", "<", ">=", "+", "*", "%", "??"]),
            children,
            children,
        ).map(lambda p: Binary(*p)),
        st.tuples(children, children, children).map(lambda p: Ternary(*p)),
    )


expressions = st.recursive(leaves, _extend, max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(expressions)
def test_rendered_expressions_read_back_unchanged(node):
    assert expr(to_source(node)) == node
