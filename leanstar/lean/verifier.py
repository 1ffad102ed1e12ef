"""The whole-proof check's rules, as pure functions over the REPL's answers.

A proof counts only if, in order:
1. the textual screen passes (`leanstar.lean.screen`), on the proof body the model wrote;
2. our trusted statement with that body (`<statement> := by\\n  <tactics>`, elaborated in the
   trusted header's environment) compiles with no error, no `sorry` warning (either spelling)
   and no `sorries` entry;
3. `#print axioms <name>` lists nothing outside propext, Classical.choice and Quot.sound
   (`Lean.ofReduceBool`, `Lean.ofReduceNat`, `Lean.trustCompiler` and the per-use
   `..._native...` axioms of newer Lean only with `allow_native_decide`, and then recorded);
   `sorryAx` is named as such;
4. the theorem's elaborated type, printed with `pp.all`, is the same as the trusted statement's
   elaborated on its own (with `by sorry`).
The pool runs the commands; these functions decide. Each rejection is a sentence that names
its reason.
"""

from __future__ import annotations

import re

from leanstar.lean.protocol import CommandResponse, ErrorResponse, Response

STANDARD_AXIOMS = frozenset({"propext", "Classical.choice", "Quot.sound"})
NATIVE_AXIOMS = frozenset({"Lean.ofReduceBool", "Lean.ofReduceNat", "Lean.trustCompiler"})

_DECL = re.compile(
    r"(?:^|\s)(?:theorem|lemma)\s+((?:[^\s:({\[⦃«]|«[^»]*»)(?:[^\s:({\[⦃«]|«[^»]*»)*)"
)
_AXIOMS = re.compile(r"depends on axioms:\s*\[(?P<list>[^\]]*)\]", re.S)
_NO_AXIOMS = "does not depend on any axioms"


def declared_name(statement: str) -> str | None:
    """The name a `theorem`/`lemma` statement declares (None for `example` and the like)."""
    m = _DECL.search(_strip_leading_comments(statement))
    return m.group(1) if m else None


def _strip_leading_comments(text: str) -> str:
    text = text.lstrip()
    while text.startswith(("/-", "--")):
        end = text.find("-/") + 2 if text.startswith("/-") else text.find("\n") + 1
        if end <= 0:
            return ""
        text = text[end:].lstrip()
    return text


def proof_command(statement: str, body: str) -> str:
    return f"{statement} := by\n{body}"


def reference_command(statement: str, name: str) -> str:
    return f"{statement} := by sorry\n\n{type_command(name)}"


def type_command(name: str) -> str:
    return f"set_option pp.all true in\n#check @{name}"


def axioms_command(name: str) -> str:
    return f"#print axioms {name}"


def judge_compile(resp: Response) -> str | None:
    """Why the proof command's answer rejects the proof, or None if it compiled cleanly."""
    if isinstance(resp, ErrorResponse):
        return f"Lean: {resp.lean_error or resp.message}"
    if not isinstance(resp, CommandResponse):
        return "the REPL answered the proof with a tactic's answer"
    if resp.errors:
        first = resp.errors[0]
        where = f" (line {first.pos.line})" if first.pos else ""
        more = f" and {len(resp.errors) - 1} more" if len(resp.errors) > 1 else ""
        return f"Lean reported an error{where}{more}: {first.data}"
    if any(m.is_sorry_warning for m in resp.messages):
        return "Lean reports that the proof uses `sorry`"
    if resp.sorries:
        return f"the proof leaves {len(resp.sorries)} `sorry` goal(s)"
    return None


def _info_text(resp: Response, what: str) -> str:
    if isinstance(resp, ErrorResponse):
        raise VerifyError(f"could not run {what}: {resp.lean_error or resp.message}")
    if not isinstance(resp, CommandResponse):
        raise VerifyError(f"could not run {what}: unexpected answer")
    if resp.errors:
        raise VerifyError(f"could not run {what}: {resp.errors[0].data}")
    infos = [m.data for m in resp.messages if m.severity == "info"]
    if not infos:
        raise VerifyError(f"{what} printed nothing")
    return infos[-1]


class VerifyError(ValueError):
    """A check whose output could not be read: the proof is not accepted."""


def parse_axioms(resp: Response) -> tuple[str, ...]:
    """The axioms listed by `#print axioms`; raises VerifyError if the output is unreadable."""
    text = _info_text(resp, "#print axioms")
    if _NO_AXIOMS in text:
        return ()
    m = _AXIOMS.search(text)
    if m is None:
        raise VerifyError(f"cannot read the #print axioms output: {text[:200]!r}")
    return tuple(a.strip() for a in m.group("list").split(",") if a.strip())


def is_native_axiom(name: str) -> bool:
    return name in NATIVE_AXIOMS or "._native." in name or name.startswith("_native.")


def judge_axioms(axioms: tuple[str, ...], allow_native_decide: bool) -> str | None:
    """Why these axioms reject the proof, or None if they are allowed."""
    if "sorryAx" in axioms:
        return "the proof depends on `sorryAx` (a `sorry` somewhere in it)"
    native = [a for a in axioms if is_native_axiom(a)]
    if native and not allow_native_decide:
        return (
            f"the proof trusts compiled code ({', '.join(native)}); "
            "allow it with lean.allow_native_decide"
        )
    other = [a for a in axioms if a not in STANDARD_AXIOMS and not is_native_axiom(a)]
    if other:
        allowed = ", ".join(sorted(STANDARD_AXIOMS))
        return f"the proof depends on axiom(s) outside {{{allowed}}}: {', '.join(other)}"
    return None


def parse_type(resp: Response) -> str:
    """The `#check @name` line printed with pp.all."""
    return _info_text(resp, "#check").strip()
