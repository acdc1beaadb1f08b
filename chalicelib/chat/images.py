"""Images for the model: the format their bytes really have, their size in pixels, their cost in tokens.

Bedrock's Converse takes png, jpeg, gif and webp images, at most 3.75 MB and 8,000 px a side
each, and at most 20 in a request (Converse API reference: ImageBlock; Bedrock user guide,
"Supported models and model features"). A request over those limits fails at Bedrock, after
the `ack`; `inspect` reads what is needed to refuse it before: the format from the file's
magic bytes and the size from its header (PNG IHDR, GIF logical screen, JPEG SOFn, WebP
VP8/VP8L/VP8X), without decoding any pixel.

Tokens: Anthropic's rule for Claude on Bedrock, `width * height / 750`, after the model
scales an image down to fit 1,568 px on its long edge and about 1,600 tokens ("Vision",
Anthropic's documentation). Other models count their own way; Bedrock's usage metadata
settles the real figure, so this is only the reservation's estimate.
"""
from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass

FORMATS = ("png", "jpeg", "gif", "webp")
MAX_IMAGE_BYTES = 3_750_000  # Bedrock's "3.75 MB", read as the smaller (decimal) figure
MAX_IMAGE_SIDE = 8000  # pixels, width and height each
MAX_IMAGES = 20  # per request
CLAUDE_LONG_EDGE = 1568
CLAUDE_MAX_TOKENS = 1600
PIXELS_PER_TOKEN = 750

# JPEG start-of-frame markers (baseline, progressive, lossless...): all but DHT, JPG and DAC.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


@dataclass(frozen=True)
class ImageInfo:
    format: str  # one of FORMATS
    width: int
    height: int

    def tokens(self) -> int:
        """The tokens the model reads for this image (Claude's rule, after its own downscaling)."""
        width, height = float(self.width), float(self.height)
        long_edge = max(width, height)
        if long_edge > CLAUDE_LONG_EDGE:
            width, height = width * CLAUDE_LONG_EDGE / long_edge, height * CLAUDE_LONG_EDGE / long_edge
        return min(CLAUDE_MAX_TOKENS, max(1, math.ceil(width * height / PIXELS_PER_TOKEN)))


def inspect(data: bytes) -> ImageInfo | None:
    """The format and size of an image from its first bytes; None if it is none of FORMATS or its header is cut."""
    try:
        if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
            width, height = struct.unpack(">II", data[16:24])
            return _info("png", width, height)
        if data[:6] in (b"GIF87a", b"GIF89a"):
            width, height = struct.unpack("<HH", data[6:10])
            return _info("gif", width, height)
        if data.startswith(b"\xff\xd8"):
            return _jpeg(data)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp(data)
    except struct.error:  # a header cut short
        return None
    return None


def damage(data: bytes, kind: str) -> str | None:
    """What is wrong with the body of an image whose header `inspect` read as `kind`, or None if it is whole.

    Bedrock decodes every image and refuses one it cannot (a ValidationException, after the `ack`), so a
    body cut short or damaged in transit is found here, by walking the file's structure without decoding a
    pixel: PNG's chunks (each CRC-32 checked) up to IEND, GIF's blocks up to its trailer, JPEG's segments
    up to its scan and its end-of-image marker, WebP's RIFF chunks. Bytes after the end are ignored, as
    decoders do.
    """
    check = {"png": _png_damage, "gif": _gif_damage, "jpeg": _jpeg_damage, "webp": _webp_damage}[kind]
    try:
        return check(data)
    except IndexError:  # a field read past the end
        return "cut short"


def _png_damage(data: bytes) -> str | None:
    index, has_data = 8, False
    while index < len(data):
        if index + 12 > len(data):
            return "cut short"
        length = int.from_bytes(data[index:index + 4], "big")
        end = index + 12 + length
        if end > len(data):
            return "cut short"
        name = data[index + 4:index + 8].decode("latin-1")
        if zlib.crc32(data[index + 4:end - 4]) != int.from_bytes(data[end - 4:end], "big"):
            return f"the checksum of its {name!r} chunk is wrong"
        has_data = has_data or name == "IDAT"
        if name == "IEND":
            return None if has_data else "it has no IDAT chunk"
        index = end
    return "cut short: no IEND chunk"


def _gif_damage(data: bytes) -> str | None:
    index, frames = 13 + _color_table(data[10]), 0
    while index < len(data):
        block = data[index]
        if block == 0x3B:  # the trailer
            return None if frames else "it holds no image"
        if block == 0x21:  # an extension: its label, then sub-blocks
            index = _after_sub_blocks(data, index + 2)
        elif block == 0x2C:  # an image: its descriptor, a local color table, the LZW code size, sub-blocks
            index = _after_sub_blocks(data, index + 10 + _color_table(data[index + 9]) + 1)
            frames += 1
        else:
            return f"it holds an unknown block (0x{block:02x})"
    return "cut short"


def _color_table(flags: int) -> int:
    return 3 * (2 << (flags & 7)) if flags & 0x80 else 0


def _after_sub_blocks(data: bytes, index: int) -> int:
    """Where a run of GIF sub-blocks ends (after its empty one); past the end of `data` if it is cut."""
    while index < len(data):
        size = data[index]
        index += 1 + size
        if size == 0:
            return index
    return len(data) + 1


def _jpeg_damage(data: bytes) -> str | None:
    index = 2
    while index + 4 <= len(data):
        if data[index] != 0xFF:
            return "its segments are broken"
        marker = data[index + 1]
        if marker == 0xFF:
            index += 1
        elif marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
            index += 2
        elif marker == 0xD9:
            return "it ends before its image data"
        elif marker == 0xDA:  # the (first) scan: the entropy-coded data stuffs every 0xFF, so FFD9 is its end
            scan = index + 2 + int.from_bytes(data[index + 2:index + 4], "big")
            return None if data.rfind(b"\xff\xd9") >= scan else "cut short: no end-of-image marker"
        else:
            index += 2 + int.from_bytes(data[index + 2:index + 4], "big")
    return "cut short"


def _webp_damage(data: bytes) -> str | None:
    end = 8 + int.from_bytes(data[4:8], "little")  # RIFF's size counts what follows it
    if end > len(data):
        return "cut short"
    index = 12
    while index + 8 <= end:
        size = int.from_bytes(data[index + 4:index + 8], "little")
        index += 8 + size + (size & 1)  # chunks are padded to an even size
        if index - (size & 1) > end:
            return "cut short"
    return None


def sniff(data: bytes) -> str | None:
    """The format the magic bytes say, even when the rest of the header is broken (for error messages)."""
    for prefix, name in ((b"\x89PNG", "png"), (b"GIF8", "gif"), (b"\xff\xd8", "jpeg")):
        if data.startswith(prefix):
            return name
    return "webp" if data[:4] == b"RIFF" and data[8:12] == b"WEBP" else None


def _info(kind: str, width: int, height: int) -> ImageInfo | None:
    return ImageInfo(kind, width, height) if width > 0 and height > 0 else None


def _jpeg(data: bytes) -> ImageInfo | None:
    index = 2
    while index + 4 <= len(data):
        if data[index] != 0xFF:
            return None
        marker = data[index + 1]
        if marker == 0xFF:  # fill byte before a marker
            index += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            index += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or the scan, before any frame header
            return None
        (length,) = struct.unpack(">H", data[index + 2:index + 4])
        if marker in _SOF:
            height, width = struct.unpack(">HH", data[index + 5:index + 9])
            return _info("jpeg", width, height)
        index += 2 + length
    return None


def _webp(data: bytes) -> ImageInfo | None:
    chunk = data[12:16]
    if chunk == b"VP8 ":  # lossy: a key frame's start code, then 14-bit sizes
        if data[23:26] != b"\x9d\x01\x2a":
            return None
        width, height = struct.unpack("<HH", data[26:30])
        return _info("webp", width & 0x3FFF, height & 0x3FFF)
    if chunk == b"VP8L":  # lossless: a signature byte, then 14-bit sizes minus one
        if data[20] != 0x2F:
            return None
        (bits,) = struct.unpack("<I", data[21:25])
        return _info("webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X" and len(data) >= 30:  # extended: the canvas, 24-bit sizes minus one
        return _info("webp", int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1)
    return None
