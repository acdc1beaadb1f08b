"""`llm-ide models`, `usage` and `sessions`: what the backend keeps for the user, readable."""
from __future__ import annotations

import argparse
from typing import Any

from client.commands.common import Context, shown, table
from client.times import local_time
from client.transfer import TransferFailed, get

PAGE = 100


def models(ctx: Context, args: argparse.Namespace) -> int:
    with ctx.connect() as client:
        listed = ctx.request(client, "models.list")["models"]
    if args.json:
        ctx.print_json(listed)
        return 0
    rows = []
    for model in listed:
        supports = model.get("supports") or {}
        price = model.get("price")
        rows.append([model["id"] + (" *" if model.get("default") else ""), model.get("name", ""),
                     f"{model.get('contextTokens', 0):,}", f"{model.get('maxOutputTokens', 0):,}",
                     ",".join(k for k in ("tools", "images", "promptCache") if supports.get(k)) or "-",
                     f"${price['input']:g} / ${price['output']:g}" if price else "-",
                     ", ".join(model.get("aliases") or []) or "-"])
    print(table(rows, ["MODEL (* default)", "NAME", "CONTEXT", "MAX OUTPUT", "SUPPORTS", "USD/M IN / OUT",
                       "ALIASES"]))
    return 0


def _window(name: str, limit: dict[str, Any], unit: str) -> str:
    money = name == "Cost"
    amount = (lambda v: f"${v:,.4g}") if money else (lambda v: f"{v:,}")
    return (f"{name:<9} {amount(limit['remaining'])} of {amount(limit['limit'])} {unit} left,"
            f" renewed {local_time(limit['resetAt'])}")


def _used(label: str, window: dict[str, Any]) -> str:
    line = (f"{label:<10} {window.get('requests', 0):,} requests, {window.get('inputTokens', 0):,} input +"
            f" {window.get('outputTokens', 0):,} output tokens")
    if "cacheReadInputTokens" in window:
        line += (f", cache {window.get('cacheReadInputTokens', 0):,} read /"
                 f" {window.get('cacheWriteInputTokens', 0):,} written")
    if "costUsd" in window:
        line += f", ${window['costUsd']:.4f}"
    return line


def usage(ctx: Context, args: argparse.Namespace) -> int:
    with ctx.connect() as client:
        report = ctx.request(client, "usage.get")
    if args.json:
        ctx.print_json(report)
        return 0
    limits, used = report.get("limits") or {}, report.get("usage") or {}
    for key, name, unit in (("requests", "Requests", "requests a minute"), ("tokens", "Tokens", "tokens an hour")):
        if key in limits:
            print(_window(name, limits[key], unit))
    if "cost" in limits:
        print(_window("Cost", limits["cost"], f"USD a {limits['cost'].get('window', 'day')}"))
    for key, label in (("hour", "This hour"), ("day", "Today")):
        if key in used:
            print(_used(label, used[key]))
    return 0


def sessions_list(ctx: Context, args: argparse.Namespace) -> int:
    found: list[dict[str, Any]] = []
    with ctx.connect() as client:
        cursor = None
        while args.limit is None or len(found) < args.limit:
            page = ctx.request(client, "session.list", cursor=cursor,
                               limit=min(PAGE, args.limit - len(found)) if args.limit else PAGE)
            found += page["sessions"]
            cursor = page.get("cursor")
            if not cursor:
                break
    if args.json:
        ctx.print_json(found)
    elif not found:
        print("No sessions.")
    else:
        print(shown(table([[s["sessionId"], s.get("title") or "", local_time(s.get("updatedAt"))] for s in found],
                          ["SESSION", "TITLE", "UPDATED"])))
    return 0


def sessions_create(ctx: Context, args: argparse.Namespace) -> int:
    with ctx.connect() as client:
        session = ctx.request(client, "session.create", title=args.title)["session"]
    print(session["sessionId"])
    return 0


def sessions_show(ctx: Context, args: argparse.Namespace) -> int:
    with ctx.connect() as client:
        found = ctx.request(client, "session.get", sessionId=args.session_id)
        while found.get("cursor"):  # a long session comes in pages (one frame each): every message is shown
            page = ctx.request(client, "session.get", sessionId=args.session_id, cursor=found["cursor"])
            found = {**page, "messages": found["messages"] + page["messages"]}
    if args.json:
        ctx.print_json(found)
        return 0
    session = found["session"]
    print(shown(f"{session.get('title') or '(untitled)'}  {session['sessionId']}"))
    print(f"created {local_time(session.get('createdAt'))}, updated {local_time(session.get('updatedAt'))}")
    for message in found.get("messages", []):
        content = message.get("content")
        if content is None and message.get("contentUrl"):  # too large for a frame: fetched from its URL
            try:
                content = get(message["contentUrl"]).decode("utf-8", errors="replace")
            except TransferFailed as exc:
                content = f"(could not fetch the message: {exc})"
        note = " (cancelled)" if message.get("cancelled") else ""
        print(shown(f"\n[{message['role']}, {local_time(message.get('createdAt'))}]{note}\n{content}"))
    return 0


def sessions_delete(ctx: Context, args: argparse.Namespace) -> int:
    with ctx.connect() as client:
        ctx.request(client, "session.delete", sessionId=args.session_id)
    print(f"Deleted session {args.session_id} with its messages and context files.")
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    output = argparse.ArgumentParser(add_help=False, parents=[common])
    output.add_argument("--json", action="store_true", help="print the backend's answer as JSON")
    commands.add_parser("models", parents=[output], help="the models you may use").set_defaults(handler=models)
    commands.add_parser("usage", parents=[output], help="your limits and what you used").set_defaults(handler=usage)
    sessions = commands.add_parser("sessions", parents=[common], help="your chat sessions: list, create, show, delete")
    actions = sessions.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", parents=[output], help="your sessions, most recent first")
    listing.add_argument("--limit", type=_positive, help="at most this many (default: all)")
    listing.set_defaults(handler=sessions_list)
    create = actions.add_parser("create", parents=[common], help="start a session; prints its id")
    create.add_argument("--title", help="a title for the session")
    create.set_defaults(handler=sessions_create)
    for name, handler, text in (("show", sessions_show, "a session and its messages"),
                                ("delete", sessions_delete, "delete a session, its messages and context files")):
        action = actions.add_parser(name, parents=[output] if name == "show" else [common], help=text)
        action.add_argument("session_id", metavar="SESSION")
        action.set_defaults(handler=handler)

