"""Presigned S3 transfers (context files too large for a frame), with progress on the terminal."""
from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import BinaryIO, TextIO

CHUNK_BYTES = 256 * 1024
TIMEOUT_SECONDS = 60


class TransferFailed(Exception):
    pass


class Progress:
    """`name  1.2 MiB / 4.0 MiB  30%` rewritten in place on a terminal; one line at the end elsewhere."""

    def __init__(self, name: str, total: int, *, stream: TextIO | None = None, interval: float = 0.1) -> None:
        self.name, self.total, self.done = name, total, 0
        self._stream = stream or sys.stderr
        self._live = self._stream.isatty()
        self._interval, self._shown = interval, 0.0

    def advance(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if self._live and (now - self._shown >= self._interval or self.done >= self.total):
            self._shown = now
            self._stream.write(f"\r{self.line()}")
            self._stream.flush()

    def finish(self) -> None:
        self._stream.write(("\r" if self._live else "") + self.line() + "\n")
        self._stream.flush()

    def line(self) -> str:
        percent = 100 if self.total == 0 else self.done * 100 // self.total
        return f"{self.name}  {_size(self.done)} / {_size(self.total)}  {percent}%"


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024 or unit == "MiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _chunks(handle: BinaryIO, advance: Callable[[int], None]) -> Iterator[bytes]:
    while chunk := handle.read(CHUNK_BYTES):
        yield chunk
        advance(len(chunk))


def put(url: str, headers: dict[str, str], handle: BinaryIO, progress: Progress | None = None) -> None:
    """PUT exactly the presigned `headers` (Content-Length among them) and the file's bytes."""
    advance = progress.advance if progress is not None else (lambda count: None)
    request = urllib.request.Request(url, data=_chunks(handle, advance), method="PUT", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        raise TransferFailed(f"the upload was refused with HTTP {exc.code}") from None
    except OSError as exc:
        raise TransferFailed(f"the upload failed: {exc}") from None
    if progress is not None:
        progress.finish()


def get(url: str) -> bytes:
    """The bytes behind a presigned GET."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
            return response.read()
    except urllib.error.HTTPError as exc:
        raise TransferFailed(f"the download was refused with HTTP {exc.code}") from None
    except OSError as exc:
        raise TransferFailed(f"the download failed: {exc}") from None
