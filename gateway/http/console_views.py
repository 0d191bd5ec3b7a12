"""The review console's HTML: pure functions from review items to escaped markup (no template engine).

Every value that did not come from this file goes through `esc` (html.escape, quotes included) before it
is placed in the page, in text and in attributes alike. Held content is untrusted text (a prompt is
whatever the app's user typed), so a `<script>` in it must reach the reviewer as the characters
`<script>`, never as markup. The Content-Security-Policy the handlers send (no inline script, no inline
handlers) is the second line of that defence, not the first.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from gateway.exchange import Endpoint
from gateway.review.display import age, content_text, message_text
from gateway.review.edits import edited_text
from gateway.review.store import FINAL, LIVE, STATES, ReviewItem

BASE = "/console"


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


@dataclass(frozen=True, slots=True)
class Chrome:
    """What every page around the content needs: the asset URLs, the signed-in reviewer, the CSRF value."""

    css: str
    js: str
    reviewer: str | None = None  # None: signed out (the sign-in page)
    csrf: str = ""
    can_sign_out: bool = True  # False with auth.mode none: there is no token to drop


@dataclass(frozen=True, slots=True)
class Filters:
    """The queue page's query: one queue or all, open states (pending, claimed, dead) or one state."""

    queue: str = ""
    state: str = ""

    def query(self) -> str:
        return urlencode({key: value for key, value in (("queue", self.queue), ("state", self.state)) if value})


def review_url(review_id: str, action: str = "") -> str:
    return f"{BASE}/reviews/{quote(review_id, safe='')}{'/' + action if action else ''}"


# -- the page around everything ----------------------------------------------------------------------------
def document(title: str, body: str, chrome: Chrome) -> str:
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{esc(title)} · Review console</title>"
        f"<link rel=\"stylesheet\" href=\"{esc(chrome.css)}\">"
        f"<script src=\"{esc(chrome.js)}\" defer></script></head>"
        f"<body>{_header(chrome)}<main>{body}</main></body></html>\n"
    )


def _header(chrome: Chrome) -> str:
    who = ""
    if chrome.reviewer is not None:
        sign_out = (
            f"<form method=\"post\" action=\"{BASE}/logout\" class=\"inline\">{csrf_field(chrome.csrf)}"
            "<button type=\"submit\" id=\"sign-out\">Sign out</button></form>"
        ) if chrome.can_sign_out else ""
        who = f"<span class=\"who\">Signed in as <strong id=\"reviewer\">{esc(chrome.reviewer)}</strong></span>{sign_out}"
    return f"<header><a class=\"brand\" href=\"{BASE}/\">Review console</a><nav>{who}</nav></header>"


def csrf_field(value: str) -> str:
    return f"<input type=\"hidden\" name=\"csrf\" value=\"{esc(value)}\">"


def notice(message: str, kind: str) -> str:
    """A flash (kind ok) or an error (kind error), shown above the page's content."""
    return f"<p class=\"notice {esc(kind)}\" role=\"{'alert' if kind == 'error' else 'status'}\">{esc(message)}</p>" if message else ""


# -- sign-in -------------------------------------------------------------------------------------------------
def sign_in(message: str = "") -> str:
    return (
        "<h1>Sign in</h1>"
        f"{notice(message, 'error')}"
        "<p>Paste a gateway API key or token that holds the <code>reviewer</code> role.</p>"
        f"<form method=\"post\" action=\"{BASE}/login\" class=\"sign-in\" autocomplete=\"off\">"
        "<label for=\"token\">Token</label>"
        "<input type=\"password\" id=\"token\" name=\"token\" required autofocus spellcheck=\"false\">"
        "<button type=\"submit\" id=\"sign-in\">Sign in</button></form>"
    )


def refused(message: str) -> str:
    return f"<h1>Not available</h1>{notice(message, 'error')}"


# -- the queue -----------------------------------------------------------------------------------------------
def queue_page(items: Sequence[ReviewItem], filters: Filters, now: float, *, flash: str = "", error: str = "") -> str:
    return (
        "<h1>Review queue</h1>"
        f"{notice(flash, 'ok')}{notice(error, 'error')}"
        f"{_filter_form(filters)}"
        f"<div id=\"queue\" data-poll=\"{esc(BASE + '/queue?' + filters.query())}\" aria-live=\"polite\">"
        f"{queue_fragment(items, filters, now)}</div>"
    )


def _filter_form(filters: Filters) -> str:
    options = [("", "open (pending, claimed, dead)"), *((state, state) for state in (*sorted(LIVE), *sorted(FINAL)))]
    choices = "".join(
        f"<option value=\"{esc(value)}\"{' selected' if value == filters.state else ''}>{esc(label)}</option>" for value, label in options
    )
    refresh = f"{BASE}/?{filters.query()}" if filters.query() else f"{BASE}/"
    return (
        f"<form method=\"get\" action=\"{BASE}/\" class=\"filters\">"
        f"<label>Queue <input name=\"queue\" value=\"{esc(filters.queue)}\" placeholder=\"all\"></label>"
        f"<label>State <select name=\"state\">{choices}</select></label>"
        "<button type=\"submit\">Filter</button>"
        f"<a href=\"{esc(refresh)}\" id=\"refresh\">Refresh</a></form>"
    )


def queue_fragment(items: Sequence[ReviewItem], filters: Filters, now: float) -> str:
    """The part of the queue page that the page's script swaps in every few seconds."""
    stamp = time.strftime("%H:%M:%S UTC", time.gmtime(now))
    if not items:
        return f"<p class=\"meta\">Updated {stamp}.</p><p class=\"empty\" id=\"empty\">Nothing here: no {esc(_scope(filters))}.</p>"
    sections = "".join(_queue_section(name, group, now) for name, group in _by_queue(items).items())
    return f"<p class=\"meta\">Updated {stamp} · {len(items)} item{'s' if len(items) != 1 else ''}.</p>{sections}"


def _scope(filters: Filters) -> str:
    what = f"{filters.state} items" if filters.state else "open items"
    return f"{what} in queue {filters.queue}" if filters.queue else what


def _by_queue(items: Iterable[ReviewItem]) -> dict[str, list[ReviewItem]]:
    groups: dict[str, list[ReviewItem]] = {}
    for item in sorted(items, key=lambda item: (item.queue, item.created)):
        groups.setdefault(item.queue, []).append(item)
    return groups


def _queue_section(name: str, items: Sequence[ReviewItem], now: float) -> str:
    counts = {state: sum(1 for item in items if item.state == state) for state in STATES}
    summary = " · ".join(f"{count} {state}" for state, count in sorted(counts.items()) if count)
    rows = "".join(_queue_row(item, now) for item in items)
    link = f"{BASE}/?{urlencode({'queue': name})}"
    return (
        f"<section class=\"queue\"><h2><a href=\"{esc(link)}\">{esc(name)}</a> <span class=\"count\">{esc(summary)}</span></h2>"
        "<table><thead><tr><th>Item</th><th>State</th><th>Age</th><th>Rule</th><th>Principal</th><th>Reason</th>"
        f"<th>Deadline</th></tr></thead><tbody>{rows}</tbody></table></section>"
    )


def _queue_row(item: ReviewItem, now: float) -> str:
    claimed = f" by {item.claimed_by}" if item.state == "claimed" and item.claimed_by else ""
    return (
        f"<tr class=\"item state-{esc(item.state)}\" data-id=\"{esc(item.id)}\">"
        f"<td><a class=\"open\" href=\"{esc(review_url(item.id))}\"><code>{esc(item.id[:12])}</code></a></td>"
        f"<td>{esc(item.state + claimed)}</td><td>{esc(age(now - item.created))}</td>"
        f"<td>{esc(item.policy)}/{esc(item.rule)}</td><td>{esc(principal_text(item.principal))}</td>"
        f"<td class=\"reason\">{esc(item.reason)}</td><td>{esc(until(item.deadline, now))}</td></tr>"
    )


# -- one item -------------------------------------------------------------------------------------------------
def item_page(item: ReviewItem, csrf: str, now: float, *, flash: str = "", error: str = "") -> str:
    return (
        f"<p><a href=\"{BASE}/\">← Queue</a></p>"
        f"<h1>Review <code>{esc(item.id)}</code> <span class=\"badge state-{esc(item.state)}\" id=\"state\">{esc(item.state)}</span></h1>"
        f"{notice(flash, 'ok')}{notice(error, 'error')}"
        f"{_facts(item, now)}{_held(item)}{_actions(item, csrf)}"
    )


def _facts(item: ReviewItem, now: float) -> str:
    facts: list[tuple[str, str]] = [
        ("Reason", item.reason), ("Queue", item.queue), ("Phase", item.phase), ("Rule", item.rule), ("Policy", item.policy),
        ("Policy version", item.policy_version), ("Principal", principal_text(item.principal)), ("Request id", item.request_id),
        ("Created", f"{timestamp(item.created)} ({age(now - item.created)} ago)"),
        ("Deadline", f"{timestamp(item.deadline)} ({until(item.deadline, now)}; then {item.on_timeout})"),
        ("Deliveries", str(item.deliveries)),
    ]
    if item.state == "claimed" and item.claimed_by:
        lease = f" until {timestamp(item.claim_expires)}" if item.claim_expires else ""
        facts.append(("Claimed by", f"{item.claimed_by}{lease}"))
    if item.decision:
        comment = item.decision.get("comment") or ""
        decided = f"{item.decision.get('decision')} by {item.decision.get('reviewer')}{f': {comment}' if comment else ''}"
        facts.append(("Decision", decided))
    rows = "".join(f"<dt>{esc(name)}</dt><dd data-fact=\"{esc(name.lower())}\">{esc(value)}</dd>" for name, value in facts)
    return f"<dl class=\"facts\">{rows}</dl>"


def _held(item: ReviewItem) -> str:
    if not item.content:
        return "<p class=\"empty\" id=\"forgotten\">The held content is gone: the review is over and nothing needs it any more.</p>"
    endpoint = _endpoint(item)
    parts = [f"<section class=\"held\" id=\"held-request\"><h2>Held request</h2>{request_text(item.content.get('request'), endpoint)}</section>"]
    if item.phase == "response":
        parts.append(f"<section class=\"held\" id=\"held-reply\"><h2>Held reply</h2>{reply_text(item.content.get('reply'), endpoint)}</section>")
    return "".join(parts)


def _endpoint(item: ReviewItem) -> Endpoint:
    try:
        return Endpoint(item.content.get("endpoint") or Endpoint.CHAT.value)
    except ValueError:
        return Endpoint.CHAT


def request_text(body: Any, endpoint: Endpoint) -> str:
    """The held request as a reviewer reads it: the model, then each message (or the prompt, or the input)."""
    if not isinstance(body, Mapping):
        return "<p class=\"empty\">No request body.</p>"
    model = f"<p class=\"meta\">Model <code>{esc(body.get('model', '?'))}</code></p>"
    if endpoint is Endpoint.CHAT:
        messages = body.get("messages")
        shown = "".join(_message(message) for message in messages) if isinstance(messages, list) else ""
    else:
        field = "prompt" if endpoint is Endpoint.COMPLETIONS else "input"
        shown = _block(field, content_text(body.get(field)))
    return f"{model}{shown}{_raw(body)}"


def reply_text(reply: Any, endpoint: Endpoint) -> str:
    """The held reply: each choice's answer (text, or the assistant message and any tool calls)."""
    if not isinstance(reply, Mapping):
        return "<p class=\"empty\">No reply.</p>"
    choices = reply.get("choices")
    shown = ""
    for index, choice in enumerate(choices if isinstance(choices, list) else []):
        if not isinstance(choice, Mapping):
            continue
        if endpoint is Endpoint.COMPLETIONS:
            shown += _block(f"choice {index}", content_text(choice.get("text")))
        else:
            shown += _message(choice.get("message"), f"choice {index}")
    return f"{shown}{_raw(reply)}"


def _message(message: Any, label: str = "") -> str:
    if not isinstance(message, dict):
        return _block(label or "message", content_text(message))
    name, text = message_text(message)
    return _block(f"{label} {name}".strip(), text, str(message.get("role", "?")))


def _block(label: str, text: str, role: str = "") -> str:
    return (
        f"<div class=\"message role-{esc(role or 'text')}\"><div class=\"role\">{esc(label)}</div>"
        f"<pre class=\"text\">{esc(text)}</pre></div>"
    )


def _raw(body: Mapping[str, Any]) -> str:
    return f"<details><summary>Full JSON</summary><pre class=\"raw\">{esc(json.dumps(body, indent=2, ensure_ascii=False))}</pre></details>"


def _actions(item: ReviewItem, csrf: str) -> str:
    if item.final:
        return ""
    if not item.content:
        return "<p class=\"empty\">This review has no content to decide on.</p>"
    action = esc(review_url(item.id, "decision"))
    hidden = csrf_field(csrf)
    claim = (
        f"<form method=\"post\" action=\"{esc(review_url(item.id, 'claim'))}\" class=\"claim\">{hidden}"
        "<button type=\"submit\" id=\"claim\">Claim</button> <span class=\"hint\">a lease, so nobody else decides it meanwhile</span></form>"
    )
    approve = (
        f"<form method=\"post\" action=\"{action}\" class=\"decide approve\">{hidden}<input type=\"hidden\" name=\"decision\" value=\"approve\">"
        "<label>Comment <input name=\"comment\" id=\"approve-comment\" maxlength=\"2000\"></label>"
        "<button type=\"submit\" id=\"approve\">Approve</button></form>"
    )
    reject = (
        f"<form method=\"post\" action=\"{action}\" class=\"decide reject\">{hidden}<input type=\"hidden\" name=\"decision\" value=\"reject\">"
        "<label>Comment <input name=\"comment\" id=\"reject-comment\" maxlength=\"2000\"></label>"
        "<button type=\"submit\" id=\"reject\">Reject</button></form>"
    )
    text = edited_text(item.content, _endpoint(item), item.phase)
    what = "answer" if item.phase == "response" else "prompt"
    edit = (
        f"<form method=\"post\" action=\"{action}\" class=\"decide edit\">{hidden}<input type=\"hidden\" name=\"decision\" value=\"edit\">"
        f"<label for=\"edit-content\">Edited {what}</label>"
        f"<textarea name=\"content\" id=\"edit-content\" rows=\"6\">\n{esc(text)}</textarea>"
        "<label>Comment <input name=\"comment\" id=\"edit-comment\" maxlength=\"2000\"></label>"
        "<button type=\"submit\" id=\"edit\">Approve with edit</button></form>"
    )
    return f"<section class=\"actions\"><h2>Decide</h2>{claim}{approve}{reject}{edit}</section>"


# -- small formats ---------------------------------------------------------------------------------------------
def principal_text(principal: Mapping[str, str | None]) -> str:
    return " · ".join(f"{key} {value}" for key, value in principal.items() if value) or "anonymous"


def until(deadline: float, now: float) -> str:
    return f"in {age(deadline - now)}" if deadline > now else "passed"


def timestamp(when: float | None) -> str:
    return "" if when is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(when))
