"""A PNG's text chunks and size, read from its chunk list without decoding a single pixel.

Reading a recipe must not decode the picture: a 20000x20000 PNG is a few KB on disk and 1.2 GB in
memory (Pillow refuses it with a DecompressionBombError). `read_png_text(path)` walks the chunks
(length, type, data, CRC) and seeks past image data; tEXt, zTXt and iTXt chunks anywhere in the
file are read (some tools write them after IDAT), zTXt/iTXt inflated to at most `MAX_TEXT_BYTES`.
`png_size(path)` reads the IHDR chunk. Every failure is a `PngTextError` sentence naming the file.
"""
from __future__ import annotations

import os
import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_TEXT_BYTES = 32 << 20   # one text chunk, inflated: a recipe with 2048x2048 inline images fits
MAX_TEXT_TOTAL = 64 << 20   # all text chunks of one file
MAX_CHUNKS = 100_000


class PngTextError(ValueError):
    """Not a PNG, or a damaged one; the message names the file."""


def _inflate(data: bytes, where: str) -> bytes:
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, MAX_TEXT_BYTES)
    except zlib.error as exc:
        raise PngTextError(f"{where}: a compressed text chunk is damaged ({exc})") from None
    if d.unconsumed_tail:
        raise PngTextError(f"{where}: a text chunk inflates to more than {MAX_TEXT_BYTES >> 20} MB")
    return out


def _text_chunk(kind: bytes, data: bytes, where: str) -> tuple[str, str] | None:
    """(keyword, text) of a tEXt / zTXt / iTXt chunk (Latin-1 for tEXt/zTXt, UTF-8 for iTXt)."""
    key, sep, rest = data.partition(b"\0")
    if not sep:
        return None
    keyword = key.decode("latin-1")
    if kind == b"tEXt":
        return keyword, rest.decode("latin-1")
    if kind == b"zTXt":
        return keyword, _inflate(rest[1:], where).decode("latin-1")
    compressed, method, rest = rest[:1], rest[1:2], rest[2:]
    _language, _, rest = rest.partition(b"\0")
    _translated, _, text = rest.partition(b"\0")
    if compressed == b"\1":
        text = _inflate(text, where)
    try:
        return keyword, text.decode("utf-8")
    except UnicodeDecodeError:
        raise PngTextError(f"{where}: the text chunk '{keyword}' is not UTF-8") from None


def _chunks(f, where: str):
    """Yields (type, data or None, length) for every chunk; data only for the ones we read."""
    if f.read(8) != SIGNATURE:
        raise PngTextError(f"{where}: not a PNG file")
    for _ in range(MAX_CHUNKS):
        header = f.read(8)
        if len(header) < 8:
            raise PngTextError(f"{where}: the PNG ends early (no IEND chunk): the file is cut short")
        length, kind = struct.unpack(">I4s", header)
        if length > 0x7FFFFFFF:
            raise PngTextError(f"{where}: a chunk claims {length} bytes: the file is damaged")
        if kind in (b"tEXt", b"zTXt", b"iTXt", b"IHDR"):
            if length > MAX_TEXT_BYTES:
                raise PngTextError(f"{where}: a text chunk of {length >> 20} MB is larger than a recipe can be")
            data = f.read(length)
            if len(data) < length:
                raise PngTextError(f"{where}: the PNG ends inside a chunk: the file is cut short")
            f.seek(4, os.SEEK_CUR)  # CRC
            yield kind, data
        else:
            f.seek(length + 4, os.SEEK_CUR)
            yield kind, None
        if kind == b"IEND":
            return
    raise PngTextError(f"{where}: more than {MAX_CHUNKS} chunks: not a PNG this program reads")


def read_png_text(path: str | os.PathLike) -> dict[str, str]:
    """Every text chunk of a PNG as {keyword: text} (the first of a repeated keyword wins)."""
    where = str(path)
    text: dict[str, str] = {}
    total = 0
    try:
        with open(path, "rb") as f:
            for kind, data in _chunks(f, where):
                if data is None or kind == b"IHDR":
                    continue
                item = _text_chunk(kind, data, where)
                if item is not None:
                    total += len(item[1])
                    if total > MAX_TEXT_TOTAL:
                        raise PngTextError(f"{where}: more than {MAX_TEXT_TOTAL >> 20} MB of text")
                    text.setdefault(*item)
    except OSError as exc:
        raise PngTextError(f"{where}: cannot be read ({exc.strerror or exc})") from None
    return text


def png_size(source) -> tuple[int, int]:
    """(width, height) from the IHDR chunk of a PNG file (a path or a binary file object), without
    decoding anything."""
    if hasattr(source, "read"):
        return _size(source, "the image")
    try:
        with open(source, "rb") as f:
            return _size(f, str(source))
    except OSError as exc:
        raise PngTextError(f"{source}: cannot be read ({exc.strerror or exc})") from None


def _size(f, where: str) -> tuple[int, int]:
    for kind, data in _chunks(f, where):
        if kind == b"IHDR" and data is not None and len(data) >= 8:
            return struct.unpack(">II", data[:8])
        break
    raise PngTextError(f"{where}: the PNG does not start with its header chunk (IHDR)")
