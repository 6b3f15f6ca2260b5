"""JSON text in every form the RFCs allow: detected from its first bytes, written back alike."""

from __future__ import annotations

import codecs
import json

import pytest

from healer.adapters.jsontext import UTF8, TextForm, decode, detect, dump

DOC = {"agent_id": "Agent-1", "current_tasks": ["réviser", "✅ done"], "n": [1, {"x": None}]}
TEXT = json.dumps(DOC, ensure_ascii=False, indent=2) + "\n"
CODECS = ["utf-8", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"]
MARKS = {
    "utf-8": codecs.BOM_UTF8,
    "utf-16-le": codecs.BOM_UTF16_LE,
    "utf-16-be": codecs.BOM_UTF16_BE,
    "utf-32-le": codecs.BOM_UTF32_LE,
    "utf-32-be": codecs.BOM_UTF32_BE,
}


def written(codec: str, bom: bool, crlf: bool) -> bytes:
    """What a Windows tool would put on disk for TEXT."""
    text = TEXT.replace("\n", "\r\n") if crlf else TEXT
    return (MARKS[codec] if bom else b"") + text.encode(codec)


class TestDetect:
    @pytest.mark.parametrize("codec", CODECS)
    @pytest.mark.parametrize("bom", [True, False])
    def test_the_codec_and_mark_come_from_the_first_bytes(self, codec: str, bom: bool) -> None:
        assert detect(written(codec, bom, False)) == TextForm(codec, bom)

    @pytest.mark.parametrize("data", [b"", b"{", b"{}", b" \n{}"])
    def test_short_and_plain_text_is_utf8(self, data: bytes) -> None:
        assert detect(data) == UTF8

    def test_two_bytes_with_a_zero_are_utf16(self) -> None:
        assert detect(b"1\x00").codec == "utf-16-le"
        assert detect(b"\x001").codec == "utf-16-be"

    def test_a_utf32_le_mark_is_not_taken_for_utf16(self) -> None:
        """FF FE 00 00 starts with the UTF-16 LE mark, but JSON cannot start with U+0000."""
        assert detect(codecs.BOM_UTF32_LE + "{}".encode("utf-32-le")).codec == "utf-32-le"

    def test_a_non_ascii_second_character_still_reads_as_utf16_le(self) -> None:
        assert detect('"é"'.encode("utf-16-le")).codec == "utf-16-le"


class TestDecode:
    @pytest.mark.parametrize("codec", CODECS)
    @pytest.mark.parametrize("bom", [True, False])
    @pytest.mark.parametrize("crlf", [True, False])
    def test_every_form_gives_the_same_document(self, codec: str, bom: bool, crlf: bool) -> None:
        text, form = decode(written(codec, bom, crlf))
        assert json.loads(text) == DOC
        assert form == TextForm(codec, bom, crlf)

    def test_mixed_line_ends_come_back_as_lf(self) -> None:
        _, form = decode(b'{\r\n"a": 1\n}')
        assert form.crlf is False

    def test_bad_bytes_are_an_error_naming_the_codec_and_the_file_offset(self) -> None:
        with pytest.raises(UnicodeDecodeError) as caught:
            decode(codecs.BOM_UTF8 + b'{"a": "\xff"}')
        assert caught.value.encoding == "utf-8" and caught.value.start == 10

    def test_a_lone_surrogate_in_utf16_bytes_is_an_error(self) -> None:
        with pytest.raises(UnicodeDecodeError):
            decode(b"{\x00\x00\xd8}\x00")


class TestDump:
    @pytest.mark.parametrize("codec", CODECS)
    @pytest.mark.parametrize("bom", [True, False])
    @pytest.mark.parametrize("crlf", [True, False])
    def test_written_back_in_the_form_it_came_in(self, codec: str, bom: bool, crlf: bool) -> None:
        form = TextForm(codec, bom, crlf)
        data = dump(DOC, form)
        assert data == written(codec, bom, crlf)
        assert decode(data) == (TEXT.replace("\n", "\r\n") if crlf else TEXT, form)

    @pytest.mark.parametrize("codec", CODECS)
    def test_a_lone_surrogate_is_written_as_an_escape(self, codec: str) -> None:
        data = dump({"t": "fix \ud800"}, TextForm(codec))
        text, _ = decode(data)
        assert "\\ud800" in text and json.loads(text) == {"t": "fix \ud800"}

    def test_not_json_data_is_a_type_error(self) -> None:
        with pytest.raises(TypeError):
            dump({"t": object()})

    def test_describe_names_the_form(self) -> None:
        assert TextForm("utf-16-le", True, True).describe() == "UTF-16-LE with BOM, CRLF"
        assert UTF8.describe() == "UTF-8"
