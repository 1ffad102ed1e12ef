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
from dataclasses import dataclass

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
    """Why the screen rejected a text: the rule, the offending token and where it is (1-based)."""

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


@dataclass(frozen=True)
class Token:
    kind: str  # "ident" | "hash" | "symbol"
    text: str
    offset: int
    parts: tuple[str, ...] = ()  # dotted-name parts, guillemets removed


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


@functools.lru_cache(maxsize=65536)
def _screen(text: str, allow_native: bool) -> Finding | None:
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


def _letter_like(c: str) -> bool:
    u = ord(c)
    return (
        (0x3B1 <= u <= 0x3C9 and u != 0x3BB)  # Greek small letters except λ
        or (0x391 <= u <= 0x3A9 and u not in (0x3A0, 0x3A3))  # Greek capitals except Π Σ
        or 0x3CA <= u <= 0x3FB  # Coptic
        or 0x1F00 <= u <= 0x1FFE  # polytonic Greek
        or 0x2100 <= u <= 0x214F  # letter-like symbols
        or 0x1D49C <= u <= 0x1D59F  # script, double-struck, Fraktur
    )


def _subscript(c: str) -> bool:
    u = ord(c)
    return 0x2080 <= u <= 0x2089 or 0x2090 <= u <= 0x209C or 0x1D62 <= u <= 0x1D6A


def _id_first(c: str) -> bool:
    return c.isascii() and (c.isalpha() or c == "_") or _letter_like(c)


def _id_rest(c: str) -> bool:
    return (c.isascii() and (c.isalnum() or c in "_'!?")) or _letter_like(c) or _subscript(c)


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
    while i < n:
        c = s[i]
        if c in " \t\r\n":
            i += 1
        elif s.startswith("--", i):
            end = s.find("\n", i)
            i = n if end < 0 else end + 1
        elif s.startswith("/-", i):
            i = _block_comment(s, i)
        elif c == '"':
            i = _string(s, i, out, interpolated=i > 0 and s[i - 1] == "!")
        elif c == "'" and (end := _char_literal_end(s, i)) is not None:
            i = end
        elif _id_first(c) or c == "«":
            i = _identifier(s, i, out)
        elif c == "#" and i + 1 < n and (_id_first(s[i + 1])):
            j = i + 1
            while j < n and _id_rest(s[j]):
                j += 1
            out.append(Token("hash", s[i:j], i))
            i = j
        elif c.isdigit():
            while i < n and (s[i].isalnum() or s[i] in "._"):
                i += 1
        else:
            if in_braces and c == "{":
                depth += 1
            elif in_braces and c == "}":
                if depth == 0:
                    return i + 1
                depth -= 1
            out.append(Token("symbol", c, i))
            i += 1
    if in_braces:
        raise _Unterminated("string interpolation", i)
    return i


def _block_comment(s: str, start: int) -> int:
    depth, i, n = 0, start, len(s)
    while i < n:
        if s.startswith("/-", i):
            depth += 1
            i += 2
        elif s.startswith("-/", i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    raise _Unterminated("block comment", start)


def _string(s: str, start: int, out: list[Token], interpolated: bool) -> int:
    i, n = start + 1, len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            i += 2
        elif c == '"':
            return i + 1
        elif interpolated and c == "{":
            i = _lex(s, i + 1, out, in_braces=True)
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


def _char_literal_end(s: str, i: int) -> int | None:
    """End of a character literal at `i` (`'a'`, `'\\n'`, `'\\x41'`, `'\\u{41}'`), if one is."""
    if i + 2 < len(s) and s[i + 1] not in "\\'\n" and s[i + 2] == "'":
        return i + 3
    if i + 1 < len(s) and s[i + 1] == "\\":
        end = s.find("'", i + 3)
        if end > 0 and end - i <= 12 and "\n" not in s[i:end]:
            return end + 1
    return None


def _identifier(s: str, start: int, out: list[Token]) -> int:
    i, n = start, len(s)
    parts: list[str] = []
    while True:
        if i < n and s[i] == "«":
            end = s.find("»", i + 1)
            if end < 0:
                raise _Unterminated("«escaped name»", i)
            parts.append(s[i + 1 : end])
            i = end + 1
        else:
            j = i
            while j < n and _id_rest(s[j]):
                j += 1
            parts.append(s[i:j])
            i = j
        if i + 1 < n and s[i] == "." and (_id_first(s[i + 1]) or s[i + 1] == "«"):
            i += 1
            continue
        break
    text = s[start:i]
    if text == "r" and i < n and s[i] in '"#' and _is_raw_start(s, i):
        return _raw_string(s, start)
    out.append(Token("ident", text, start, tuple(parts)))
    return i


def _is_raw_start(s: str, i: int) -> bool:
    while i < len(s) and s[i] == "#":
        i += 1
    return i < len(s) and s[i] == '"'
