#!/usr/bin/env python3
"""Parses a Grafana Alloy configuration (the River syntax) and reports the first syntax
error: the check scripts/fleet.sh runs on deploy/alloy/*.alloy where Alloy itself is not
installed. It follows the River grammar (blocks `name.part "label" { ... }`, attributes
`name = expression`; expressions: strings, numbers, booleans, null, references
`a.b.c`, arrays, objects `{ "key" = value, ... }`, calls `f(...)`, and the binary and
unary operators), not Alloy's component schemas: it finds syntax errors, not unknown
arguments.

Usage: river_check.py FILE...   (exit status 1 on the first error)
"""
import re
import sys

TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\r]+)
  | (?P<nl>\n)
  | (?P<comment>//[^\n]*|\#[^\n]*|/\*.*?\*/)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|&&|\|\||[-+*/%^<>!=.,\[\]{}()])
    """,
    re.VERBOSE | re.DOTALL,
)


class Error(Exception):
    pass


def tokens(text):
    out, pos, line = [], 0, 1
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if not m:
            raise Error(f"line {line}: unexpected character {text[pos]!r}")
        kind, value = m.lastgroup, m.group()
        if kind not in ("ws", "comment"):
            out.append((kind, value, line))
        line += value.count("\n")
        pos = m.end()
    out.append(("eof", "", line))
    return out


class Parser:
    def __init__(self, toks):
        self.toks, self.i = toks, 0

    def peek(self, skip_nl=True):
        j = self.i
        while skip_nl and self.toks[j][0] == "nl":
            j += 1
        return self.toks[j]

    def next(self, skip_nl=True):
        while skip_nl and self.toks[self.i][0] == "nl":
            self.i += 1
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, value):
        tok = self.next()
        if tok[1] != value:
            raise Error(f"line {tok[2]}: expected {value!r}, found {tok[1]!r}")

    def body(self, closing):
        while True:
            kind, value, line = self.peek()
            if value == closing and kind == "op" or (closing is None and kind == "eof"):
                return
            if kind != "ident":
                raise Error(f"line {line}: expected an attribute or a block, found {value!r}")
            self.statement()

    def statement(self):
        name = [self.next()[1]]
        while self.peek(False)[1] == ".":
            self.next(False)
            tok = self.next(False)
            if tok[0] != "ident":
                raise Error(f"line {tok[2]}: expected a name after '.'")
            name.append(tok[1])
        kind, value, line = self.peek(False)
        if value == "=" and len(name) == 1:
            self.next(False)
            self.expression()
            self.end_of_line()
        elif kind == "string" or value == "{":
            if kind == "string":
                self.next(False)
            self.expect("{")
            self.body("}")
            self.expect("}")
            self.end_of_line()
        else:
            raise Error(f"line {line}: expected '=' or a block after {'.'.join(name)}, found {value!r}")

    def end_of_line(self):
        kind, value, line = self.peek(False)
        if kind not in ("nl", "eof") and value != "}":
            raise Error(f"line {line}: expected the end of the line, found {value!r}")

    def expression(self):
        self.unary()
        while self.peek(False)[1] in ("==", "!=", "<", "<=", ">", ">=", "&&", "||", "+", "-", "*", "/", "%", "^"):
            self.next(False)
            self.unary()

    def unary(self):
        if self.peek()[1] in ("!", "-"):
            self.next()
        self.primary()

    def primary(self):
        kind, value, line = self.next()
        if kind in ("string", "raw", "number"):
            pass
        elif kind == "ident":
            while True:
                nxt = self.peek(False)[1]
                if nxt == ".":
                    self.next(False)
                    tok = self.next(False)
                    if tok[0] != "ident":
                        raise Error(f"line {tok[2]}: expected a name after '.'")
                elif nxt == "(":
                    self.next(False)
                    self.sequence(")")
                elif nxt == "[":
                    self.next(False)
                    self.expression()
                    self.expect("]")
                else:
                    break
        elif value == "[":
            self.sequence("]")
        elif value == "{":
            self.object()
        elif value == "(":
            self.expression()
            self.expect(")")
        else:
            raise Error(f"line {line}: expected an expression, found {value!r}")

    def sequence(self, closing):
        while self.peek()[1] != closing:
            self.expression()
            if self.peek()[1] == ",":
                self.next()
            elif self.peek()[1] != closing:
                tok = self.peek()
                raise Error(f"line {tok[2]}: expected ',' or {closing!r}, found {tok[1]!r}")
        self.next()

    def object(self):
        while self.peek()[1] != "}":
            kind, value, line = self.next()
            if kind not in ("string", "ident"):
                raise Error(f"line {line}: expected an object key, found {value!r}")
            self.expect("=")
            self.expression()
            if self.peek()[1] == ",":
                self.next()
            elif self.peek()[1] != "}":
                tok = self.peek()
                raise Error(f"line {tok[2]}: expected ',' or '}}', found {tok[1]!r}")
        self.next()


def check(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    parser = Parser(tokens(text))
    parser.body(None)


if __name__ == "__main__":
    failed = False
    for path in sys.argv[1:]:
        try:
            check(path)
            print(f"river_check: {path}: ok")
        except Error as error:
            print(f"river_check: {path}: {error}", file=sys.stderr)
            failed = True
    sys.exit(1 if failed else 0)
