"""HL7 v2 escape sequences (chapter 2.7): decode on read, encode on write."""

from __future__ import annotations

import re


def escape(text: str, field: str = "|", enc: str = "^~\\&") -> str:
    """Escape delimiter characters in ``text`` with the escape character of ``enc``."""
    comp, rep, esc, sub = enc[0], enc[1], enc[2], enc[3]
    if not (field in text or comp in text or rep in text or esc in text or sub in text):
        return text
    out = []
    for ch in text:
        if ch == esc:
            out.append(f"{esc}E{esc}")
        elif ch == field:
            out.append(f"{esc}F{esc}")
        elif ch == comp:
            out.append(f"{esc}S{esc}")
        elif ch == rep:
            out.append(f"{esc}R{esc}")
        elif ch == sub:
            out.append(f"{esc}T{esc}")
        else:
            out.append(ch)
    return "".join(out)


def unescape(text: str, field: str = "|", enc: str = "^~\\&") -> str:
    """Decode delimiter and ``\\Xhh\\`` escapes; formatting escapes (``\\.br\\``, ``\\H\\``,
    ``\\N\\``...) are kept as they are, so text written back stays byte-identical."""
    esc = enc[2]
    if esc not in text:
        return text
    pattern = re.compile(re.escape(esc) + r"([^" + re.escape(esc) + r"]*)" + re.escape(esc))
    table = {"F": field, "S": enc[0], "R": enc[1], "E": esc, "T": enc[3]}

    def repl(m: re.Match[str]) -> str:
        code = m.group(1)
        if code in table:
            return table[code]
        if code[:1] == "X" and len(code) > 1 and len(code) % 2 == 1:
            try:
                return bytes.fromhex(code[1:]).decode("latin-1")
            except ValueError:
                return m.group(0)
        return m.group(0)

    return pattern.sub(repl, text)
