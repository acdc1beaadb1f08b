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
