"""`llm-ide context put|list|get|delete`: the user's (or a session's) context files."""
from __future__ import annotations

import argparse
import codecs
import sys
from pathlib import Path
from typing import Any

from client.commands.common import CommandFailed, Context, shown, table
from client.connection import FRAME_LIMIT_BYTES, frame_bytes
from client.times import local_time
from client.transfer import CHUNK_BYTES, Progress, TransferFailed, get, put

OCTETS = "application/octet-stream"


def _text(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _is_utf8(local: Path) -> bool:
    """Whether a file is UTF-8 text, read a chunk at a time (a file of gigabytes is never held whole)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with local.open("rb") as handle:
            while chunk := handle.read(CHUNK_BYTES):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def context_put(ctx: Context, args: argparse.Namespace) -> int:
    """A file that fits a frame goes in one (`context.put`); any other is streamed from disk to a presigned PUT,
    never read whole into memory (the backend refuses one past its limit before anything is sent)."""
    local = Path(args.file)
    path = args.as_path or local.name
    try:
        size = local.stat().st_size
        data = local.read_bytes() if size <= FRAME_LIMIT_BYTES else None
        text = _text(data) if data is not None else None
        is_text = text is not None if data is not None else _is_utf8(local)
    except OSError as exc:
        raise CommandFailed(f"cannot read {local}: {exc.strerror}") from None
    with ctx.connect() as client:
        params = {"path": path, "content": text, "sessionId": args.session}
        if text is not None and frame_bytes("context.put", "c0", params) <= FRAME_LIMIT_BYTES:
            progress = Progress(path, size)
            stored = ctx.request(client, "context.put", **params)
            progress.advance(size)
            progress.finish()
        else:  # too large for a frame, or not UTF-8 text: a presigned PUT straight to storage
            presigned = ctx.request(client, "context.uploadUrl", path=path, size=size, sessionId=args.session,
                                    contentType=None if is_text else OCTETS)
            try:
                with local.open("rb") as handle:
                    put(presigned["url"], presigned["headers"], handle, Progress(path, size))
            except OSError as exc:
                raise CommandFailed(f"cannot read {local}: {exc.strerror}") from None
            except TransferFailed as exc:
                raise CommandFailed(f"{path}: {exc}") from None
            stored = {"path": path, "size": size}
    where = f" in session {args.session}" if args.session else ""
    print(f"Stored {stored['path']} ({stored['size']:,} bytes){where}")
    return 0


def context_list(ctx: Context, args: argparse.Namespace) -> int:
    items: list[dict[str, Any]] = []
    with ctx.connect() as client:
        cursor = None
        while True:
            page = ctx.request(client, "context.list", prefix=args.prefix, sessionId=args.session, cursor=cursor)
            items += page["items"]
            cursor = page.get("cursor")
            if not cursor:
                break
    if args.json:
        ctx.print_json(items)
    elif not items:
        print("No context files" + (f" under {args.prefix!r}." if args.prefix else "."))
    else:
        print(shown(table([[i["path"], f"{i['size']:,}", local_time(i.get("updatedAt"))] for i in items],
                          ["PATH", "BYTES", "UPDATED"])))
    return 0


def context_get(ctx: Context, args: argparse.Namespace) -> int:
    with ctx.connect() as client:
        found = ctx.request(client, "context.get", path=args.path, sessionId=args.session)
    if found.get("content") is not None:
        data = found["content"].encode("utf-8")
    else:  # too large for a frame, or not UTF-8: fetched from its presigned URL
        try:
            data = get(found["url"])
        except TransferFailed as exc:
            raise CommandFailed(f"{args.path}: {exc}") from None
    if args.output:
        try:
            Path(args.output).write_bytes(data)
        except OSError as exc:
            raise CommandFailed(f"cannot write {args.output}: {exc.strerror}") from None
        print(f"Wrote {args.path} to {args.output} ({len(data):,} bytes)", file=sys.stderr)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return 0


def context_delete(ctx: Context, args: argparse.Namespace) -> int:
    with ctx.connect() as client:
        ctx.request(client, "context.delete", path=args.path, sessionId=args.session)
    print(f"Deleted {args.path}")
    return 0


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    scoped = argparse.ArgumentParser(add_help=False, parents=[common])
    scoped.add_argument("--session", metavar="SESSION", help="a session's files instead of your own")
    group = commands.add_parser("context", parents=[common], help="your context files: put, list, get, delete")
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    put_parser = actions.add_parser("put", parents=[scoped], help="upload a file (large ones with progress)")
    put_parser.add_argument("file", metavar="FILE")
    put_parser.add_argument("--as", dest="as_path", metavar="PATH", help="its path in the store (default: its name)")
    put_parser.set_defaults(handler=context_put)
    list_parser = actions.add_parser("list", parents=[scoped], help="list files, by path")
    list_parser.add_argument("prefix", nargs="?", metavar="PREFIX", help="a directory (src/) or name prefix")
    list_parser.add_argument("--json", action="store_true", help="print the backend's answer as JSON")
    list_parser.set_defaults(handler=context_list)
    get_parser = actions.add_parser("get", parents=[scoped], help="print a file (or write it with -o)")
    get_parser.add_argument("path", metavar="PATH")
    get_parser.add_argument("-o", "--output", metavar="FILE", help="write it here instead of to stdout")
    get_parser.set_defaults(handler=context_get)
    delete_parser = actions.add_parser("delete", parents=[scoped], help="delete a file")
    delete_parser.add_argument("path", metavar="PATH")
    delete_parser.set_defaults(handler=context_delete)
