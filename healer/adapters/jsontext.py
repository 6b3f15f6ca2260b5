"""JSON text as the RFCs let it lie on disk: UTF-8, -16 or -32, with or without a byte order
mark (RFC 8259 §8.1 lets a reader ignore one; RFC 4627 §3 tells the encodings apart by the
zeros among the first bytes), and the same text written back in the form it came in."""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass
from typing import Any

__all__ = ["UTF8", "TextForm", "decode", "detect", "dump"]


@dataclass(frozen=True, slots=True)
class TextForm:
    """How a JSON file was written: codec, a leading byte order mark, CRLF line ends."""

    codec: str = "utf-8"
    bom: bool = False
    crlf: bool = False

    def describe(self) -> str:
        """e.g. "UTF-16-LE with BOM, CRLF", for logs and errors."""
        parts = [self.codec.upper() + (" with BOM" if self.bom else "")]
        if self.crlf:
            parts.append("CRLF")
        return ", ".join(parts)


UTF8 = TextForm()

# Longest first: the UTF-32 LE mark (FF FE 00 00) begins with the UTF-16 LE one, and a
# JSON text cannot start with U+0000, so those four bytes are UTF-32.
_MARKS = (
    ("utf-32-le", codecs.BOM_UTF32_LE),
    ("utf-32-be", codecs.BOM_UTF32_BE),
    ("utf-8", codecs.BOM_UTF8),
    ("utf-16-le", codecs.BOM_UTF16_LE),
    ("utf-16-be", codecs.BOM_UTF16_BE),
)
_MARK_OF = dict(_MARKS)


def _by_zeros(head: bytes) -> str:
    """A JSON text starts with ASCII, so in UTF-16/32 its first code unit has zero bytes."""
    if len(head) >= 4:
        if not head[0]:
            return "utf-16-be" if head[1] else "utf-32-be"  # 00 XX .. .. / 00 00 00 XX
        if not head[1]:
            return "utf-16-le" if head[2] or head[3] else "utf-32-le"  # XX 00 XX .. / XX 00 00 00
    elif len(head) == 2:
        if not head[0]:
            return "utf-16-be"
        if not head[1]:
            return "utf-16-le"
    return "utf-8"


def detect(data: bytes) -> TextForm:
    """The codec and mark of `data` (line ends are known only once it is decoded)."""
    for codec, mark in _MARKS:
        if data.startswith(mark):
            return TextForm(codec, bom=True)
    return TextForm(_by_zeros(data[:4]))


def decode(data: bytes) -> tuple[str, TextForm]:
    """The text of `data` and its form; UnicodeDecodeError when it is not valid in its codec."""
    form = detect(data)
    skip = len(_MARK_OF[form.codec]) if form.bom else 0
    try:
        text = data[skip:].decode(form.codec)  # strict: no guessing at a file's real codec
    except UnicodeDecodeError as exc:
        # Positions counted in the file, mark included, so an operator can find the byte.
        raise UnicodeDecodeError(
            exc.encoding, data, exc.start + skip, exc.end + skip, exc.reason
        ) from None
    newlines = text.count("\n")
    # Raw line breaks in JSON lie only between tokens (strings escape theirs), so all-CRLF
    # text can be written back all-CRLF; mixed endings come back as plain LF.
    crlf = newlines > 0 and text.count("\r\n") == newlines
    return text, TextForm(form.codec, form.bom, crlf)


def dump(doc: Any, form: TextForm = UTF8) -> bytes:
    """`doc` as two-space-indented JSON with a final newline, in `form`.

    TypeError or ValueError when `doc` is not JSON data.
    """
    text = json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
    try:
        body = _encode(text, form)
    except UnicodeEncodeError:
        # Lone surrogates survive json.loads; only \u escapes can write them back.
        body = _encode(json.dumps(doc, ensure_ascii=True, indent=2) + "\n", form)
    return (_MARK_OF[form.codec] if form.bom else b"") + body


def _encode(text: str, form: TextForm) -> bytes:
    if form.crlf:
        text = text.replace("\n", "\r\n")
    return text.encode(form.codec)
