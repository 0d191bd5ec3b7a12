"""`Origin` (where a base URL points) and `RequestHead` (the request bytes rendered once per provider)."""

from __future__ import annotations

import httptools
import pytest

from gateway.upstream import Origin, RequestHead
from gateway.upstream.request import check_header

HEADERS = {"authorization": "Bearer sk-test", "content-type": "application/json"}


# -- Origin.of -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "origin", "path"),
    [
        ("http://api.example.com", Origin("http", "api.example.com", 80), ""),
        ("https://api.example.com", Origin("https", "api.example.com", 443), ""),
        ("https://api.example.com/v1", Origin("https", "api.example.com", 443), "/v1"),
        ("https://api.example.com:8443/v1", Origin("https", "api.example.com", 8443), "/v1"),
        ("http://127.0.0.1:8080/openai/v1/", Origin("http", "127.0.0.1", 8080), "/openai/v1"),
        ("http://127.0.0.1:8080/v1//", Origin("http", "127.0.0.1", 8080), "/v1"),
        ("http://example.com/", Origin("http", "example.com", 80), ""),
        ("http://[::1]:8080/v1", Origin("http", "::1", 8080), "/v1"),
        ("HTTPS://API.Example.COM/v1", Origin("https", "api.example.com", 443), "/v1"),
    ],
)
def test_origin_of_splits_scheme_host_port_and_path(url: str, origin: Origin, path: str) -> None:
    assert Origin.of(url) == (origin, path)


def test_origin_of_uses_the_scheme_default_ports() -> None:
    assert Origin.of("http://h")[0].port == 80
    assert Origin.of("https://h")[0].port == 443
    assert Origin.of("http://h:443")[0].port == 443  # an explicit port wins, even another scheme's default


def test_origin_tls_follows_the_scheme() -> None:
    assert Origin.of("https://h")[0].tls is True
    assert Origin.of("http://h")[0].tls is False


@pytest.mark.parametrize(
    ("url", "host_header"),
    [
        ("http://api.example.com", "api.example.com"),
        ("http://api.example.com:80", "api.example.com"),
        ("https://api.example.com:443", "api.example.com"),
        ("http://api.example.com:8080", "api.example.com:8080"),
        ("https://api.example.com:80", "api.example.com:80"),  # 80 is not the https default
        ("http://127.0.0.1:9000", "127.0.0.1:9000"),
        ("http://[::1]:8080", "[::1]:8080"),
        ("https://[2001:db8::1]", "[2001:db8::1]"),
    ],
)
def test_host_header_omits_the_default_port_and_brackets_ipv6(url: str, host_header: str) -> None:
    assert Origin.of(url)[0].host_header == host_header


def test_origins_are_equal_and_hashable_pool_keys() -> None:
    first, _ = Origin.of("https://api.example.com/v1")
    second, _ = Origin.of("https://api.example.com:443/other/")
    assert first == second
    assert len({first, second, Origin.of("http://api.example.com")[0]}) == 2


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/files",
        "ws://example.com",
        "example.com/v1",  # no scheme
        "/v1/chat",
        "",
        "http://",  # no host
        "http:///v1",
        "https://api.example.com/v1?api-version=1",  # query strings
        "https://api.example.com/v1#fragment",
        "https://user:secret@api.example.com/v1",  # credentials
        "https://user@api.example.com/v1",
        "http://example.com:99999",  # not a port
        "http://example.com:port",
        "http://example.com:0",
        "https://api.example.com/v1?",  # an empty query
    ],
)
def test_origin_of_rejects_anything_but_a_plain_http_base_url(url: str) -> None:
    with pytest.raises(ValueError):
        Origin.of(url)


def test_origin_of_error_names_the_url() -> None:
    with pytest.raises(ValueError) as caught:
        Origin.of("ftp://example.com")
    assert "ftp://example.com" in str(caught.value)


def test_origin_of_does_not_echo_credentials() -> None:
    with pytest.raises(ValueError) as caught:
        Origin.of("https://user:hunter2-secret@api.example.com/v1")
    assert "hunter2-secret" not in str(caught.value)
    assert "api_key" in str(caught.value)


# -- RequestHead.render ----------------------------------------------------------------------------------------
def test_render_without_request_id_is_exact() -> None:
    origin, _ = Origin.of("https://api.example.com/v1")
    head = RequestHead(origin, "POST", "/v1/chat/completions", HEADERS)
    assert head.render(b'{"model":"m"}') == (
        b"POST /v1/chat/completions HTTP/1.1\r\n"
        b"host: api.example.com\r\n"
        b"authorization: Bearer sk-test\r\n"
        b"content-type: application/json\r\n"
        b"content-length: 13\r\n"
        b"\r\n"
        b'{"model":"m"}'
    )


def test_render_with_request_id_adds_the_header_after_the_length() -> None:
    origin, _ = Origin.of("http://127.0.0.1:8080")
    head = RequestHead(origin, "POST", "/v1/embeddings", {"content-type": "application/json"})
    assert head.render(b"{}", "rid-42") == (
        b"POST /v1/embeddings HTTP/1.1\r\n"
        b"host: 127.0.0.1:8080\r\n"
        b"content-type: application/json\r\n"
        b"content-length: 2\r\n"
        b"x-request-id: rid-42\r\n"
        b"\r\n"
        b"{}"
    )


def test_render_without_headers_and_with_an_empty_path_and_body() -> None:
    origin, _ = Origin.of("http://[::1]:8080")
    assert RequestHead(origin, "GET", "", {}).render(b"") == b"GET / HTTP/1.1\r\nhost: [::1]:8080\r\ncontent-length: 0\r\n\r\n"


@pytest.mark.parametrize("size", [0, 1, 9, 10, 99999, 1 << 20])
def test_render_content_length_matches_the_body(size: int) -> None:
    origin, _ = Origin.of("http://h")
    body = b"x" * size
    rendered = RequestHead(origin, "POST", "/p", HEADERS).render(body, "r")
    head, _, rest = rendered.partition(b"\r\n\r\n")
    assert b"\r\ncontent-length: %d\r\n" % size in head + b"\r\n"
    assert rest == body


def test_rendered_request_is_one_valid_http_request() -> None:
    origin, _ = Origin.of("https://api.example.com:8443/base")
    body = b'{"messages": [{"role": "user", "content": "caf\xc3\xa9 \\r\\n"}]}'
    rendered = RequestHead(origin, "POST", "/base/chat", {**HEADERS, "x-extra": "v\tw"}).render(body, "rid-1")

    class Collector:
        def __init__(self) -> None:
            self.headers: list[tuple[bytes, bytes]] = []
            self.url = b""
            self.body = b""
            self.messages = 0

        def on_url(self, url: bytes) -> None:
            self.url += url

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers.append((name, value))

        def on_body(self, chunk: bytes) -> None:
            self.body += chunk

        def on_message_complete(self) -> None:
            self.messages += 1

    collected = Collector()
    parser = httptools.HttpRequestParser(collected)
    parser.feed_data(rendered)
    assert collected.messages == 1
    assert parser.get_method() == b"POST"
    assert collected.url == b"/base/chat"
    assert collected.body == body
    assert collected.headers == [
        (b"host", b"api.example.com:8443"),
        (b"authorization", b"Bearer sk-test"),
        (b"content-type", b"application/json"),
        (b"x-extra", b"v\tw"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", b"rid-1"),
    ]


def test_render_is_repeatable_for_the_same_head() -> None:
    origin, _ = Origin.of("http://h")
    head = RequestHead(origin, "POST", "/p", HEADERS)
    assert head.render(b"one") == head.render(b"one")
    assert head.render(b"a").endswith(b"content-length: 1\r\n\r\na")
    assert head.render(b"abc").endswith(b"content-length: 3\r\n\r\nabc")


def test_latin1_header_values_are_sent_as_single_bytes() -> None:
    origin, _ = Origin.of("http://h")
    assert b"\r\nx-name: caf\xe9\r\n" in RequestHead(origin, "POST", "/", {"x-name": "caf\xe9"}).render(b"")


# -- header checks ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["a\r\nx-injected: 1", "a\nb", "a\rb", "\r\n", "a\x00b", "a\x7fb", "a\x1bb", "euro \u20ac"])
def test_check_header_rejects_line_breaks_and_control_characters_in_values(value: str) -> None:
    with pytest.raises(ValueError):
        check_header("x-ok", value)


@pytest.mark.parametrize("name", ["", "bad name", "x:y", "x\r\ny", "x\n", "caf\xe9", "(comment)", "a/b", "a@b", "a\tb"])
def test_check_header_rejects_names_that_are_not_tokens(name: str) -> None:
    with pytest.raises(ValueError):
        check_header(name, "value")


@pytest.mark.parametrize(
    ("name", "value"),
    [("authorization", "Bearer sk-abc_DEF.123"), ("X-Custom-Header", ""), ("x!#$%&'*+-.^_`|~9", "v"), ("x", "a\tb c"), ("x", "caf\xe9")],
)
def test_check_header_accepts_valid_fields(name: str, value: str) -> None:
    check_header(name, value)  # no exception


@pytest.mark.parametrize(("name", "value"), [("x-evil", "v\r\nhost: attacker"), ("bad name", "v"), ("x-evil\r\n", "v")])
def test_request_head_refuses_headers_that_would_smuggle_lines(name: str, value: str) -> None:
    origin, _ = Origin.of("http://h")
    with pytest.raises(ValueError):
        RequestHead(origin, "POST", "/", {"content-type": "application/json", name: value})
