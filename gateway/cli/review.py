"""`gateway review list|show|claim|approve|reject|edit`: the human review queue of a running gateway.

`list` shows the queue (newest first), `show ID` one item with the content it holds (the messages as the
gateway would forward them, request-phase redactions applied; the model's reply for a response-phase
item). `claim ID` takes a lease on an item so other reviewers leave it to you (`review.claim_lease_s`);
`approve`, `reject` and `edit` decide it, once: the waiting request (or the app's poll of
`GET /v1/reviews/{id}`) goes on, is refused with 403 `review_rejected`, or goes on with your text in place
of the prompt (request phase) or of the answer (response phase). An item someone else holds, an item
already decided and an unknown id are refused by the server: exit 1 with its message.

The command calls the gateway's reviewer API (`--url`, `--token`; see `remote`): the credential needs the
`reviewer` role (with `auth.mode: none`, only callers on the gateway's own host are reviewers), and every
decision is audited with its identity.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from gateway.cli.remote import RemoteFailed, add_remote_arguments, call
from gateway.review.display import age, content_text, message_text

# Every state an item can be in (gateway/review/store.py STATES), in the order of its life.
STATE_CHOICES = ("pending", "claimed", "dead", "approved", "rejected", "edited", "expired")
COLUMNS = ("ID", "QUEUE", "STATE", "AGE", "RULE", "APP", "CLAIMED_BY")
UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
EDIT_TARGETS = {  # (phase, endpoint) -> what an edit replaces
    ("request", "chat/completions"): "the last user message",
    ("request", "completions"): "the prompt",
    ("request", "embeddings"): "the input",
    ("response", "chat/completions"): "the answer (the first choice)",
    ("response", "completions"): "the answer (the first choice)",
}
DONE = {"approve": "approved", "reject": "rejected", "edit": "edited"}


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("review", help="list, show and decide the items of the human review queue", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="review_command", required=True, metavar="ACTION")

    def action(name: str, help_text: str, run: Callable[[argparse.Namespace], int], *, item: bool = True) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = actions.add_parser(name, help=help_text, description=help_text)
        if item:
            sub.add_argument("id", metavar="ID", help="the review item's id (from `gateway review list`)")
        add_remote_arguments(sub)
        sub.set_defaults(run=run)
        return sub

    listing = action("list", "the queue, newest first", _list, item=False)
    listing.add_argument("--queue", help="only this queue")
    listing.add_argument("--state", choices=STATE_CHOICES, help="only items in this state (default: all)")
    listing.add_argument("--min-age", type=duration, metavar="SECONDS", help="only items at least this old (seconds, or with s, m, h or d: 15m)")
    listing.add_argument("--limit", type=int, metavar="N", help="at most N items (default 100, at most 500)")
    listing.add_argument("--format", choices=("table", "json"), default="table", help="a table (default), or the API's JSON list")
    show = action("show", "one item: why it was escalated, its state and decision, and the content it holds", _show)
    show.add_argument("--format", choices=("text", "json"), default="text", help="readable text (default), or the API's JSON")
    action("claim", "take a lease on the item: other reviewers can neither claim nor decide it until the lease ends", _claim)
    for name, help_text in (("approve", "let the held exchange go on as it is"), ("reject", "refuse it: the app gets 403 review_rejected")):
        decide = action(name, help_text, _decide)
        decide.add_argument("--comment", default="", help="why (kept in the audit trail; a rejection's comment is shown to the app)")
        decide.set_defaults(decision=name)
    edit = action("edit", "let it go on with your text instead of the prompt (request phase) or the answer (response phase)", _decide)
    text = edit.add_mutually_exclusive_group(required=True)
    text.add_argument("--content", help="the replacement text")
    text.add_argument("--content-file", metavar="PATH", help="read the replacement text from PATH ('-' for stdin; one trailing newline is dropped)")
    edit.add_argument("--comment", default="", help="why (kept in the audit trail)")
    edit.set_defaults(decision="edit")


def duration(text: str) -> float:
    """Seconds, as a number or with a unit: 90, 90s, 15m, 2h, 1d."""
    value = text.strip().lower()
    scale = UNITS.get(value[-1:], None)
    try:
        seconds = float(value[:-1] if scale else value) * (scale or 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (seconds, or a number with s, m, h or d)") from None
    if seconds < 0 or seconds != seconds:  # negative or NaN
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return seconds


def _item_path(review_id: str, action: str = "") -> str:
    return f"/admin/reviews/{quote(review_id, safe='')}{action}"


# -- list --------------------------------------------------------------------------------------------------
def _list(args: argparse.Namespace) -> int:
    query = {"queue": args.queue, "state": args.state, "min_age_s": _number(args.min_age), "limit": _number(args.limit)}
    answer = call(args, "GET", "/admin/reviews", query={name: value for name, value in query.items() if value})
    if args.format == "json":
        print(json.dumps(answer, indent=2))
        return 0
    items = sorted(_items(answer), key=lambda item: float(item.get("created") or 0), reverse=True)
    print("\n".join(table(items)) if items else "no review items")
    return 0


def _number(value: float | int | None) -> str | None:
    if value is None:
        return None
    return str(int(value)) if float(value).is_integer() else str(value)


def _items(answer: Any) -> list[dict[str, Any]]:
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list):
        raise RemoteFailed("GET /admin/reviews: the gateway's answer has no 'data' list (is it a gateway of this version?)")
    return [item for item in data if isinstance(item, dict)]


def table(items: list[dict[str, Any]], *, now: float | None = None) -> list[str]:
    """The queue as aligned columns, a header first: id, queue, state, age, rule, app, claimed_by."""
    now = time.time() if now is None else now
    rows = [COLUMNS] + [(
        str(item.get("id")), str(item.get("queue")), str(item.get("state")), age(now - float(item.get("created") or now)),
        str(item.get("rule") or "-"), str((item.get("principal") or {}).get("app") or "-"), str(item.get("claimed_by") or "-"),
    ) for item in items]
    widths = [max(len(row[column]) for row in rows) for column in range(len(COLUMNS))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]


def _show(args: argparse.Namespace) -> int:
    item = call(args, "GET", _item_path(args.id))
    if args.format == "json":
        print(json.dumps(item, indent=2))
    else:
        print("\n".join(describe(_object(item, f"GET {_item_path(args.id)}"))))
    return 0


def _object(answer: Any, what: str) -> dict[str, Any]:
    if not isinstance(answer, dict):
        raise RemoteFailed(f"{what}: the gateway's answer is not a review item")
    return answer


def describe(item: dict[str, Any], *, now: float | None = None) -> list[str]:
    """One item as a reviewer reads it: what, why, whose, until when, what was decided, and what it holds."""
    now = time.time() if now is None else now
    created, deadline = float(item.get("created") or 0), float(item.get("deadline") or 0)
    principal = item.get("principal") or {}
    lines = [
        f"review {item.get('id')}  queue {item.get('queue')}  {item.get('state')}  ({item.get('phase')} phase)",
        f"  reason:      {_one_line(item.get('reason')) or '-'}",
        f"  rule:        {item.get('policy')}/{item.get('rule')}",
        f"  policy:      version {item.get('policy_version') or '-'}",
        f"  principal:   app {principal.get('app') or '-'}, tenant {principal.get('tenant') or '-'}, sub {principal.get('sub') or '-'}",
        f"  request id:  {item.get('request_id')}",
        f"  created:     {_when(created)} ({age(now - created)} ago)",
        f"  deadline:    {_deadline(item, deadline, now)}",
    ]
    if item.get("state") == "claimed" and item.get("claimed_by"):
        expires = float(item.get("claim_expires") or 0)
        lease = f"lease until {_when(expires)}" if expires > now else "lease lapsed: anyone may claim it"
        lines.append(f"  claimed by:  {item.get('claimed_by')} ({lease}; handed out {item.get('deliveries')} times)")
    elif item.get("deliveries"):
        last = f", last to {item['claimed_by']}" if item.get("claimed_by") else ""
        lines.append(f"  handed out:  {item.get('deliveries')} times{last}")
    lines.append(f"  decision:    {_decision(item.get('decision'))}")
    lines.append("")
    lines.extend(held(item))
    return lines


def _decision(decision: Any) -> str:
    if not isinstance(decision, dict):
        return "none yet"
    text = f"{decision.get('decision')} by {decision.get('reviewer')}"
    if decision.get("ts"):
        text += f" at {_when(float(decision['ts']))}"
    if decision.get("comment"):
        text += f": {_one_line(decision['comment'])}"
    if decision.get("decision") == "edit" and decision.get("content") is not None:
        text += f"\n  edited to:   {_indented(str(decision['content']), 15)}"
    return text


def held(item: dict[str, Any]) -> list[str]:
    """The held content as text: the request's messages (or prompt, or input) and, for a response-phase
    item, the model's reply; a note when the content is gone (dropped once the review ended)."""
    content = item.get("content") or {}
    if not isinstance(content, dict) or not (content.get("request") or content.get("reply")):
        return ["held content: none (dropped once the review ended and its exchange no longer needed it)"]
    endpoint = str(content.get("endpoint") or "chat/completions")
    lines: list[str] = []
    request = content.get("request")
    if isinstance(request, dict):
        model = f", model {request['model']}" if request.get("model") else ""
        lines.append(f"held request ({endpoint}{model}):")
        lines.extend(_request_lines(endpoint, request))
    reply = content.get("reply")
    if isinstance(reply, dict):
        lines.append("")
        model = f" (model {reply['model']})" if reply.get("model") else ""
        lines.append(f"held reply{model}:")
        lines.extend(_reply_lines(endpoint, reply))
    target = EDIT_TARGETS.get((str(item.get("phase")), endpoint))
    if item.get("edit_text") is not None and target:
        lines.append("")
        lines.append(f"`gateway review edit {item.get('id')} --content ...` replaces {target}.")
    return lines


def _request_lines(endpoint: str, request: dict[str, Any]) -> list[str]:
    if endpoint == "chat/completions":
        messages = request.get("messages")
        if not isinstance(messages, list) or not messages:
            return ["  (no messages)"]
        return [_entry(*message_text(message)) for message in messages if isinstance(message, dict)]
    name = "prompt" if endpoint == "completions" else "input"
    value = request.get(name)
    values = value if isinstance(value, list) and value and all(isinstance(part, str) for part in value) else [value]
    return [_entry(name, content_text(part)) for part in values]


def _reply_lines(endpoint: str, reply: dict[str, Any]) -> list[str]:
    choices = [choice for choice in reply.get("choices") or [] if isinstance(choice, dict)]
    if not choices:
        return ["  (no choices)"]
    lines = []
    for number, choice in enumerate(choices):
        lead = f"  choice {number}: " if len(choices) > 1 else "  "
        if endpoint == "completions":
            lines.append(_entry("text", content_text(choice.get("text")), lead))
        else:
            message = choice.get("message")
            lines.append(_entry(*message_text({"role": "assistant", **(message if isinstance(message, dict) else {})}), lead))
    return lines


def _entry(label: str, text: str, lead: str = "  ") -> str:
    """`  [label] text`, continuation lines lined up under the first."""
    first = f"{lead}[{label}] "
    return first + _indented(text, len(first))


def _indented(text: str, width: int) -> str:
    """Continuation lines of a multi-line text lined up under its first line."""
    return ("\n" + " " * width).join(text.splitlines() or [""])


def _one_line(value: Any) -> str:
    return " ".join(str(value or "").split())


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _deadline(item: dict[str, Any], deadline: float, now: float) -> str:
    """When `on_timeout` applies, and whether it still can."""
    on_timeout = item.get("on_timeout")
    if item.get("state") == "expired":
        return f"{_when(deadline)} (passed: on_timeout {on_timeout} applied)"
    if item.get("decision"):
        return f"{_when(deadline)} (not needed: decided)"
    if deadline <= now:
        return f"{_when(deadline)} (passed {age(now - deadline)} ago), then on_timeout: {on_timeout}"
    return f"{_when(deadline)} (in {age(deadline - now)}), then on_timeout: {on_timeout}"


# -- claim and decisions -------------------------------------------------------------------------------------
def _claim(args: argparse.Namespace) -> int:
    path = _item_path(args.id, "/claim")
    item = _object(call(args, "POST", path), f"POST {path}")
    expires = item.get("claim_expires")
    lease = f" until {_when(float(expires))}" if expires else ""
    print(f"claimed {item.get('id')} ({item.get('queue')}) by {item.get('claimed_by')}{lease}")
    return 0


def _decide(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"decision": args.decision, "comment": args.comment}
    if args.decision == "edit":
        body["content"] = args.content if args.content is not None else _read_content(args.content_file)
    path = _item_path(args.id, "/decision")
    item = _object(call(args, "POST", path, body), f"POST {path}")
    decision = item.get("decision") or {}
    comment = f": {_one_line(decision.get('comment'))}" if decision.get("comment") else ""
    print(f"{DONE[args.decision]} {item.get('id')} ({item.get('queue')}) by {decision.get('reviewer')}{comment}")
    return 0


def _read_content(path: str) -> str:
    """The replacement text from a file (or stdin), without the one trailing newline an editor adds."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RemoteFailed(f"{path}: not UTF-8 text") from None
    return text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text
