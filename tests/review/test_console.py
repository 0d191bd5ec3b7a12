"""The review console (/console/): a real headless Chromium signs in, watches the queue, decides; plain
HTTP checks the cookie, CSRF, headers and refusals; the views escape held content.

The browser tests need Debian's `chromium` and `chromium-driver` packages (.ci/run installs them): without
them they fail, they do not skip. One browser serves the whole module; each test clears its cookies.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlencode, urlsplit

import jwt
import openai
import pytest
from aiohttp.test_utils import make_mocked_request

from gateway.http.app import RELOADER
from gateway.http.console import COOKIE, ConsoleHandlers, csrf_token
from gateway.http.console_views import Filters, item_page, queue_fragment
from gateway.review.store import ReviewItem
from gateway.testing.upstream import FakeUpstream, Reply
from review_support import Reviewer, error_of, escalate_policy, in_background
from support import sdk_client

REFUND = "please refund 900 dollars"
APP_KEY, ANN_KEY, BOB_KEY = "sk-app-console", "sk-ann-console", "sk-bob-console"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
MISSING_BROWSER = (
    "The review console's browser tests need a headless Chromium and its driver: install Debian's "
    "`chromium` and `chromium-driver` packages (apt-get install chromium chromium-driver; .ci/run does) "
    "and selenium (pip install -e '.[dev]')."
)


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


KEYS = {"auth": {"mode": "api_key", "api_keys": [
    {"sha256": _sha(APP_KEY), "app": "shop"},
    {"sha256": _sha(ANN_KEY), "app": "ann", "roles": ["reviewer"]},
    {"sha256": _sha(BOB_KEY), "app": "bob", "roles": ["reviewer"]},
]}}


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    return tmp_path / "policies"


def ask(client: openai.OpenAI, text: str = REFUND) -> Any:
    return client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": text}])


def rejection(client: openai.OpenAI, text: str = REFUND) -> dict[str, Any]:
    with pytest.raises(openai.PermissionDeniedError) as raised:
        ask(client, text)
    return error_of(raised.value)


# -- the browser ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless Chromium for the module. Missing: the tests fail with how to install it."""
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.fail(f"{MISSING_BROWSER} Not found: {CHROMIUM if not os.access(CHROMIUM, os.X_OK) else CHROMEDRIVER}.")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail(MISSING_BROWSER)
    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


@pytest.fixture
def browser(chromium: Any) -> Any:
    """The module's browser with no cookies: gateways of earlier tests shared the host (cookies ignore ports)."""
    chromium.get("about:blank")
    chromium.execute_cdp_cmd("Network.clearBrowserCookies", {})
    return chromium


def wait_for(driver: Any, css: str, timeout: float = 10) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css)))


def find(driver: Any, css: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css)


def find_all(driver: Any, css: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, css))


def sign_in(driver: Any, url: str, token: str) -> None:
    driver.get(f"{url}/console/")
    field = wait_for(driver, "#token")
    field.send_keys(token)
    find(driver, "#sign-in").click()
    wait_for(driver, "#reviewer, .notice.error")


def click_and_wait(driver: Any, button: str, then: str) -> None:
    find(driver, button).click()
    wait_for(driver, then)


def assert_no_alert(driver: Any) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018 - reading it is the probe


def test_sign_in_watch_the_queue_live_open_and_approve(make_gateway: Any, policy_dir: Path, upstream: FakeUpstream, browser: Any) -> None:
    escalate_policy(policy_dir, wait_s=20)
    gateway = make_gateway(**KEYS)
    sign_in(browser, gateway.url, ANN_KEY)
    assert find(browser, "#reviewer").text == "ann"
    [cookie] = browser.get_cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
    wait_for(browser, "#empty")
    browser.execute_script("window.notReloaded = true;")
    with sdk_client(gateway, api_key=APP_KEY) as client:
        waiting = in_background(lambda: client.chat.completions.with_raw_response.create(
            model="gpt-test", messages=[{"role": "user", "content": REFUND}]))
        row = wait_for(browser, "tr.item", timeout=8)  # appears by the page's polling, not by a reload
        assert browser.execute_script("return window.notReloaded === true;")
        assert "pending" in row.text and "big-refund" in row.text and "app shop" in row.text
        find(browser, "tr.item a.open").click()
        wait_for(browser, "#held-request")
        assert find(browser, "#state").text == "pending"
        assert REFUND in find(browser, "#held-request").text
        assert find(browser, "[data-fact='rule']").text == "big-refund"
        assert len(find(browser, "[data-fact='policy version']").text) == 64
        assert find(browser, "#edit-content").get_property("value") == REFUND
        assert upstream.received == []
        click_and_wait(browser, "#claim", ".notice.ok")
        assert find(browser, "#state").text == "claimed" and "ann" in find(browser, "[data-fact='claimed by']").text
        find(browser, "#approve-comment").send_keys("customer verified")
        click_and_wait(browser, "#approve", ".notice.ok")
        assert find(browser, "#state").text == "approved"
        assert "approve by ann: customer verified" in find(browser, "[data-fact='decision']").text
        raw = waiting.result(timeout=15)
    assert raw.parse().choices[0].message.content  # the fake upstream's answer reached the waiting SDK call
    assert len(upstream.received) == 1 and upstream.received[0].body["messages"][0]["content"] == REFUND


def test_edit_sends_the_reviewers_text_upstream(make_gateway: Any, policy_dir: Path, upstream: FakeUpstream, browser: Any) -> None:
    escalate_policy(policy_dir, wait_s=20)
    gateway = make_gateway(**KEYS)
    sign_in(browser, gateway.url, ANN_KEY)
    with sdk_client(gateway, api_key=APP_KEY) as client:
        waiting = in_background(lambda: ask(client))
        item = Reviewer(gateway.url, ANN_KEY).wait_for_item(state="pending")
        browser.get(f"{gateway.url}/console/reviews/{item['id']}")
        box = wait_for(browser, "#edit-content")
        box.clear()
        box.send_keys("please refund 100 dollars\nno more")
        find(browser, "#edit-comment").send_keys("capped")
        click_and_wait(browser, "#edit", ".notice.ok")
        assert find(browser, "#state").text == "edited"
        waiting.result(timeout=15)
    assert upstream.received[0].body["messages"][0]["content"] == "please refund 100 dollars\nno more"  # CRLF from the form undone


def test_reject_with_a_comment(make_gateway: Any, policy_dir: Path, upstream: FakeUpstream, browser: Any) -> None:
    escalate_policy(policy_dir, wait_s=20)
    gateway = make_gateway(**KEYS)
    sign_in(browser, gateway.url, ANN_KEY)
    with sdk_client(gateway, api_key=APP_KEY) as client:
        waiting = in_background(lambda: rejection(client))
        item = Reviewer(gateway.url, ANN_KEY).wait_for_item(state="pending")
        browser.get(f"{gateway.url}/console/reviews/{item['id']}")
        wait_for(browser, "#reject-comment").send_keys("not eligible")
        click_and_wait(browser, "#reject", ".notice.ok")
        assert find(browser, "#state").text == "rejected"
        assert find_all(browser, "#approve") == []  # a final review has no forms
        error = waiting.result(timeout=15)
    assert error["code"] == "review_rejected" and "not eligible" in error["message"] and error["review_id"] == item["id"]
    assert upstream.received == []


def test_wrong_token_and_app_key_are_refused_at_sign_in(make_gateway: Any, browser: Any) -> None:
    gateway = make_gateway(**KEYS)
    sign_in(browser, gateway.url, "sk-not-a-key")
    assert "Unknown API key" in find(browser, ".notice.error").text and find_all(browser, "#reviewer") == []
    sign_in(browser, gateway.url, APP_KEY)
    assert "reviewer role" in find(browser, ".notice.error").text and find_all(browser, "#reviewer") == []
    assert browser.get_cookies() == []
    browser.get(f"{gateway.url}/console/reviews/whatever")
    wait_for(browser, "#token")  # signed out: redirected to sign-in


def test_the_live_queue_returns_to_sign_in_when_the_session_ends(make_gateway: Any, browser: Any) -> None:
    gateway = make_gateway(**KEYS)
    sign_in(browser, gateway.url, ANN_KEY)
    wait_for(browser, "#empty")
    browser.execute_cdp_cmd("Network.clearBrowserCookies", {})  # as if the key were revoked: the next poll is refused
    wait_for(browser, "#token", timeout=8)


def test_held_markup_renders_as_inert_text(make_gateway: Any, policy_dir: Path, browser: Any) -> None:
    escalate_policy(policy_dir, wait_s=20)
    gateway = make_gateway(**KEYS)
    probe = 'refund <img src=x onerror="alert(1)"><script>document.body.dataset.xss = "1"</script></textarea><b id=owned>x</b>'
    sign_in(browser, gateway.url, ANN_KEY)
    wait_for(browser, "#empty")
    with sdk_client(gateway, api_key=APP_KEY) as client:
        waiting = in_background(lambda: rejection(client, probe))
        wait_for(browser, "tr.item", timeout=8)  # swapped in by the script: still inert
        assert_no_alert(browser)
        find(browser, "tr.item a.open").click()
        held = wait_for(browser, "#held-request pre.text")
        assert held.text == probe  # visible, character for character
        assert find(browser, "#edit-content").get_property("value") == probe
        assert_no_alert(browser)
        assert find_all(browser, "main img") == [] and find_all(browser, "#owned") == [] and find_all(browser, "main script") == []
        assert browser.execute_script("return document.body.dataset.xss === undefined;")
        click_and_wait(browser, "#reject", ".notice.ok")
        assert waiting.result(timeout=15)["code"] == "review_rejected"


# -- plain HTTP ----------------------------------------------------------------------------------------------
@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    text: str

    def header(self, name: str) -> str:
        return self.headers.get(name) or ""

    def cookies(self) -> list[str]:
        return self.headers.get_all("Set-Cookie") or []


@dataclass
class Browserless:
    """The console over raw HTTP, no redirects followed: what a form post or a forger sends."""

    url: str
    cookies: dict[str, str] = field(default_factory=dict)

    def call(self, method: str, path: str, form: dict[str, str] | None = None, headers: dict[str, str] | None = None) -> Answer:
        parts = urlsplit(self.url)
        connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
        sent = dict(headers or {})
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        body = urlencode(form).encode() if form is not None else None
        if body is not None:
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            answer = Answer(response.status, response.headers, response.read().decode())
        finally:
            connection.close()
        for cookie in answer.cookies():
            name, _, value = cookie.split(";")[0].partition("=")
            if "Max-Age=0" in cookie:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value.strip('"')
        return answer

    def csrf(self, path: str = "/console/") -> str:
        match = re.search(r'name="csrf" value="([0-9a-f]+)"', self.call("GET", path).text)
        assert match, "no CSRF field on the page"
        return match.group(1)


def signed_in(url: str, token: str = ANN_KEY) -> Browserless:
    console = Browserless(url)
    answer = console.call("POST", "/console/login", {"token": token})
    assert answer.status == 303 and answer.header("Location") == "/console/", answer.text
    return console


def pending_review(gateway: Any) -> str:
    with sdk_client(gateway, api_key=APP_KEY) as client:
        error = rejection(client)
    assert error["code"] == "review_pending"
    return str(error["review_id"])


def test_session_cookie_flags_and_security_headers(make_gateway: Any) -> None:
    gateway = make_gateway(**KEYS)
    console = Browserless(gateway.url)
    page = console.call("GET", "/console/")
    assert page.status == 200 and 'name="token"' in page.text and page.cookies() == []
    answer = console.call("POST", "/console/login", {"token": ANN_KEY})
    assert answer.status == 303
    [cookie] = answer.cookies()
    flags = [flag.strip().lower() for flag in cookie.split(";")[1:]]
    assert cookie.startswith(f"{COOKIE}=") and "httponly" in flags and "samesite=strict" in flags and "path=/console" in flags
    assert "secure" not in flags  # plain http here; https requests get Secure
    for path in ("/console/", "/console/queue"):
        answer = console.call("GET", path)
        assert answer.status == 200 and answer.header("Content-Type").startswith("text/html")
        csp = answer.header("Content-Security-Policy")
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert answer.header("X-Frame-Options") == "DENY" and answer.header("Referrer-Policy") == "no-referrer"
        assert answer.header("Cache-Control") == "no-store" and answer.header("X-Content-Type-Options") == "nosniff"
    assert "Signed in as" in console.call("GET", "/console/").text
    script = re.search(r'<script src="(/console/static/console\.js\?v=[0-9a-f]+)"', console.call("GET", "/console/").text)
    assert script and "<script>" not in console.call("GET", "/console/").text  # no inline script anywhere
    asset = console.call("GET", script.group(1))
    assert asset.status == 200 and asset.header("Content-Type").startswith("text/javascript") and "fetch(" in asset.text
    assert "immutable" in asset.header("Cache-Control")
    assert console.call("GET", "/console/static/nope.js").status == 404
    out = console.call("POST", "/console/logout", {"csrf": console.csrf()})
    assert out.status == 303 and COOKIE not in console.cookies
    assert 'name="token"' in console.call("GET", "/console/").text


def test_posts_need_the_csrf_value_and_the_same_origin(make_gateway: Any, policy_dir: Path) -> None:
    escalate_policy(policy_dir, wait_s=0)
    gateway = make_gateway(**KEYS)
    review_id = pending_review(gateway)
    console = signed_in(gateway.url)
    decision = f"/console/reviews/{review_id}/decision"
    assert console.csrf() == csrf_token(ANN_KEY)  # derived from the credential: any worker or instance can check it
    for form in ({"decision": "approve"}, {"decision": "approve", "csrf": "0" * 64}, {"decision": "approve", "csrf": csrf_token(BOB_KEY)}):
        refused = console.call("POST", decision, form)
        assert refused.status == 403 and "CSRF" in refused.text and refused.header("Content-Type").startswith("text/html")
    cross = console.call("POST", decision, {"decision": "approve", "csrf": console.csrf()}, {"Origin": "https://evil.example"})
    assert cross.status == 403 and "another site" in cross.text
    fetched = console.call("POST", decision, {"decision": "approve", "csrf": console.csrf()}, {"Sec-Fetch-Site": "cross-site", "Origin": "null"})
    assert fetched.status == 403 and "another site" in fetched.text
    assert console.call("POST", "/console/login", {"token": ANN_KEY}, {"Origin": "https://evil.example"}).status == 403
    assert Reviewer(gateway.url, ANN_KEY).call("GET", f"/admin/reviews/{review_id}")[1]["state"] == "pending"
    done = console.call("POST", decision, {"decision": "approve", "csrf": console.csrf()}, {"Origin": gateway.url})
    assert done.status == 303 and done.header("Location") == f"/console/reviews/{review_id}?done=approve"
    shown = Reviewer(gateway.url, ANN_KEY).call("GET", f"/admin/reviews/{review_id}")[1]
    assert shown["state"] == "approved" and shown["decision"]["reviewer"] == "ann"


def test_signed_out_requests_go_to_sign_in(make_gateway: Any, policy_dir: Path) -> None:
    escalate_policy(policy_dir, wait_s=0)
    gateway = make_gateway(**KEYS)
    review_id = pending_review(gateway)
    console = Browserless(gateway.url)
    assert console.call("GET", "/console").header("Location") == "/console/"
    page = console.call("GET", "/console/")
    assert page.status == 200 and 'action="/console/login"' in page.text and "Review queue" not in page.text
    for path in (f"/console/reviews/{review_id}", "/console/reviews/nope"):
        answer = console.call("GET", path)
        assert answer.status == 303 and answer.header("Location") == "/console/"
    assert console.call("GET", "/console/queue").status == 401  # the poller reloads into sign-in
    posted = console.call("POST", f"/console/reviews/{review_id}/decision", {"decision": "approve", "csrf": csrf_token("")})
    assert posted.status == 303 and posted.header("Location") == "/console/"
    assert Reviewer(gateway.url, ANN_KEY).call("GET", f"/admin/reviews/{review_id}")[1]["state"] == "pending"


def test_a_credential_is_checked_on_every_request(make_gateway: Any) -> None:
    """A cookie is only as good as the credential in it: a bad key, an app key, an expired JWT stop at once."""
    gateway = make_gateway(**KEYS)
    for cookie, says, status in (("sk-revoked", "Unknown API key", 401), (APP_KEY, "reviewer role", 403)):
        console = Browserless(gateway.url, {COOKIE: cookie})
        page = console.call("GET", "/console/")
        assert page.status == status and says in page.text and 'name="token"' in page.text
        assert COOKIE not in console.cookies  # the stale cookie is dropped
        assert Browserless(gateway.url, {COOKIE: cookie}).call("GET", "/console/queue").status == 401

    jwt_gateway = make_gateway(auth={"mode": "jwt", "jwt": {"algorithms": ["HS256"], "secret": "s" * 40, "leeway_s": 0}})
    expires = int(time.time()) + 2
    token = jwt.encode({"sub": "carol", "app": "console", "roles": ["reviewer"], "exp": expires}, "s" * 40, algorithm="HS256")
    console = signed_in(jwt_gateway.url, token)
    page = console.call("GET", "/console/")
    assert page.status == 200 and "carol" in page.text
    time.sleep(max(expires - time.time(), 0) + 0.2)
    page = console.call("GET", "/console/")
    assert page.status == 401 and "expired" in page.text and 'name="token"' in page.text


def test_conflicts_and_unknown_items_are_readable_pages(make_gateway: Any, policy_dir: Path) -> None:
    escalate_policy(policy_dir, wait_s=0)
    gateway = make_gateway(**KEYS)
    review_id = pending_review(gateway)
    assert Reviewer(gateway.url, ANN_KEY).call("POST", f"/admin/reviews/{review_id}/claim")[0] == 200
    bob = signed_in(gateway.url, BOB_KEY)
    for action, form in (("claim", {}), ("decision", {"decision": "approve"})):
        answer = bob.call("POST", f"/console/reviews/{review_id}/{action}", {**form, "csrf": bob.csrf()})
        assert answer.status == 409 and answer.header("Content-Type").startswith("text/html")
        assert re.search(r'class="notice error"[^>]*>Review [0-9a-f]+ is claimed by ann\.<', answer.text), answer.text
    bad = bob.call("POST", f"/console/reviews/{review_id}/decision", {"decision": "maybe", "csrf": bob.csrf()})
    assert bad.status == 400 and "approve, reject or edit" in bad.text
    missing = bob.call("GET", "/console/reviews/0123456789abcdef01234567")
    assert missing.status == 404 and "No review" in missing.text and missing.header("Content-Type").startswith("text/html")
    filtered = bob.call("GET", "/console/?" + urlencode({"state": "<bogus>"}))
    assert filtered.status == 400 and "&lt;bogus&gt;" in filtered.text and "<bogus>" not in filtered.text
    assert review_id in bob.call("GET", "/console/?state=claimed&queue=finance").text
    assert review_id not in bob.call("GET", "/console/?state=pending").text
    assert review_id not in bob.call("GET", "/console/?queue=other").text


def test_response_phase_item_shows_the_held_reply(make_gateway: Any, policy_dir: Path, upstream: FakeUpstream) -> None:
    escalate_policy(policy_dir, word="contract", phase="response", wait_s=0)
    upstream.enqueue(Reply(body={"id": "x", "object": "chat.completion", "created": 1, "model": "fake-model",
                                 "choices": [{"index": 0, "message": {"role": "assistant", "content": "per the contract, clause 7"}, "finish_reason": "stop"}]}))
    gateway = make_gateway(**KEYS)
    with sdk_client(gateway, api_key=APP_KEY) as client:
        review_id = rejection(client, "what does it say?")["review_id"]
    page = signed_in(gateway.url).call("GET", f"/console/reviews/{review_id}")
    assert page.status == 200 and 'id="held-request"' in page.text and 'id="held-reply"' in page.text
    assert "what does it say?" in page.text and "Edited answer" in page.text
    assert re.search(r'<textarea name="content" id="edit-content" rows="6">\nper the contract, clause 7</textarea>', page.text)


def test_auth_none_serves_loopback_only_without_sign_in(make_gateway: Any, policy_dir: Path, server_loop: Any) -> None:
    escalate_policy(policy_dir, wait_s=0)
    gateway = make_gateway()
    with sdk_client(gateway) as client:
        review_id = rejection(client)["review_id"]
    console = Browserless(gateway.url)
    page = console.call("GET", "/console/")
    assert page.status == 200 and 'name="token"' not in page.text and review_id in page.text and "Sign out" not in page.text
    assert COOKIE in console.cookies  # only a CSRF anchor: there is no credential
    assert console.call("POST", "/console/login", {"token": "x"}).header("Location") == "/console/"
    assert console.call("POST", f"/console/reviews/{review_id}/decision", {"decision": "approve"}).status == 403
    csrf = console.csrf(f"/console/reviews/{review_id}")
    done = console.call("POST", f"/console/reviews/{review_id}/decision", {"decision": "approve", "csrf": csrf})
    assert done.status == 303
    assert Reviewer(gateway.url).call("GET", f"/admin/reviews/{review_id}")[1]["decision"]["reviewer"] == "local@127.0.0.1"
    # From another host the console does not answer at all (the same rule as the admin API).
    assert gateway.app is not None
    pipeline = gateway.app[RELOADER].pipeline
    handlers = ConsoleHandlers(pipeline, pipeline.reviews)
    queue = next(route.handler for route in handlers.routes() if route.method == "GET" and route.path == "/console/")
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: ("10.1.2.3", 40000) if name == "peername" else default
    response = server_loop.run(queue(make_mocked_request("GET", "/console/", transport=transport)))
    assert response.status == 403 and "loopback" in response.text and review_id not in response.text


# -- the views -----------------------------------------------------------------------------------------------
def test_views_escape_every_held_value() -> None:
    evil = '<script>alert(1)</script><img src=x onerror=alert(2)>"\''
    item = ReviewItem.new(
        queue=evil, phase="response", request_id=evil, principal={"app": evil, "tenant": None, "sub": evil}, policy=evil,
        rule=evil, policy_version=evil, reason=evil, deadline=time.time() + 60, on_timeout="block",
        content={"endpoint": "chat/completions", "request": {"model": evil, "messages": [{"role": evil, "content": [{"type": "text", "text": evil}]}]},
                 "reply": {"choices": [{"message": {"role": "assistant", "content": evil, "tool_calls": [{"id": evil}]}}]}},
    )
    for html in (item_page(item, evil, time.time(), flash=evil, error=evil), queue_fragment([item], Filters(evil, ""), time.time())):
        assert "<script" not in html and "<img" not in html and "&lt;script&gt;" in html and evil not in html
        assert "&quot;&#x27;" in html  # quotes too: no value can leave its attribute
