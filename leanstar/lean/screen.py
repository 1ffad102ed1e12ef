"""The textual soundness screen: a pure check of the proof text a model wrote, before Lean sees it.

The model supplies only tactics; we attach the trusted header and statement ourselves. The
screen rejects proof text that could admit a goal (`sorry`, `admit`, `stop`, `exact?`), leave
the tactic block to run commands (`theorem`, `#eval`, `set_option`, `macro`, `elab`, ...),
reach the kernel or the environment (`debug.skipKernelTC`, `implemented_by`, `extern`,
`unsafe`, `modifyEnv`), or trust compiled code (`native_decide`, `decide +native`,
`bv_decide`, `Lean.ofReduceBool`; allowed only when the config says so, and then recorded).

It works on tokens, not on raw text: a small lexer that follows Lean's own rules for comments
(`--`, nested `/- -/`), string literals (escapes, `s!"{...}"` interpolation, `r#"..."#` raw
strings), character literals and identifiers (dotted names, `«escaped»` parts, Lean's
letter-like Unicode ranges). So `/- -/sorry`, `"/-"; sorry`, `'"'; sorry` and `s!"{sorry}"`
are all caught, while an honest identifier that merely contains a banned word (`exact_mod_cast`,
`h_sorry`, `Nat.admit_lemma`) is accepted, and a `sorry` inside a comment, which Lean never
sees, is ignored. Unterminated comments and strings are rejected outright.

The screen is one layer; the REPL verifier still checks Lean's messages, the axioms and the
statement, which also catch what no word list can.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import NamedTuple

# ---------------------------------------------------------------- what is banned, and why

_ADMITS = "admits the goal without proving it"
_SEARCH = "proof search that can admit the goal or depend on the search; write the found proof"
_COMMAND = "starts a new command: a proof must stay inside its tactic block"
_OPTION = "options can switch off checks (e.g. debug.skipKernelTC) or change elaboration"
_META = "runs or defines metaprograms, which can change how the proof is checked"
_KERNEL = "bypasses or replaces what the kernel checks"
_NATIVE = "trusts compiled code instead of the kernel (allow with lean.allow_native_decide)"

# Whole tokens (Lean keywords and tactic names; none can be part of an honest identifier).
BANNED_TOKENS: dict[str, str] = {
    "sorry": _ADMITS,
    "admit": _ADMITS,
    "stop": _ADMITS + " (`stop` is `repeat sorry`)",
    "exact?": _SEARCH,
    "apply?": _SEARCH,
    "rw?": _SEARCH,
    "hint": _SEARCH,
    "library_search": _SEARCH,
    "rw_search": _SEARCH,
    "set_option": _OPTION,
    "macro": _META,
    "macro_rules": _META,
    "elab": _META,
    "elab_rules": _META,
    "syntax": _META,
    "declare_syntax_cat": _META,
    "notation": _META,
    "infix": _META,
    "infixl": _META,
    "infixr": _META,
    "prefix": _META,
    "postfix": _META,
    "run_cmd": _META,
    "run_tac": _META,
    "run_elab": _META,
    "run_meta": _META,
    "by_elab": _META,
    "initialize": _META,
    "builtin_initialize": _META,
    "implemented_by": _KERNEL,
    "extern": _KERNEL,
    "unsafe": _KERNEL,
    "partial": _KERNEL,
    "opaque": _KERNEL,
    "axiom": "declares an axiom",
}
_DECLARATIONS = (  # noqa: SIM905 - a word list reads better as text
    "theorem lemma def example abbrev instance structure inductive class namespace section end "
    "universe variable attribute import export mutual deriving noncomputable open_locale "
    "include omit alias irreducible_def add_decl_doc private protected local scoped"
).split()
for _word in _DECLARATIONS:
    BANNED_TOKENS[_word] = _COMMAND

# Commands written with a leading `#`. Mathlib's `#s` (card of a finset) is not among them.
HASH_COMMANDS = frozenset(
    (  # noqa: SIM905
        "exit eval eval! print check check_failure reduce synth guard guard_msgs guard_expr "
        "help find find_home lint where simp norm_num conv whnf whnfR kernel_reduce instances "
        "time count_heartbeats min_imports long_instances explode leansearch loogle moogle "
        "adaptation_note version parse test html widget show_unused import_path list_linters "
        "redundant_imports unfold? push_neg sample"
    ).split()
)

# Parts of a dotted name (so `Lean.ofReduceBool`, `«sorryAx»`, `debug.skipKernelTC` match).
BANNED_NAME_PARTS: dict[str, str] = {
    "sorryAx": _ADMITS,
    "skipKernelTC": _KERNEL,
    "modifyEnv": _KERNEL,
    "setEnv": _KERNEL,
    "addDecl": _KERNEL,
    "addAndCompile": _KERNEL,
    "replaceConst": _KERNEL,
}

NATIVE_TOKENS = frozenset({"native_decide", "bv_decide", "native"})
NATIVE_NAME_PARTS = frozenset({"ofReduceBool", "ofReduceNat", "trustCompiler"})


@dataclass(frozen=True)
class Finding:
    """Why the screen rejected a text: the offending token, where it is (1-based), and why."""

    token: str
    line: int
    column: int
    why: str

    @property
    def reason(self) -> str:
        return (
            f"soundness screen: `{self.token}` at line {self.line}, column {self.column}: "
            f"{self.why}"
        )


class Token(NamedTuple):
    kind: str  # "ident" | "hash"
    text: str
    offset: int

    @property
    def parts(self) -> tuple[str, ...]:
        """The parts of a dotted name, guillemets removed (`Lean.«sorryAx»` -> Lean, sorryAx)."""
        if "." not in self.text and "«" not in self.text:
            return (self.text,)
        return tuple(p[1:-1] if p.startswith("«") else p for p in _split_name(self.text))


class _Unterminated(ValueError):
    def __init__(self, what: str, offset: int) -> None:
        self.what, self.offset = what, offset


def screen_proof(text: str, *, allow_native_decide: bool = False) -> Finding | None:
    """The first reason `text` (a proof body) must not be sent to Lean, or None if it is clean."""
    return _screen(text, allow_native_decide)


def uses_native(text: str) -> bool:
    """Whether the proof text calls on compiled code (native_decide and the like)."""
    try:
        toks = tokens(text)
    except ValueError:
        return False
    return any(_native(t) for t in toks)


# A quick pass that needs no lexer. Every banned token or name part is made of ASCII letters,
# `_`, `?` and `!`, and starts with a letter or `_`. Where Lean reads such a token, the text
# holds it as a maximal run of `_WORD` (Lean would have glued any neighbouring letter into the
# same identifier), unless the neighbour belongs to a number literal (`0xa`, `1e5`), which is
# why a digit followed by a letter sends the text to the lexer. Comments and strings only
# hide text, never make tokens. So a text with no suspect run, no such digit, and no comment,
# string, `#` or «name» (which could hide a command or never close) is clean. Most tactics
# are; the tests check this pass against the lexer on random texts.
_WORD = re.compile(r"[A-Za-z_][A-Za-z_?!]*")
_DIGIT_LETTER = re.compile(r"[0-9][A-Za-z_]")
_SUSPECT = frozenset({*BANNED_TOKENS, *BANNED_NAME_PARTS, *NATIVE_TOKENS, *NATIVE_NAME_PARTS})


def _clearly_clean(text: str) -> bool:
    return (
        "#" not in text
        and "/-" not in text
        and '"' not in text
        and "«" not in text
        and _DIGIT_LETTER.search(text) is None
        and _SUSPECT.isdisjoint(_WORD.findall(text))
    )


@functools.lru_cache(maxsize=65536)
def _screen(text: str, allow_native: bool) -> Finding | None:
    if _clearly_clean(text):
        return None
    return _screen_tokens(text, allow_native)


def _screen_tokens(text: str, allow_native: bool) -> Finding | None:
    try:
        toks = tokens(text)
    except _Unterminated as e:
        line, column = _line_col(text, e.offset)
        return Finding(text[e.offset : e.offset + 2], line, column, f"unterminated {e.what}")
    for tok in toks:
        why = _why(tok, allow_native)
        if why is not None:
            line, column = _line_col(text, tok.offset)
            return Finding(tok.text, line, column, why)
    return None


def _why(tok: Token, allow_native: bool) -> str | None:
    if tok.kind == "hash":
        return _COMMAND if tok.text[1:] in HASH_COMMANDS else None
    if tok.kind != "ident":
        return None
    if tok.text in BANNED_TOKENS:
        return BANNED_TOKENS[tok.text]
    for part in tok.parts:
        if part in BANNED_NAME_PARTS:
            return BANNED_NAME_PARTS[part]
    if not allow_native and _native(tok):
        return _NATIVE
    return None


def _native(tok: Token) -> bool:
    return tok.kind == "ident" and (
        tok.text in NATIVE_TOKENS or any(p in NATIVE_NAME_PARTS for p in tok.parts)
    )


def _line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


# ---------------------------------------------------------------- the lexer

# Lean's identifier characters (Lean 4 `isIdFirst` / `isIdRest`): ASCII letters and `_`; Greek
# except λ Π Σ; Coptic; polytonic Greek; letter-like symbols; script, double-struck and Fraktur
# letters; after the first: digits, `'`, `!`, `?` and subscripts.
_FIRST = (
    "A-Za-z_\u03b1-\u03ba\u03bc-\u03c9\u0391-\u039f\u03a1\u03a2\u03a4-\u03a9\u03ca-\u03fb"
    "\u1f00-\u1ffe\u2100-\u214f\U0001d49c-\U0001d59f"
)
_REST = _FIRST + "0-9'!?\u2080-\u2089\u2090-\u209c\u1d62-\u1d6a"
_PART = rf"(?:«[^»]*»|[{_FIRST}][{_REST}]*)"
_NAME = rf"{_PART}(?:\.(?=[{_FIRST}«]){_PART})*"
_TOKEN = re.compile(
    rf"""
    (?P<space>\s+)
  | (?P<line>--[^\n]*)
  | (?P<block>/-)
  | (?P<string>")
  | (?P<char>'(?:[^\\'\n]|\\[^\n]{{1,9}}?)')
  | (?P<name>{_NAME})
  | (?P<hash>\#[{_FIRST}][{_REST}]*)
  | (?P<number>0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+|[0-9][0-9_]*(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


def tokens(text: str) -> list[Token]:
    """Lean tokens of `text` that matter to the screen (comments and literals dropped, code
    inside `s!"{...}"` interpolations kept). Raises ValueError on an unterminated comment or
    string literal."""
    out: list[Token] = []
    _lex(text, 0, out, in_braces=False)
    return out


def _lex(s: str, i: int, out: list[Token], in_braces: bool) -> int:
    """Lex from `i`; in an interpolation, stop after the `}` that closes it."""
    n, depth = len(s), 0
    match = _TOKEN.match
    while i < n:
        m = match(s, i)
        kind = m.lastgroup
        if kind == "name":
            text = m.group()
            if text == "r" and m.end() < n and s[m.end()] in '"#' and _is_raw_start(s, m.end()):
                i = _raw_string(s, i)
                continue
            out.append(Token("ident", text, i))
        elif kind == "block":
            i = _block_comment(s, i)
            continue
        elif kind == "string":
            i = _string(s, i, out, interpolated=i > 0 and s[i - 1] == "!")
            continue
        elif kind == "hash":
            out.append(Token("hash", m.group(), i))
        elif kind == "other":
            c = s[i]
            if c == "«":
                raise _Unterminated("«escaped name»", i)
            if in_braces and c == "{":
                depth += 1
            elif in_braces and c == "}":
                if depth == 0:
                    return i + 1
                depth -= 1
        i = m.end()
    if in_braces:
        raise _Unterminated("string interpolation", i)
    return i


def _block_comment(s: str, start: int) -> int:
    depth, i = 0, start
    while True:
        opening, closing = s.find("/-", i), s.find("-/", i)
        if closing < 0:
            raise _Unterminated("block comment", start)
        if 0 <= opening < closing:
            depth, i = depth + 1, opening + 2
        else:
            depth, i = depth - 1, closing + 2
            if depth == 0:
                return i


def _string(s: str, start: int, out: list[Token], interpolated: bool) -> int:
    i, n = start + 1, len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            i += 2
        elif c == '"':
            return i + 1
        elif interpolated and c == "{":
            try:
                i = _lex(s, i + 1, out, in_braces=True)
            except _Unterminated:
                raise _Unterminated("string literal", start) from None
        else:
            i += 1
    raise _Unterminated("string literal", start)


def _raw_string(s: str, start: int) -> int:
    """`r"..."` or `r#"..."#` (no escapes); `start` is at the `r`."""
    i = start + 1
    hashes = 0
    while i < len(s) and s[i] == "#":
        hashes += 1
        i += 1
    end = s.find('"' + "#" * hashes, i + 1)
    if end < 0:
        raise _Unterminated("raw string literal", start)
    return end + 1 + hashes


def _split_name(text: str) -> list[str]:
    if "«" not in text:
        return text.split(".")
    parts, current, quoted = [], "", False
    for c in text:
        if c == "." and not quoted:
            parts.append(current)
            current = ""
            continue
        quoted = (quoted or c == "«") and c != "»"
        current += c
    parts.append(current)
    return parts


def _is_raw_start(s: str, i: int) -> bool:
    while i < len(s) and s[i] == "#":
        i += 1
    return i < len(s) and s[i] == '"'
