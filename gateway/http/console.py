"""The review console: server-rendered pages where a reviewer signs in, watches the queue and decides.

    GET  /console                           redirects to /console/
    GET  /console/                          the queue (open items per queue; ?queue=&state= filter), or sign-in
    GET  /console/queue                     the queue's HTML fragment, polled by console.js every 2.5 s
    POST /console/login                     form `token`: checked, then kept in the session cookie
    POST /console/logout                    drops the session cookie
    GET  /console/reviews/{id}              one item: facts, the held request (and reply), the decision forms
    POST /console/reviews/{id}/claim        ReviewService.claim, then back to the item with a notice
    POST /console/reviews/{id}/decision     form `decision` (approve | reject | edit), `comment`, `content`
    GET  /console/static/{name}             console.js and console.css (versioned URLs, cached)

Session: the cookie `gw_console` (HttpOnly, SameSite=Strict, Path=/console, Secure over https, 12 h) holds
the reviewer's own credential, and every console request authenticates it again with the gateway's
authenticator and checks the `reviewer` role: a revoked key or an expired JWT stops working at once, and
no server keeps session state, so any worker of any instance answers any request. With `auth.mode: none`
there is no credential: the console answers loopback callers only (as the admin API does), and the cookie
holds a random value that only anchors the CSRF check.

CSRF: every form carries `csrf`, an HMAC-SHA256 of the cookie's value (the key) over a fixed label. A
page from another site can neither read the cookie nor compute the value, and any instance can check it
without a shared secret. On top: SameSite=Strict, and a POST the browser marks as cross-site (`Sec-Fetch-Site`,
or an `Origin` naming another host) is refused.

Every console answer carries a strict Content-Security-Policy (scripts from /console/static only, no
inline script or handler), X-Frame-Options DENY, Referrer-Policy no-referrer and, pages, Cache-Control
no-store. The HTML itself is built in gateway/http/console_views.py, escaping every value.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy, MultiDictProxy

from gateway.auth import NoAuth
from gateway.errors import AuthenticationFailed, GatewayError, NotFound
from gateway.exchange import ANONYMOUS, Principal
from gateway.http import console_views as views
from gateway.http.headers import reply_headers
from gateway.http.roles import actor
from gateway.pipeline import Pipeline
from gateway.review.service import ReviewService
from gateway.review.store import LIVE, STATES, ReviewItem

log = logging.getLogger(__name__)

BASE = views.BASE
COOKIE = "gw_console"
ROLE = "reviewer"
SESSION_S = 12 * 3600  # the cookie's life; the credential inside is checked on every request regardless
LIST_LIMIT = 200  # per state, on the queue page
COMMENT_MAX = 2000
CSRF_LABEL = b"gateway review console csrf v1"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
DONE = {
    "claim": "You claimed this review: nobody else can decide it while your lease lasts.",
    "approve": "Approved: the exchange goes on.",
    "reject": "Rejected: the app gets review_rejected.",
    "edit": "Approved with your edit.",
}

Form = MultiDictProxy[Any]


class SignedOut(Exception):
    """No valid reviewer credential: the sign-in page (with `message`, if there is something to say)."""

    def __init__(self, message: str = "", status: int = 401) -> None:
        super().__init__(message)
        self.message, self.status = message, status


class Refused(Exception):
    """The console will not serve this request at all (not loopback with auth none, a failed CSRF check)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.message, self.status = message, status


@dataclass(frozen=True, slots=True)
class Session:
    principal: Principal
    secret: str  # the cookie's value: the credential, or (auth none) a random CSRF anchor
    reviewer: str  # the name decisions are recorded under
    new: bool = False  # the cookie is set on this response (auth none, first visit)

    @property
    def csrf(self) -> str:
        return csrf_token(self.secret)


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    url: str  # with a content hash, so it may be cached for good


PageHandler = Callable[[web.Request, Session], Awaitable[web.Response]]
ActionHandler = Callable[[web.Request, Session, Form], Awaitable[web.Response]]


def csrf_token(secret: str) -> str:
    return hmac.new(secret.encode(), CSRF_LABEL, hashlib.sha256).hexdigest()


def load_asset(name: str, content_type: str) -> Asset:
    body = (resources.files("gateway.http") / "console_static" / name).read_bytes()
    return Asset(body, content_type, f"{BASE}/static/{name}?v={hashlib.sha256(body).hexdigest()[:12]}")


class ConsoleHandlers:
    def __init__(self, pipeline: Pipeline, reviews: ReviewService) -> None:
        self.pipeline = pipeline
        self.reviews = reviews
        self.open = isinstance(pipeline.auth, NoAuth)  # auth.mode none: no tokens, loopback callers only
        self.assets = {
            "console.js": load_asset("console.js", "text/javascript"),
            "console.css": load_asset("console.css", "text/css"),
        }

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(BASE, self.to_console),
            web.get(f"{BASE}/", self._page(self.queue)),
            web.get(f"{BASE}/queue", self._page(self.queue_fragment)),
            web.post(f"{BASE}/login", self._secured(self.login)),
            web.post(f"{BASE}/logout", self._action(self.logout)),
            web.get(f"{BASE}/reviews/{{id}}", self._page(self.item)),
            web.post(f"{BASE}/reviews/{{id}}/claim", self._action(self.claim)),
            web.post(f"{BASE}/reviews/{{id}}/decision", self._action(self.decide)),
            web.get(f"{BASE}/static/{{name}}", self._secured(self.static)),
        ]

    # -- pages ---------------------------------------------------------------------------------------------
    async def to_console(self, request: web.Request) -> web.Response:
        return _secure(_redirect(f"{BASE}/"))

    async def queue(self, request: web.Request, session: Session) -> web.Response:
        filters, error = _filters(request.query)
        items = await self._items(filters)
        flash = DONE.get(request.query.get("done", ""), "")
        body = views.queue_page(items, filters, time.time(), flash=flash, error=error)
        return self._html("Review queue", body, session, status=400 if error else 200)

    async def queue_fragment(self, request: web.Request, session: Session) -> web.Response:
        filters, _ = _filters(request.query)
        return web.Response(text=views.queue_fragment(await self._items(filters), filters, time.time()), content_type="text/html")

    async def item(self, request: web.Request, session: Session) -> web.Response:
        return await self._item_page(request, session, flash=DONE.get(request.query.get("done", ""), ""))

    async def static(self, request: web.Request) -> web.Response:
        asset = self.assets.get(request.match_info["name"])
        if asset is None:
            raise Refused(404, "No such file.")
        response = web.Response(body=asset.body, content_type=asset.content_type, charset="utf-8")
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response

    # -- sign-in and actions -------------------------------------------------------------------------------
    async def login(self, request: web.Request) -> web.Response:
        if self.open:
            return _redirect(f"{BASE}/")
        _same_origin(request)
        token = _field(await request.post(), "token").strip().removeprefix("Bearer ").strip()
        try:
            self._check(token, request)
        except SignedOut as refused:
            return self._sign_in(refused.message or "Paste a token to sign in.", refused.status)
        response = _redirect(f"{BASE}/")
        _set_cookie(response, request, token)
        return response

    async def logout(self, request: web.Request, session: Session, form: Form) -> web.Response:
        response = _redirect(f"{BASE}/")
        _drop_cookie(response, request)
        return response

    async def claim(self, request: web.Request, session: Session, form: Form) -> web.Response:
        review_id = request.match_info["id"]
        try:
            await self.reviews.claim(review_id, session.reviewer)
        except GatewayError as error:
            return await self._item_page(request, session, error=error)
        return _redirect(f"{views.review_url(review_id)}?done=claim")

    async def decide(self, request: web.Request, session: Session, form: Form) -> web.Response:
        review_id, decision = request.match_info["id"], _field(form, "decision")
        content = _field(form, "content").replace("\r\n", "\n") if decision == "edit" else None  # forms send CRLF
        try:
            await self.reviews.decide(review_id, session.reviewer, decision, _field(form, "comment")[:COMMENT_MAX], content)
        except GatewayError as error:
            return await self._item_page(request, session, error=error)
        return _redirect(f"{views.review_url(review_id)}?done={decision}")

    # -- the parts ------------------------------------------------------------------------------------------
    async def _items(self, filters: views.Filters) -> list[ReviewItem]:
        queue = filters.queue or None
        states = [filters.state] if filters.state else sorted(LIVE)
        found = await asyncio.gather(*(self.reviews.find(queue=queue, state=state, min_age_s=0, limit=LIST_LIMIT) for state in states))
        return [item for items in found for item in items]

    async def _item_page(self, request: web.Request, session: Session, *, flash: str = "", error: GatewayError | None = None) -> web.Response:
        try:
            item = await self.reviews.get(request.match_info["id"])
        except NotFound as missing:
            return self._html("Not found", views.refused(missing.message), session, status=404)
        body = views.item_page(item, session.csrf, time.time(), flash=flash, error=error.message if error else "")
        return self._html(f"Review {item.id}", body, session, status=error.status if error else 200)

    def _html(self, title: str, body: str, session: Session | None, *, status: int = 200) -> web.Response:
        chrome = views.Chrome(
            css=self.assets["console.css"].url, js=self.assets["console.js"].url,
            reviewer=session.reviewer if session else None, csrf=session.csrf if session else "", can_sign_out=not self.open,
        )
        return web.Response(text=views.document(title, body, chrome), status=status, content_type="text/html")

    def _sign_in(self, message: str = "", status: int = 200) -> web.Response:
        return self._html("Sign in", views.sign_in(message), None, status=status)

    # -- who is asking -------------------------------------------------------------------------------------
    def _session(self, request: web.Request) -> Session:
        secret = request.cookies.get(COOKIE, "")
        if self.open:
            if not self.pipeline.auth.may(ANONYMOUS, ROLE, request.remote):
                raise Refused(403, "With auth.mode none the review console answers only on the gateway's own host (loopback).")
            fresh = not secret
            secret = secret or secrets.token_urlsafe(32)
            return Session(ANONYMOUS, secret, actor(ANONYMOUS, request), new=fresh)
        if not secret:
            raise SignedOut()
        principal = self._check(secret, request)
        return Session(principal, secret, actor(principal, request))

    def _check(self, token: str, request: web.Request) -> Principal:
        """The token's principal if it authenticates and holds the reviewer role; `SignedOut` otherwise."""
        if not token:
            raise SignedOut()
        try:
            principal = self.pipeline.auth.authenticate(CIMultiDictProxy(CIMultiDict(Authorization=f"Bearer {token}")))
        except AuthenticationFailed as failed:
            raise SignedOut(f"Not signed in: {failed.message}") from None
        if not self.pipeline.auth.may(principal, ROLE, request.remote):
            raise SignedOut("Not signed in: this credential does not hold the reviewer role.", 403)
        return principal

    # -- wrappers: session, CSRF, headers -------------------------------------------------------------------
    def _page(self, handler: PageHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
        """A GET page: the reviewer's session, or the sign-in page (or a redirect to it)."""

        async def page(request: web.Request) -> web.Response:
            session: Session | None = None
            try:
                session = self._session(request)
                response = await handler(request, session)
            except SignedOut as out:
                response = self._signed_out(request, out)
            if session is not None and session.new:
                _set_cookie(response, request, session.secret)
            return response

        return self._secured(page)

    def _action(self, handler: ActionHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
        """A form POST: same origin, the reviewer's session, and the form's CSRF value."""

        async def action(request: web.Request) -> web.Response:
            _same_origin(request)
            try:
                session = self._session(request)
            except SignedOut:
                return _redirect(f"{BASE}/")
            form = await request.post()
            if not hmac.compare_digest(_field(form, "csrf").encode(), session.csrf.encode()):
                raise Refused(403, "This form is not from your console session (CSRF check failed): reload the page and try again.")
            return await handler(request, session, form)

        return self._secured(action)

    def _secured(self, handler: Callable[[web.Request], Awaitable[web.Response]]) -> Callable[[web.Request], Awaitable[web.Response]]:
        """Refusals and store failures as readable pages, and the security headers on every answer."""

        async def secured(request: web.Request) -> web.Response:
            try:
                response = await handler(request)
            except web.HTTPException:
                raise  # aiohttp's own answers (a body over the size limit)
            except Refused as refused:
                response = self._html("Not available", views.refused(refused.message), None, status=refused.status)
            except Exception as exc:  # noqa: BLE001 - the review store may be away: say so on a page, not a traceback
                log.warning("review console: %s %s failed (%s: %s)", request.method, request.path, type(exc).__name__, exc)
                response = self._html("Unavailable", views.refused("The review queue is unavailable right now; try again shortly."), None, status=503)
            response.headers.update(reply_headers(request, self.pipeline))
            return _secure(response)

        return secured

    def _signed_out(self, request: web.Request, out: SignedOut) -> web.Response:
        """The queue page shows the sign-in form (dropping a stale cookie); the fragment answers 401 (the
        script reloads the page); any other page redirects to the sign-in page."""
        if request.path == f"{BASE}/":
            response = self._sign_in(out.message, out.status if out.message else 200)
            if COOKIE in request.cookies:
                _drop_cookie(response, request)
            return response
        if request.path == f"{BASE}/queue":
            return web.Response(status=401, text="signed out", content_type="text/plain")
        return _redirect(f"{BASE}/")


def _secure(response: web.Response) -> web.Response:
    response.headers.update(SECURITY_HEADERS)
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _set_cookie(response: web.Response, request: web.Request, value: str) -> None:
    response.set_cookie(COOKIE, value, path=BASE, httponly=True, samesite="Strict", secure=request.secure, max_age=SESSION_S)


def _drop_cookie(response: web.Response, request: web.Request) -> None:
    response.del_cookie(COOKIE, path=BASE, httponly=True, samesite="Strict", secure=request.secure)


def _same_origin(request: web.Request) -> None:
    """Refuse a POST a browser says came from another site: by `Sec-Fetch-Site`, else by `Origin`.

    `Origin: null` is let through: with `Referrer-Policy: no-referrer` browsers send it for the console's
    own forms. SameSite=Strict and the CSRF value are the checks that do not depend on what a browser sends.
    """
    site = request.headers.get("Sec-Fetch-Site")
    origin = request.headers.get("Origin")
    if site is not None:
        foreign = site not in ("same-origin", "none")
    else:
        foreign = origin not in (None, "null") and urlsplit(origin).netloc != request.host
    if foreign:
        raise Refused(403, "This form was sent from another site; open the console itself and try again.")


def _filters(query: Any) -> tuple[views.Filters, str]:
    """The queue page's filters from the query string, and an error for a state that does not exist."""
    queue, state = str(query.get("queue", "")).strip(), str(query.get("state", "")).strip()
    if state and state not in STATES:
        return views.Filters(queue, ""), f"There is no state {state!r}; showing open items."
    return views.Filters(queue, state), ""


def _field(form: Form, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""
