"""What checking that an image is whole costs `chat.send`, against decoding its base64 (which it does anyway).

`chalicelib.chat.images.damage` walks an image's structure before the `ack` (PNG's chunks and their
CRC-32s, GIF's blocks, JPEG's segments, WebP's RIFF chunks) so that a body cut short is refused there,
not by Bedrock after it. Each format is timed on an image of random pixels (nothing compresses, so the
file is as large as an image of its size gets) near Bedrock's 3.75 MB limit, beside `base64.b64decode`
of the same image's `data`, the step the handler already pays for every image. Medians of `--rounds`.

Usage: .venv/bin/python -m bench.images [--rounds 50]
"""
from __future__ import annotations

import argparse
import base64
import io
import os
import statistics
import time
from collections.abc import Callable

from PIL import Image

from chalicelib.chat import images

# Sides of random-pixel images that land under 3,750,000 bytes in each format.
SIDES = {"png": 1100, "gif": 1600, "jpeg": 1750, "webp": 1950}


def sample(kind: str) -> bytes:
    side = SIDES[kind]
    pixels = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    if kind == "gif":
        pixels = pixels.convert("P")
    out = io.BytesIO()
    pixels.save(out, format=kind.upper(), **({"quality": 95} if kind in ("jpeg", "webp") else {}))
    return out.getvalue()


def median_ms(call: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.images", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=50)
    rounds = parser.parse_args().rounds
    print(f"{'format':<6} {'bytes':>10} {'damage() ms':>12} {'b64decode ms':>13} {'ratio':>6}  ({rounds} rounds)")
    for kind in images.FORMATS:
        data = sample(kind)
        assert len(data) <= images.MAX_IMAGE_BYTES, (kind, len(data))
        assert images.damage(data, kind) is None, kind
        encoded = base64.b64encode(data)
        walk = median_ms(lambda: images.damage(data, kind), rounds)  # noqa: B023 (called within the iteration)
        decode = median_ms(lambda: base64.b64decode(encoded, validate=True), rounds)  # noqa: B023
        print(f"{kind:<6} {len(data):>10,} {walk:>12.3f} {decode:>13.3f} {walk / decode:>6.2f}")


if __name__ == "__main__":
    main()
