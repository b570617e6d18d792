"""A small, strict reader of Bicep: enough to check this repository's templates offline.

No Bicep compiler runs here, so the infra tests read the templates with this module. It parses
the declarations (`targetScope`, `metadata`, `param`, `var`, `resource`, `module`, `output`)
and the expression language into plain nodes: objects, arrays, strings with interpolation,
numbers, booleans, null, names, member access, indexing, calls, unary, binary and conditional
operators, `for` expressions and lambdas. Anything it does not understand raises `BicepError`
with a line number, so a template it cannot read fails loudly instead of being checked halfway.

It does not type-check, load modules or deploy anything. `BicepFile.resolve` follows a name to
the variable it stands for, and `literal` turns literal nodes into Python values; everything
that is only known at deployment (parameters, resource properties, function calls) stays a node.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "Arr",
    "BicepError",
    "BicepFile",
    "Binary",
    "Call",
    "For",
    "Index",
    "Lambda",
    "Member",
    "Module",
    "Name",
    "Node",
    "NonNull",
    "Obj",
    "Output",
    "Param",
    "Resource",
    "Str",
    "Ternary",
    "Unary",
    "Value",
    "Var",
    "literal",
    "parse",
    "parse_file",
    "to_source",
]


class BicepError(ValueError):
    """The text is not Bicep this reader understands."""


# ---------------------------------------------------------------------------------------------
# nodes


class Node:
    """Base of every expression node."""

    def walk(self) -> Iterator[Node]:
        """This node and every node below it, depth first."""
        yield self
        for child in self.children():
            yield from child.walk()

    def children(self) -> tuple[Node, ...]:
        return ()


@dataclass(frozen=True)
class Value(Node):
    """A literal int, bool or null."""

    value: int | bool | None


@dataclass(frozen=True)
class Str(Node):
    """A string; `parts` alternate literal text and interpolated expressions."""

    parts: tuple[str | Node, ...]

    @property
    def text(self) -> str | None:
        """The string's value when it has no interpolation, else None."""
        if all(isinstance(p, str) for p in self.parts):
            return "".join(self.parts)  # type: ignore[arg-type]
        return None

    def children(self) -> tuple[Node, ...]:
        return tuple(p for p in self.parts if isinstance(p, Node))


@dataclass(frozen=True)
class Name(Node):
    id: str


@dataclass(frozen=True)
class Obj(Node):
    """An object literal. Keys keep their order; nested resource declarations are kept apart."""

    items: dict[str, Node] = field(hash=False)
    resources: tuple[Resource, ...] = ()

    def get(self, path: str) -> Node | None:
        """The node at a dotted path of keys (`properties.siteConfig.minTlsVersion`), or None."""
        node: Node | None = self
        for key in path.split("."):
            if not isinstance(node, Obj) or key not in node.items:
                return None
            node = node.items[key]
        return node

    def children(self) -> tuple[Node, ...]:
        return tuple(self.items.values())


@dataclass(frozen=True)
class Arr(Node):
    items: tuple[Node, ...]

    def children(self) -> tuple[Node, ...]:
        return self.items


@dataclass(frozen=True)
class Member(Node):
    obj: Node
    name: str
    safe: bool = False

    def children(self) -> tuple[Node, ...]:
        return (self.obj,)


@dataclass(frozen=True)
class Index(Node):
    obj: Node
    index: Node
    safe: bool = False

    def children(self) -> tuple[Node, ...]:
        return (self.obj, self.index)


@dataclass(frozen=True)
class NonNull(Node):
    """`expr!`: the author asserts the value is not null."""

    operand: Node

    def children(self) -> tuple[Node, ...]:
        return (self.operand,)


@dataclass(frozen=True)
class Call(Node):
    func: Node
    args: tuple[Node, ...]

    @property
    def name(self) -> str:
        """The called function's name without namespace (`az.resourceId` -> `resourceId`)."""
        if isinstance(self.func, Name):
            return self.func.id
        if isinstance(self.func, Member):
            return self.func.name
        return ""

    def children(self) -> tuple[Node, ...]:
        return (self.func, *self.args)


@dataclass(frozen=True)
class Unary(Node):
    op: str
    operand: Node

    def children(self) -> tuple[Node, ...]:
        return (self.operand,)


@dataclass(frozen=True)
class Binary(Node):
    op: str
    left: Node
    right: Node

    def children(self) -> tuple[Node, ...]:
        return (self.left, self.right)


@dataclass(frozen=True)
class Ternary(Node):
    condition: Node
    then: Node
    otherwise: Node

    def children(self) -> tuple[Node, ...]:
        return (self.condition, self.then, self.otherwise)


@dataclass(frozen=True)
class For(Node):
    """`[for item in iterable: body]`, `[for (item, i) in ...]`, optionally `: if (cond) body`."""

    targets: tuple[str, ...]
    iterable: Node
    body: Node
    condition: Node | None = None

    def children(self) -> tuple[Node, ...]:
        extra = (self.condition,) if self.condition is not None else ()
        return (self.iterable, *extra, self.body)


@dataclass(frozen=True)
class Lambda(Node):
    params: tuple[str, ...]
    body: Node

    def children(self) -> tuple[Node, ...]:
        return (self.body,)


# ---------------------------------------------------------------------------------------------
# declarations


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: Node | None
    decorators: tuple[Node, ...]
    line: int


@dataclass(frozen=True)
class Var:
    name: str
    value: Node
    line: int


@dataclass(frozen=True)
class Output:
    name: str
    type: str
    value: Node
    line: int


@dataclass(frozen=True)
class Resource:
    """A resource declaration. `type` is the full type, also for nested child resources."""

    symbol: str
    type: str
    api_version: str
    existing: bool
    body: Obj
    condition: Node | None
    loop: For | None
    parent: str | None
    decorators: tuple[Node, ...]
    line: int

    def get(self, path: str) -> Node | None:
        """The node at a dotted path in the body (`properties.enableRbacAuthorization`)."""
        return self.body.get(path)


@dataclass(frozen=True)
class Module:
    symbol: str
    path: str
    body: Obj
    condition: Node | None
    loop: For | None
    decorators: tuple[Node, ...]
    line: int

    def get(self, path: str) -> Node | None:
        return self.body.get(path)


@dataclass
class BicepFile:
    path: Path | None
    target_scope: str = "resourceGroup"
    params: dict[str, Param] = field(default_factory=dict)
    vars: dict[str, Var] = field(default_factory=dict)
    resources: list[Resource] = field(default_factory=list)
    modules: list[Module] = field(default_factory=list)
    outputs: dict[str, Output] = field(default_factory=dict)

    def resources_of(self, type_: str) -> list[Resource]:
        """Resources of exactly this type (case-insensitive), existing ones included."""
        return [r for r in self.resources if r.type.lower() == type_.lower()]

    def resource(self, symbol: str) -> Resource:
        for r in self.resources:
            if r.symbol == symbol:
                return r
        raise KeyError(symbol)

    def module(self, symbol: str) -> Module:
        for m in self.modules:
            if m.symbol == symbol:
                return m
        raise KeyError(symbol)

    def resolve(self, node: Node | None) -> Node | None:
        """Follow names that stand for variables (`var x = ...`) to the variable's value."""
        seen: set[str] = set()
        while isinstance(node, Name) and node.id in self.vars and node.id not in seen:
            seen.add(node.id)
            node = self.vars[node.id].value
        return node


class _NotLiteral(Exception):
    pass


_RAISE = object()


def literal(node: Node | None, file: BicepFile | None = None, default: object = _RAISE):
    """The Python value of a literal node (str, int, bool, None, dict, list).

    With `file`, names of variables are followed. A value known only at deployment (a
    parameter, a resource property, a function call) raises `BicepError`, unless a `default` is
    given, which is returned instead.
    """
    try:
        return _literal(node, file)
    except _NotLiteral:
        if default is _RAISE:
            raise BicepError(f"not a literal: {node!r}") from None
        return default


def _literal(node: Node | None, file: BicepFile | None):
    if file is not None:
        node = file.resolve(node)
    if isinstance(node, Value):
        return node.value
    if isinstance(node, Unary) and node.op == "-":
        value = _literal(node.operand, file)
        if isinstance(value, int) and not isinstance(value, bool):
            return -value
    if isinstance(node, Str):
        return "".join(p if isinstance(p, str) else str(_literal(p, file)) for p in node.parts)
    if isinstance(node, Obj):
        return {key: _literal(value, file) for key, value in node.items.items()}
    if isinstance(node, Arr):
        return [_literal(item, file) for item in node.items]
    raise _NotLiteral


def to_source(node: Node | None) -> str:
    """A compact, canonical Bicep rendering of an expression (objects and arrays on one line)."""
    if node is None:
        return ""
    if isinstance(node, Value):
        return "null" if node.value is None else str(node.value).lower()
    if isinstance(node, Str):
        out = []
        for part in node.parts:
            if isinstance(part, str):
                out.append(_escape(part))
            else:
                out.append("${" + to_source(part) + "}")
        return "'" + "".join(out) + "'"
    if isinstance(node, Name):
        return node.id
    if isinstance(node, Obj):
        items = ", ".join(f"{_key(k)}: {to_source(v)}" for k, v in node.items.items())
        return "{ " + items + " }" if items else "{}"
    if isinstance(node, Arr):
        return "[" + ", ".join(to_source(i) for i in node.items) + "]"
    if isinstance(node, Member):
        return f"{_operand(node.obj)}{'.?' if node.safe else '.'}{node.name}"
    if isinstance(node, Index):
        return f"{_operand(node.obj)}{'[?' if node.safe else '['}{to_source(node.index)}]"
    if isinstance(node, NonNull):
        return f"{_operand(node.operand)}!"
    if isinstance(node, Call):
        return f"{_operand(node.func)}({', '.join(to_source(a) for a in node.args)})"
    if isinstance(node, Unary):
        return f"{node.op}{to_source(node.operand)}"
    if isinstance(node, Binary):
        return f"({to_source(node.left)} {node.op} {to_source(node.right)})"
    if isinstance(node, Ternary):
        return (
            f"({to_source(node.condition)} ? {to_source(node.then)} : {to_source(node.otherwise)})"
        )
    if isinstance(node, For):
        targets = node.targets[0] if len(node.targets) == 1 else f"({', '.join(node.targets)})"
        condition = f"if ({to_source(node.condition)}) " if node.condition is not None else ""
        return f"[for {targets} in {to_source(node.iterable)}: {condition}{to_source(node.body)}]"
    if isinstance(node, Lambda):
        params = node.params[0] if len(node.params) == 1 else f"({', '.join(node.params)})"
        return f"{params} => {to_source(node.body)}"
    raise TypeError(f"not a Bicep node: {node!r}")


def _operand(node: Node) -> str:
    """An operand of a postfix operator (`.x`, `[i]`, `(args)`, `!`), parenthesized if needed."""
    text = to_source(node)
    return f"({text})" if isinstance(node, Unary | Lambda) else text


def _escape(text: str) -> str:
    for raw, escaped in (
        ("\\", "\\\\"),
        ("'", "\\'"),
        ("${", "\\${"),
        ("\n", "\\n"),
        ("\r", "\\r"),
        ("\t", "\\t"),
    ):
        text = text.replace(raw, escaped)
    return text


def _key(key: str) -> str:
    if _NAME.fullmatch(key) or (key.startswith("'${") and key.endswith("'")):
        return key  # a name, or an interpolated key kept as its source by the parser
    return to_source(Str((key,)))


# ---------------------------------------------------------------------------------------------
# lexer


@dataclass(frozen=True)
class Token:
    kind: str  # NAME, INT, STRING, OP, NL, EOF
    value: object
    line: int


# longest first, so that `==` is never read as `=` `=`; one line is easier to read than 34
_OPERATORS = sorted(
    "?? .? [? :: == != =~ !~ <= >= && || => { } [ ] ( ) , . : ? = < > + - * / % ! @ |".split(),  # noqa: SIM905
    key=len,
    reverse=True,
)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INT = re.compile(r"[0-9]+")
_ESCAPES = {"\\": "\\", "'": "'", "n": "\n", "r": "\r", "t": "\t", "$": "$"}


def _tokenize(source: str, first_line: int = 1) -> list[Token]:
    tokens: list[Token] = []
    i, line, n = 0, first_line, len(source)
    while i < n:
        c = source[i]
        if c in " \t\r":
            i += 1
        elif c == "\n":
            tokens.append(Token("NL", None, line))
            line += 1
            i += 1
        elif source.startswith("//", i):
            end = source.find("\n", i)
            i = n if end == -1 else end
        elif source.startswith("/*", i):
            end = source.find("*/", i + 2)
            if end == -1:
                raise BicepError(f"line {line}: unterminated comment")
            newlines = source.count("\n", i, end)
            if newlines:
                tokens.append(Token("NL", None, line))
            line += newlines
            i = end + 2
        elif source.startswith("'''", i):
            end = source.find("'''", i + 3)
            if end == -1:
                raise BicepError(f"line {line}: unterminated multi-line string")
            text = source[i + 3 : end]
            if text.startswith("\r\n"):
                text = text[2:]
            elif text.startswith("\n"):
                text = text[1:]
            tokens.append(Token("STRING", (text,), line))
            line += source.count("\n", i, end)
            i = end + 3
        elif c == "'":
            token, i, line = _read_string(source, i, line)
            tokens.append(token)
        elif m := _NAME.match(source, i):
            tokens.append(Token("NAME", m.group(), line))
            i = m.end()
        elif m := _INT.match(source, i):
            tokens.append(Token("INT", int(m.group()), line))
            i = m.end()
        else:
            for op in _OPERATORS:
                if source.startswith(op, i):
                    tokens.append(Token("OP", op, line))
                    i += len(op)
                    break
            else:
                raise BicepError(f"line {line}: unexpected character {c!r}")
    tokens.append(Token("EOF", None, line))
    return tokens


def _read_string(source: str, i: int, line: int) -> tuple[Token, int, int]:
    start_line = line
    parts: list[str | Node] = []
    text: list[str] = []
    i += 1
    while True:
        if i >= len(source) or source[i] == "\n":
            raise BicepError(f"line {start_line}: unterminated string")
        c = source[i]
        if c == "'":
            i += 1
            break
        if c == "\\":
            nxt = source[i + 1 : i + 2]
            if nxt in _ESCAPES:
                text.append(_ESCAPES[nxt])
                i += 2
                continue
            if nxt == "u" and source[i + 2 : i + 3] == "{":
                end = source.index("}", i)
                text.append(chr(int(source[i + 3 : end], 16)))
                i = end + 1
                continue
            raise BicepError(f"line {line}: unknown escape \\{nxt}")
        if source.startswith("${", i):
            end = _interpolation_end(source, i + 2, line)
            if text:
                parts.append("".join(text))
                text = []
            inner = _Parser(_tokenize(source[i + 2 : end], line))
            parts.append(inner.expression_only())
            i = end + 1
            continue
        text.append(c)
        i += 1
    if text or not parts:
        parts.append("".join(text))
    return Token("STRING", tuple(parts), start_line), i, line


def _interpolation_end(source: str, i: int, line: int) -> int:
    """Index of the `}` closing an interpolation that starts at `i`, skipping nested strings."""
    depth = 0
    while i < len(source):
        c = source[i]
        if c == "'":
            _, i, _ = _read_string(source, i, line)
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            if depth == 0:
                return i
            depth -= 1
        elif c == "\n":
            raise BicepError(f"line {line}: unterminated interpolation")
        i += 1
    raise BicepError(f"line {line}: unterminated interpolation")


# ---------------------------------------------------------------------------------------------
# parser

_BINARY = {
    "??": 1,
    "||": 2,
    "&&": 3,
    "==": 4, "!=": 4, "=~": 4, "!~": 4,
    "<": 5, "<=": 5, ">": 5, ">=": 5,
    "+": 6, "-": 6,
    "*": 7, "/": 7, "%": 7,
}  # fmt: skip


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.pos = 0
        # whether a newline ends something: yes at top level and in {} and [], no inside ()
        self.newlines: list[bool] = [True]

    # -- token helpers

    def _scan(self, offset: int) -> int:
        """Position of the token `offset` places ahead, skipping newlines that mean nothing."""
        pos = self.pos
        skip = not self.newlines[-1]
        while True:
            if skip:
                while self.tokens[pos].kind == "NL":
                    pos += 1
            if offset == 0 or self.tokens[pos].kind == "EOF":
                return pos
            offset -= 1
            pos += 1

    def peek(self, offset: int = 0) -> Token:
        return self.tokens[self._scan(offset)]

    def next(self) -> Token:
        pos = self._scan(0)
        tok = self.tokens[pos]
        if tok.kind != "EOF":
            self.pos = pos + 1
        return tok

    def at(self, value: str, offset: int = 0) -> bool:
        tok = self.peek(offset)
        return tok.kind in ("OP", "NAME") and tok.value == value

    def expect(self, value: str) -> Token:
        tok = self.next()
        if tok.kind not in ("OP", "NAME") or tok.value != value:
            raise BicepError(f"line {tok.line}: expected {value!r}, found {tok.value!r}")
        return tok

    def expect_kind(self, kind: str) -> Token:
        tok = self.next()
        if tok.kind != kind:
            raise BicepError(f"line {tok.line}: expected {kind}, found {tok.value!r}")
        return tok

    def skip_newlines(self) -> None:
        while self.tokens[self.pos].kind == "NL":
            self.pos += 1

    def end_of_statement(self) -> None:
        tok = self.peek()
        if tok.kind not in ("NL", "EOF"):
            raise BicepError(f"line {tok.line}: expected end of line, found {tok.value!r}")
        self.skip_newlines()

    # -- file

    def file(self, path: Path | None) -> BicepFile:
        result = BicepFile(path)
        self.skip_newlines()
        while self.peek().kind != "EOF":
            self.statement(result)
            self.skip_newlines()
        return result

    def decorators(self) -> tuple[Node, ...]:
        found = []
        while self.at("@"):
            self.next()
            found.append(self.postfix(self.primary()))
            self.skip_newlines()
        return tuple(found)

    def statement(self, out: BicepFile) -> None:
        decorators = self.decorators()
        tok = self.expect_kind("NAME")
        keyword = tok.value
        if keyword == "targetScope":
            self.expect("=")
            out.target_scope = literal(self.expression())
        elif keyword == "metadata":
            self.expect_kind("NAME")
            self.expect("=")
            self.expression()
        elif keyword == "param":
            name = self.expect_kind("NAME").value
            type_ = self.type_text(stop_at_equals=True)
            default = None
            if self.at("="):
                self.next()
                default = self.expression()
            out.params[name] = Param(name, type_, default, decorators, tok.line)
        elif keyword == "var":
            name = self.expect_kind("NAME").value
            self.expect("=")
            out.vars[name] = Var(name, self.expression(), tok.line)
        elif keyword == "output":
            name = self.expect_kind("NAME").value
            type_ = self.type_text(stop_at_equals=True)
            self.expect("=")
            out.outputs[name] = Output(name, type_, self.expression(), tok.line)
        elif keyword == "resource":
            out.resources.append(self.resource(decorators, tok.line, nested=False))
        elif keyword == "module":
            symbol = self.expect_kind("NAME").value
            path = literal(self.string())
            self.expect("=")
            body, condition, loop = self.declaration_body()
            out.modules.append(Module(symbol, path, body, condition, loop, decorators, tok.line))
        else:
            raise BicepError(f"line {tok.line}: unsupported statement {keyword!r}")
        self.end_of_statement()

    def type_text(self, stop_at_equals: bool) -> str:
        """The raw text of a type (`string`, `string[]`, `'a' | 'b'`, `resource 'x@y'`)."""
        words = []
        depth = 0
        while True:
            tok = self.peek()
            if tok.kind == "EOF" or (depth == 0 and tok.kind == "NL"):
                break
            if depth == 0 and stop_at_equals and tok.kind == "OP" and tok.value == "=":
                break
            self.next()
            if tok.kind == "OP" and tok.value in "{[(":
                depth += 1
            elif tok.kind == "OP" and tok.value in "}])":
                depth -= 1
            words.append(_token_text(tok))
        if not words:
            raise BicepError(f"line {self.peek().line}: missing type")
        return re.sub(r"\s*\[\s*\]", "[]", " ".join(words))

    def resource(self, decorators: tuple[Node, ...], line: int, nested: bool) -> Resource:
        symbol = self.expect_kind("NAME").value
        type_, api_version = _split_type(literal(self.string()), nested, line)
        existing = False
        if self.at("existing"):
            self.next()
            existing = True
        self.expect("=")
        body, condition, loop = self.declaration_body()
        parent = body.items.get("parent")
        return Resource(
            symbol, type_, api_version, existing, body, condition, loop,
            parent.id if isinstance(parent, Name) else None, decorators, line,
        )  # fmt: skip

    def declaration_body(self) -> tuple[Obj, Node | None, For | None]:
        if self.at("if"):
            condition = self.condition()
            return self.object(), condition, None
        if self.at("["):
            loop = self.array()
            if not isinstance(loop, For) or not isinstance(loop.body, Obj):
                raise BicepError(f"line {self.peek().line}: expected a for-expression body")
            return loop.body, loop.condition, loop
        return self.object(), None, None

    def condition(self) -> Node:
        self.expect("if")
        self.expect("(")
        self.newlines.append(False)
        node = self.expression()
        self.newlines.pop()
        self.expect(")")
        return node

    # -- expressions

    def expression_only(self) -> Node:
        self.newlines.append(False)
        node = self.expression()
        self.newlines.pop()
        tok = self.peek()
        if tok.kind != "EOF":
            raise BicepError(f"line {tok.line}: unexpected {tok.value!r} in interpolation")
        return node

    def expression(self) -> Node:
        node = self.binary(1)
        if self.at("?"):
            self.next()
            then = self.expression()
            self.expect(":")
            otherwise = self.expression()
            return Ternary(node, then, otherwise)
        return node

    def binary(self, level: int) -> Node:
        left = self.unary()
        while True:
            tok = self.peek()
            prec = _BINARY.get(tok.value) if tok.kind == "OP" else None
            if prec is None or prec < level:
                return left
            self.next()
            right = self.binary(prec + 1)
            left = Binary(tok.value, left, right)

    def unary(self) -> Node:
        if self.at("!") or self.at("-"):
            op = self.next().value
            return Unary(op, self.unary())
        return self.postfix(self.primary())

    def postfix(self, node: Node) -> Node:
        while True:
            tok = self.tokens[self.pos]  # postfix operators never follow a newline
            if tok.kind != "OP":
                return node
            if tok.value in (".", ".?", "::"):
                self.next()
                name = self.expect_kind("NAME").value
                node = Member(node, name, safe=tok.value == ".?")
            elif tok.value in ("[", "[?"):
                self.next()
                self.newlines.append(False)
                index = self.expression()
                self.newlines.pop()
                self.expect("]")
                node = Index(node, index, safe=tok.value == "[?")
            elif tok.value == "(":
                node = Call(node, self.arguments())
            elif tok.value == "!":  # right after an operand `!` can only be the non-null assertion
                self.next()
                node = NonNull(node)
            else:
                return node

    def arguments(self) -> tuple[Node, ...]:
        self.expect("(")
        self.newlines.append(False)
        args = []
        while not self.at(")"):
            args.append(self.expression())
            if not self.at(","):
                break
            self.next()
        self.newlines.pop()
        self.expect(")")
        return tuple(args)

    def primary(self) -> Node:
        tok = self.peek()
        if tok.kind == "STRING":
            return self.string()
        if tok.kind == "INT":
            self.next()
            return Value(tok.value)
        if tok.kind == "NAME":
            if self.at("=>", 1):
                self.next()
                self.next()
                return Lambda((tok.value,), self.expression())
            self.next()
            if tok.value in ("true", "false"):
                return Value(tok.value == "true")
            if tok.value == "null":
                return Value(None)
            return Name(tok.value)
        if tok.kind == "OP" and tok.value == "{":
            return self.object()
        if tok.kind == "OP" and tok.value in ("[", "[?"):
            return self.array()
        if tok.kind == "OP" and tok.value == "(":
            if self.lambda_ahead():
                return self.lambda_()
            self.next()
            self.newlines.append(False)
            node = self.expression()
            self.newlines.pop()
            self.expect(")")
            return node
        raise BicepError(f"line {tok.line}: unexpected {tok.value!r}")

    def lambda_ahead(self) -> bool:
        depth, pos = 0, self.pos
        while True:
            tok = self.tokens[pos]
            if tok.kind == "EOF":
                return False
            if tok.kind == "OP" and tok.value == "(":
                depth += 1
            elif tok.kind == "OP" and tok.value == ")":
                depth -= 1
                if depth == 0:
                    after = self.tokens[pos + 1]
                    return after.kind == "OP" and after.value == "=>"
            pos += 1

    def lambda_(self) -> Lambda:
        self.expect("(")
        params = []
        while not self.at(")"):
            params.append(self.expect_kind("NAME").value)
            if self.at(","):
                self.next()
        self.expect(")")
        self.expect("=>")
        return Lambda(tuple(params), self.expression())

    def string(self) -> Str:
        tok = self.expect_kind("STRING")
        return Str(tok.value)

    def object(self) -> Obj:
        self.expect("{")
        self.newlines.append(True)
        items: dict[str, Node] = {}
        resources: list[Resource] = []
        self.skip_newlines()
        while not self.at("}"):
            decorators = self.decorators()
            tok = self.next()
            if tok.kind == "NAME" and tok.value == "resource" and not self.at(":"):
                resources.append(self.resource(decorators, tok.line, nested=True))
            else:
                if tok.kind == "NAME":
                    key = tok.value
                elif tok.kind == "STRING":
                    # an interpolated key (`'${identityId}': {}`) is kept as its Bicep source
                    text = Str(tok.value)
                    key = text.text if text.text is not None else to_source(text)
                else:
                    raise BicepError(f"line {tok.line}: expected a name, found {tok.value!r}")
                self.expect(":")
                if key in items:
                    raise BicepError(f"line {tok.line}: duplicate property {key!r}")
                items[key] = self.expression()
            if self.at(","):
                self.next()
            elif not self.at("}") and self.peek().kind != "NL":
                bad = self.peek()
                raise BicepError(f"line {bad.line}: expected a new line, found {bad.value!r}")
            self.skip_newlines()
        self.newlines.pop()
        self.expect("}")
        return Obj(items, tuple(resources))

    def array(self) -> Node:
        opener = self.next()
        self.newlines.append(True)
        self.skip_newlines()
        if self.at("for"):
            node = self.for_body(opener.line)
            self.newlines.pop()
            self.expect("]")
            return node
        items = []
        while not self.at("]"):
            items.append(self.expression())
            if self.at(","):
                self.next()
            elif not self.at("]") and self.peek().kind != "NL":
                bad = self.peek()
                raise BicepError(f"line {bad.line}: expected a new line, found {bad.value!r}")
            self.skip_newlines()
        self.newlines.pop()
        self.expect("]")
        return Arr(tuple(items))

    def for_body(self, line: int) -> For:
        self.expect("for")
        if self.at("("):
            self.next()
            targets = [self.expect_kind("NAME").value]
            while self.at(","):
                self.next()
                targets.append(self.expect_kind("NAME").value)
            self.expect(")")
        else:
            targets = [self.expect_kind("NAME").value]
        self.expect("in")
        self.newlines.append(False)
        iterable = self.expression()
        self.newlines.pop()
        self.expect(":")
        condition = self.condition() if self.at("if") else None
        body = self.expression()
        self.skip_newlines()
        return For(tuple(targets), iterable, body, condition)


def _split_type(text: str, nested: bool, line: int) -> tuple[str, str]:
    type_, _, api_version = text.partition("@")
    if nested and _is_relative(type_):
        return type_, api_version  # completed from the parent by _flatten
    if not api_version:
        raise BicepError(f"line {line}: resource type {text!r} has no API version")
    return type_, api_version


def _is_relative(type_: str) -> bool:
    """True for a nested child's short type (`config`), false for `Microsoft.Web/sites/config`."""
    return "." not in type_.split("/")[0]


def _flatten(resources: list[Resource]) -> list[Resource]:
    """The resources with their nested children after each, given full types and parents."""
    out: list[Resource] = []
    for resource in resources:
        out.append(resource)
        out.extend(_children_of(resource))
    return out


def _children_of(parent: Resource) -> list[Resource]:
    out: list[Resource] = []
    for child in parent.body.resources:
        type_, api = child.type, child.api_version
        if _is_relative(type_):
            type_, api = f"{parent.type}/{type_}", api or parent.api_version
        full = Resource(
            child.symbol, type_, api, child.existing, child.body, child.condition, child.loop,
            parent.symbol, child.decorators, child.line,
        )  # fmt: skip
        out.append(full)
        out.extend(_children_of(full))
    return out


def _token_text(tok: Token) -> str:
    if tok.kind == "STRING":
        return "'" + "".join(p if isinstance(p, str) else "${...}" for p in tok.value) + "'"
    return str(tok.value)


def parse(source: str, path: Path | None = None) -> BicepFile:
    """Parse Bicep source text."""
    result = _Parser(_tokenize(source)).file(path)
    result.resources = _flatten(result.resources)
    return result


def parse_file(path: str | Path) -> BicepFile:
    """Parse a .bicep file."""
    path = Path(path)
    return parse(path.read_text(encoding="utf-8"), path)
