"""A mutable message over ER7 text for channels: read and write by path, touch only what
changes, and give back the original bytes when nothing changed.

Segments stay strings until a write reaches them; a write re-joins only the field it
changed, so everything else keeps its exact characters (escapes, trailing separators, spaces).
"""

from __future__ import annotations

from collections.abc import Iterator

from engine.hl7.escape import escape, unescape
from engine.hl7.header import normalize_segments
from engine.hl7.path import ALL, Path, PathError, parse_path


class MessageError(ValueError):
    pass


class Message:
    __slots__ = ("_index", "charset", "dirty", "enc", "original", "segments", "sep")

    def __init__(self, text: str, *, charset: str = "iso-8859-1", original: bytes | None = None):
        if not text.startswith("MSH") or len(text) < 8:
            raise MessageError("a message starts with MSH and its delimiters")
        self.sep = text[3]
        end = text.find(self.sep, 4)
        enc = text[4:end] if end > 0 else text[4:8]
        self.enc = (enc + "^~\\&"[len(enc) :])[:4] if len(enc) < 4 else enc[:4]
        self.segments = [s for s in text.split("\r") if s]
        self._index: dict[str, list[int]] | None = None  # segment id -> positions
        self.charset = charset
        self.original = original
        self.dirty = False

    # construction / output ------------------------------------------------------------
    @classmethod
    def from_bytes(cls, payload: bytes, charset: str = "iso-8859-1") -> Message:
        if charset.startswith(("utf-16", "utf-32")):  # separators are not single bytes
            text = payload.decode(charset, errors="replace").lstrip("\ufeff")
            text = text.replace("\r\n", "\r").replace("\n", "\r").lstrip("\r")
        else:
            text = normalize_segments(payload).decode(charset, errors="replace")
        return cls(text, charset=charset, original=payload)

    def to_text(self) -> str:
        return "\r".join(self.segments) + "\r"

    def to_bytes(self) -> bytes:
        """The message as bytes: the original bytes when nothing was changed."""
        if not self.dirty and self.original is not None:
            return self.original
        return self.to_text().encode(self.charset, errors="replace")

    def copy(self) -> Message:
        m = Message.__new__(Message)
        m.sep, m.enc, m.charset, m.original, m.dirty = (
            self.sep, self.enc, self.charset, self.original, self.dirty)  # fmt: skip
        m.segments = list(self.segments)
        m._index = self._index  # shared until a segment is added or removed (never mutated)
        return m

    # segments ---------------------------------------------------------------------------
    def segment_indexes(self, name: str) -> list[int]:
        """Positions of the segments named ``name`` (an index built once, kept until a
        segment is added or removed)."""
        index = self._index
        if index is None:
            index = {}
            sep = self.sep
            for i, s in enumerate(self.segments):
                if s[3:4] in ("", sep):
                    index.setdefault(s[:3], []).append(i)
            self._index = index
        return index.get(name, [])

    def replace_segments(self, segments: list[str]) -> None:
        """Put new segments in place (an XSLT result, say)."""
        if segments != self.segments:
            self.segments = list(segments)
            self._index = None
            self.dirty = True

    def occurrences(self, path: str | Path) -> list[Path]:
        """One concrete path per segment occurrence a ``[*]`` path names (else the path)."""
        p = parse_path(path) if isinstance(path, str) else path
        if p.occurrence != ALL:
            return [p]
        return [p.at(i) for i in range(1, len(self.segment_indexes(p.segment)) + 1)]

    def _targets(self, path: Path) -> list[int]:
        idx = self.segment_indexes(path.segment)
        if path.occurrence == ALL:
            return idx
        return [idx[path.occurrence - 1]] if path.occurrence <= len(idx) else []

    def _fields(self, i: int) -> list[str]:
        seg = self.segments[i]
        if seg[:3] == "MSH":
            parts = seg.split(self.sep)
            return ["MSH", self.sep, *parts[1:]]
        return seg.split(self.sep)

    def _store_fields(self, i: int, fields: list[str]) -> None:
        if fields[0] == "MSH":
            text = "MSH" + self.sep + self.sep.join(fields[2:])
        else:
            text = self.sep.join(fields)
        if text != self.segments[i]:
            self.segments[i] = text
            self.dirty = True

    # reading ----------------------------------------------------------------------------
    def get(self, path: str | Path, default: str | None = None) -> str | None:
        """The first value at ``path`` (decoded), or ``default`` when it is not there."""
        for value in self.iter_values(path):
            return value
        return default

    def get_all(self, path: str | Path) -> list[str]:
        return list(self.iter_values(path))

    def exists(self, path: str | Path) -> bool:
        return any(v != "" for v in self.iter_values(path))

    def get_raw(self, path: str | Path, default: str | None = None) -> str | None:
        """The first value at ``path`` as written (escapes kept), e.g. for copying."""
        for value in self.iter_values(path, decode=False):
            return value
        return default

    def iter_values(self, path: str | Path, decode: bool = True) -> Iterator[str]:
        p = parse_path(path) if isinstance(path, str) else path
        for i in self._targets(p):
            if p.is_segment:
                yield self.segments[i]
                continue
            fields = self._fields(i)
            if p.field >= len(fields):
                continue
            raw = fields[p.field]
            if p.segment == "MSH" and p.field in (1, 2):
                yield raw
                continue
            reps = raw.split(self.enc[1]) if raw else [""]
            if p.repetition == ALL:
                chosen = reps
            else:
                r = (p.repetition or 1) - 1
                if r >= len(reps):
                    continue
                chosen = [reps[r]]
            for rep in chosen:
                value = self._part(rep, p) if decode else self._raw_part(rep, p)
                if value is not None:
                    yield value

    def _part(self, rep: str, p: Path) -> str | None:
        if p.component is None:
            return rep if self.enc[0] in rep or self.enc[3] in rep else self._decode(rep)
        comps = rep.split(self.enc[0])
        if p.component > len(comps):
            return None
        comp = comps[p.component - 1]
        if p.subcomponent is None:
            return comp if self.enc[3] in comp else self._decode(comp)
        subs = comp.split(self.enc[3])
        if p.subcomponent > len(subs):
            return None
        return self._decode(subs[p.subcomponent - 1])

    def _raw_part(self, rep: str, p: Path) -> str | None:
        if p.component is None:
            return rep
        comps = rep.split(self.enc[0])
        if p.component > len(comps):
            return None
        if p.subcomponent is None:
            return comps[p.component - 1]
        subs = comps[p.component - 1].split(self.enc[3])
        return subs[p.subcomponent - 1] if p.subcomponent <= len(subs) else None

    def _decode(self, text: str) -> str:
        return unescape(text, self.sep, self.enc)

    def _encode(self, text: str) -> str:
        return escape(text, self.sep, self.enc)

    # writing ----------------------------------------------------------------------------
    def set(self, path: str | Path, value: str, *, raw: bool = False) -> int:
        """Write ``value`` (escaped unless ``raw``) at ``path``; returns how many places changed.

        Missing fields, repetitions and components are padded with separators. A missing
        segment is an error (where it would go is not knowable); use ``add_segment``.
        """
        p = parse_path(path) if isinstance(path, str) else path
        if p.is_segment:
            raise PathError(f"{p}: set needs a field path, not a whole segment")
        if p.segment == "MSH" and p.field in (1, 2):
            raise PathError(f"{p}: the delimiters cannot be changed by a step")
        targets = self._targets(p)
        if not targets:
            raise PathError(f"{p}: segment {p.segment} occurrence {p.occurrence} is not there")
        text = value if raw else self._encode(value)
        for i in targets:
            fields = self._fields(i)
            while len(fields) <= p.field:
                fields.append("")
            fields[p.field] = self._with_part(fields[p.field], p, text)
            self._store_fields(i, fields)
        return len(targets)

    def _with_part(self, raw: str, p: Path, text: str) -> str:
        rsep, csep, ssep = self.enc[1], self.enc[0], self.enc[3]
        reps = raw.split(rsep) if raw else [""]
        indexes = range(len(reps)) if p.repetition == ALL else [(p.repetition or 1) - 1]
        for r in indexes:
            while len(reps) <= r:
                reps.append("")
            if p.component is None:
                reps[r] = text
                continue
            comps = reps[r].split(csep)
            while len(comps) < p.component:
                comps.append("")
            if p.subcomponent is None:
                comps[p.component - 1] = text
            else:
                subs = comps[p.component - 1].split(ssep)
                while len(subs) < p.subcomponent:
                    subs.append("")
                subs[p.subcomponent - 1] = text
                comps[p.component - 1] = ssep.join(subs)
            reps[r] = csep.join(comps)
        return rsep.join(reps)

    def delete(self, path: str | Path) -> int:
        """Delete a segment (``OBX[2]``, ``ZPV[*]``), a repetition (``PID-3[2]``) or clear a
        field or part of one. Returns how many places changed."""
        p = parse_path(path) if isinstance(path, str) else path
        targets = self._targets(p)
        if p.is_segment:
            if p.segment == "MSH":
                raise PathError("MSH cannot be deleted")
            for i in sorted(targets, reverse=True):
                del self.segments[i]
            if targets:
                self.dirty = True
                self._index = None
            return len(targets)
        if p.segment == "MSH" and p.field in (1, 2):
            raise PathError(f"{p}: the delimiters cannot be deleted")
        changed = 0
        for i in targets:
            fields = self._fields(i)
            if p.field >= len(fields):
                continue
            if p.repetition not in (None, ALL) and p.component is None:
                reps = fields[p.field].split(self.enc[1])
                if p.repetition <= len(reps):
                    del reps[p.repetition - 1]
                    fields[p.field] = self.enc[1].join(reps)
            elif p.component is None:  # the whole field, or every repetition of it
                fields[p.field] = ""
            else:
                fields[p.field] = self._with_part(fields[p.field], p, "")
            before = self.segments[i]
            self._store_fields(i, fields)
            changed += self.segments[i] != before
        return changed

    def add_segment(self, text: str, after: str | None = None) -> None:
        """Append a segment (``ZFL|1|HIGH``), or insert it after the last one named ``after``."""
        if len(text) < 3 or not text[:3].isalnum() or not text[:3].isupper():
            raise MessageError(f"{text[:10]!r} does not start with a segment id")
        at = len(self.segments)
        if after:
            idx = self.segment_indexes(after)
            if idx:
                at = idx[-1] + 1
        self.segments.insert(at, text)
        self.dirty = True
        self._index = None


__all__ = ["Message", "MessageError", "PathError", "parse_path"]
