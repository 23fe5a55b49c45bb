"""Edit one model's entry of an ascii ModelServerConfig in place, keeping the rest of the text.

protobuf's text_format can parse and print a config but drops every comment and the user's layout
on the way. A rollout changes only two fields of one `config { ... }` entry (its
`model_version_policy` and its `version_labels`), so this module finds those fields' spans in the
text with a small scanner (strings and `#` comments respected) and replaces just them. The caller
re-parses the result and checks it equals the intended proto (see `configfile.render`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from mlserve.errors import DataError

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<word>[A-Za-z_][A-Za-z0-9_.]*|[-+]?[0-9][A-Za-z0-9_.+-]*|-[A-Za-z]+)
  | (?P<punct>[{}<>\[\]:,;])
""", re.X)

_CLOSE = {"{": "}", "<": ">"}


@dataclass
class Message:
    """A message body: the span between its braces (the whole text for the top level)."""

    start: int  # first character inside the braces
    end: int  # offset of the closing brace (len(text) at top level)
    fields: list["Field"] = field(default_factory=list)

    def named(self, name: str) -> list["Field"]:
        return [f for f in self.fields if f.name == name]


@dataclass
class Field:
    name: str
    start: int  # offset of the field name
    end: int  # just past its value (and a trailing `,` or `;`)
    scalar: str | None = None  # the raw token of a scalar value
    messages: list[Message] = field(default_factory=list)  # one, or several with `[...]` syntax


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str, int]] = []  # (kind, value, offset), no space/comments
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None:
                raise DataError(f"model config text: unexpected character {text[pos]!r} at offset {pos}")
            kind = m.lastgroup or ""
            if kind not in ("space", "comment"):
                self.tokens.append((kind, m.group(), pos))
            pos = m.end()
        self.i = 0

    def peek(self) -> tuple[str, str, int]:
        return self.tokens[self.i] if self.i < len(self.tokens) else ("end", "", len(self.text))

    def take(self) -> tuple[str, str, int]:
        token = self.peek()
        self.i += 1
        return token

    def end_of(self, token: tuple[str, str, int]) -> int:
        return token[2] + len(token[1])

    def message(self, start: int, closer: str | None) -> Message:
        body = Message(start, len(self.text))
        while True:
            kind, value, offset = self.peek()
            if kind == "end":
                if closer is not None:
                    raise DataError("model config text: a `{` is never closed")
                return body
            if kind == "punct" and value == closer:
                body.end = offset
                self.take()
                return body
            if kind != "word":
                raise DataError(f"model config text: expected a field name at offset {offset}, got {value!r}")
            self.take()
            body.fields.append(self.field(value, offset))

    def field(self, name: str, start: int) -> Field:
        f = Field(name, start, start)
        if self.peek()[1] == ":":
            self.take()
        kind, value, offset = self.take()
        if value in _CLOSE:
            f.messages.append(self.message(offset + 1, _CLOSE[value]))
            f.end = self.end_of(self.tokens[self.i - 1])
        elif value == "[":
            while self.peek()[1] != "]":
                k, v, o = self.take()
                if v in _CLOSE:
                    f.messages.append(self.message(o + 1, _CLOSE[v]))
                elif k == "end":
                    raise DataError("model config text: a `[` is never closed")
            f.end = self.end_of(self.take())
        elif kind in ("string", "word"):
            f.scalar = value
            f.end = self.end_of((kind, value, offset))
            while self.peek()[0] == "string" and kind == "string":  # adjacent strings concatenate
                f.end = self.end_of(self.take())
        else:
            raise DataError(f"model config text: unexpected {value!r} at offset {offset}")
        if self.peek()[1] in (",", ";"):
            f.end = self.end_of(self.take())
        return f


def parse_layout(text: str) -> Message:
    """The field layout of a text-format message (names, spans, nested bodies)."""
    return _Scanner(text).message(0, None)


def _unquote(raw: str | None) -> str:
    if raw is None:
        return ""
    if raw[:1] in "'\"":
        return raw[1:-1].encode().decode("unicode_escape")
    return raw


def model_body(layout: Message, model: str) -> Message | None:
    """The body of `model_config_list { config { name: "<model>" ... } }`."""
    for lst in layout.named("model_config_list"):
        for lst_body in lst.messages:
            for cfg in lst_body.named("config"):
                for body in cfg.messages:
                    if any(_unquote(n.scalar) == model for n in body.named("name")):
                        return body
    return None


def _line_start(text: str, offset: int) -> int:
    return text.rfind("\n", 0, offset) + 1


def _removal_span(text: str, f: Field) -> tuple[int, int]:
    """The field's span widened to whole lines when nothing else shares them."""
    start, end = f.start, f.end
    line_start = _line_start(text, start)
    if text[line_start:start].strip() == "":
        start = line_start
    newline = text.find("\n", end)
    rest = text[end:newline if newline >= 0 else len(text)]
    if (rest.strip() == "" or rest.lstrip().startswith("#")) and start == line_start:  # its own comment goes too
        end = newline + 1 if newline >= 0 else len(text)
    return start, end


def _indent_of(text: str, body: Message) -> str:
    for f in body.fields:
        line_start = _line_start(text, f.start)
        prefix = text[line_start:f.start]
        if prefix.strip() == "":
            return prefix
    return " " * 4


def _block(indent: str, labels: dict[str, int], policy: str | None) -> str:
    step = "  "
    lines: list[str] = []
    if policy is not None:
        lines.append(f"{indent}model_version_policy {{")
        lines += [indent + step + line for line in policy.splitlines()]
        lines.append(f"{indent}}}")
    for label, version in sorted(labels.items()):
        lines += [f"{indent}version_labels {{", f'{indent}{step}key: "{label}"',
                  f"{indent}{step}value: {version}", f"{indent}}}"]
    return "".join(line + "\n" for line in lines)


def specific_policy(versions: list[int]) -> str:
    """The text of `model_version_policy`'s body that serves exactly `versions`."""
    return "specific {\n" + "".join(f"  versions: {v}\n" for v in sorted(versions)) + "}"


def replace_model_fields(text: str, model: str, policy: str | None, labels: dict[str, int]) -> str:
    """`text` with the model entry's version policy (body text, None: removed) and labels replaced."""
    layout = parse_layout(text)
    body = model_body(layout, model)
    if body is None:
        raise DataError(f"model {model!r} is not in the model config text")
    indent = _indent_of(text, body)
    spans = sorted(_removal_span(text, f) for f in body.fields
                   if f.name in ("model_version_policy", "version_labels"))
    if spans:
        insert_at = spans[0][0]
    else:  # before the closing brace, on a line of its own
        insert_at = _line_start(text, body.end) if text[_line_start(text, body.end):body.end].strip() == "" \
            else body.end
    pieces: list[str] = []
    cursor = 0
    inserted = False
    new = _block(indent, labels, policy)
    for start, end in spans:
        pieces.append(text[cursor:start])
        if not inserted:
            pieces.append(new)
            inserted = True
        cursor = end
    if not inserted:
        pieces.append(text[cursor:insert_at])
        if insert_at > 0 and text[insert_at - 1] not in "\n":
            new = "\n" + new
        pieces.append(new)
        cursor = insert_at
    pieces.append(text[cursor:])
    return "".join(pieces)
