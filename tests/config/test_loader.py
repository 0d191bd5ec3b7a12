"""`gateway.yaml` loading: interpolation, defaults, and an error naming `file:line: key.path` for every mistake."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config, with_overrides
from gateway.config.loader import CONFIG_ENV
from gateway.config.model import Limits, UpstreamTimeouts

VALID = """\
listen: {host: 127.0.0.1, port: 9001}
workers: 2
limits: {max_body_bytes: 1000, request_timeout_s: 30, drain_timeout_s: 3, upstream_connections: 10}
providers:
  up:
    kind: openai
    base_url: http://127.0.0.1:8000/v1/
    api_key: sk-in-file
    headers: {x-team: blue, x-num: 7}
    timeouts: {connect_s: 1, first_byte_s: 2, idle_s: 3}
  mock: {kind: mock, latency_ms: 5, chunk_delay_ms: 1.5}
models:
  gpt-4o:
    targets:
      - {provider: up, model: gpt-4o-2024}
    timeout_s: 45
  mock-gpt:
    targets: [{provider: mock}]
auth: {mode: none}
policies: {dir: pol, reload: off}
store: {backend: local, local_dir: data}
audit: {content: none, queue_size: 5, on_unavailable: open}
"""


def write(tmp_path: Path, text: str, name: str = "gateway.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load_error(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    message = str(caught.value)
    assert "\n" not in message  # one line, ready for the CLI
    return message


@pytest.fixture(autouse=True)
def _no_config_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONFIG_ENV, raising=False)


# -- a valid file --------------------------------------------------------------------------------------------
def test_valid_file(tmp_path: Path) -> None:
    config = load_config(str(write(tmp_path, VALID)))
    assert config.source == str(tmp_path / "gateway.yaml")
    assert (config.listen.host, config.listen.port, config.workers) == ("127.0.0.1", 9001, 2)
    assert config.limits == Limits(max_body_bytes=1000, request_timeout_s=30.0, drain_timeout_s=3.0, upstream_connections=10)
    up = config.providers["up"]
    assert up.kind == "openai"
    assert up.base_url == "http://127.0.0.1:8000/v1"  # trailing slash dropped
    assert up.api_key is not None and up.api_key.reveal() == "sk-in-file"
    assert up.headers == {"x-team": "blue", "x-num": "7"}
    assert up.timeouts == UpstreamTimeouts(connect_s=1.0, first_byte_s=2.0, idle_s=3.0)
    mock = config.providers["mock"]
    assert (mock.kind, mock.latency_ms, mock.chunk_delay_ms) == ("mock", 5.0, 1.5)
    route = config.models["gpt-4o"]
    assert [(t.provider, t.model) for t in route.targets] == [("up", "gpt-4o-2024")]
    assert route.timeout_s == 45.0
    assert config.models["mock-gpt"].targets[0].model == "mock-gpt"  # the target model defaults to the public name
    assert config.policies.dir == tmp_path / "pol"  # relative paths are relative to the config file
    assert config.policies.reload == "off"
    assert config.store.local_dir == tmp_path / "data"
    assert (config.audit.content, config.audit.queue_size, config.audit.on_unavailable) == ("none", 5, "open")


def test_minimal_file_gets_defaults(tmp_path: Path) -> None:
    config = load_config(str(write(tmp_path, "providers: {m: {kind: mock}}\nmodels: {x: {targets: [{provider: m}]}}\n")))
    assert (config.listen.host, config.listen.port, config.workers) == ("127.0.0.1", 8080, 1)
    assert config.limits == Limits()
    assert config.auth.mode == "none"
    assert config.store.backend == "local"
    assert config.audit.content == "hmac"
    assert config.audit.hmac_key is None


# -- ${ENV} interpolation --------------------------------------------------------------------------------------
ENV_FILE = """\
listen: {port: "${GW_TEST_PORT:-9100}"}
providers:
  up:
    kind: openai
    base_url: "http://${GW_TEST_HOST:-127.0.0.1}:${GW_TEST_UP_PORT}/v1"
    api_key: "${GW_TEST_KEY}"
    headers: {x-tenant: "${GW_TEST_TENANT:-default-tenant}"}
models:
  m: {targets: [{provider: up}]}
"""


def test_env_interpolation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_TEST_UP_PORT", "8123")
    monkeypatch.setenv("GW_TEST_KEY", "sk-from-env")
    monkeypatch.setenv("GW_TEST_HOST", "127.0.0.2")
    monkeypatch.delenv("GW_TEST_PORT", raising=False)
    monkeypatch.delenv("GW_TEST_TENANT", raising=False)
    config = load_config(str(write(tmp_path, ENV_FILE)))
    assert config.listen.port == 9100  # the default, converted to a number
    up = config.providers["up"]
    assert up.base_url == "http://127.0.0.2:8123/v1"
    assert up.api_key is not None and up.api_key.reveal() == "sk-from-env"
    assert up.headers == {"x-tenant": "default-tenant"}


def test_env_value_wins_over_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_TEST_UP_PORT", "1")
    monkeypatch.setenv("GW_TEST_KEY", "k")
    monkeypatch.setenv("GW_TEST_PORT", "9200")
    monkeypatch.setenv("GW_TEST_TENANT", "acme")
    config = load_config(str(write(tmp_path, ENV_FILE)))
    assert config.listen.port == 9200
    assert config.providers["up"].headers == {"x-tenant": "acme"}


def test_empty_env_value_takes_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `${VAR:-default}` follows the shell: the default applies when VAR is unset *or empty*.
    monkeypatch.setenv("GW_TEST_UP_PORT", "1")
    monkeypatch.setenv("GW_TEST_KEY", "k")
    monkeypatch.setenv("GW_TEST_PORT", "")
    monkeypatch.setenv("GW_TEST_TENANT", "")
    config = load_config(str(write(tmp_path, ENV_FILE)))
    assert config.listen.port == 9100
    assert config.providers["up"].headers == {"x-tenant": "default-tenant"}


def test_missing_env_variable_names_key_and_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_TEST_UP_PORT", "1")
    monkeypatch.delenv("GW_TEST_KEY", raising=False)
    path = write(tmp_path, ENV_FILE)
    assert load_error(path) == f"{path}:6: providers.up.api_key: environment variable GW_TEST_KEY is not set"


def test_env_value_of_the_wrong_type(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_TEST_UP_PORT", "1")
    monkeypatch.setenv("GW_TEST_KEY", "k")
    monkeypatch.setenv("GW_TEST_PORT", "eighty")
    path = write(tmp_path, ENV_FILE)
    assert load_error(path) == f"{path}:1: listen.port: must be a number (got 'eighty')"


# -- errors: file:line: key.path: problem -------------------------------------------------------------------------
BASE = "providers:\n  m: {kind: mock}\nmodels:\n  x: {targets: [{provider: m}]}\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("listn: {port: 1}\n" + BASE, ":1: listn: unknown key"),
        (BASE + "limits:\n  max_body_bytes: 10\n  max_bodybytes: 20\n", ":7: limits.max_bodybytes: unknown key"),
        ("providers:\n  m:\n    kind: mock\n    colour: red\nmodels:\n  x: {targets: [{provider: m}]}\n", ":4: providers.m.colour: unknown key"),
        (
            "providers:\n  u:\n    kind: openai\n    base_url: http://h/v1\n    timeouts:\n      connect_s: 1\n      read_s: 2\n"
            "models:\n  x: {targets: [{provider: u}]}\n",
            ":7: providers.u.timeouts.read_s: unknown key",
        ),
        ("providers:\n  m: {kind: mock}\nmodels:\n  x:\n    targets:\n      - provider: m\n        wieght: 3\n", ":7: models.x.targets[0].wieght: unknown key"),
        ("providers:\n  m: {kind: mock}\nmodels:\n  x:\n    targets: [{provider: m}]\n    fallback: y\n", ":6: models.x.fallback: unknown key"),
        (BASE + "audit:\n  contents: full\n", ":6: audit.contents: unknown key"),
    ],
)
def test_unknown_keys_are_rejected_with_line_and_path(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    assert load_error(path) == f"{path}{expected}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("providers:\n  m: {}\nmodels:\n  x: {targets: [{provider: m}]}\n", "providers.m.kind: is required"),
        ("providers:\n  u: {kind: openai}\nmodels:\n  x: {targets: [{provider: u}]}\n", "providers.u.base_url: is required"),
        ("providers:\n  m: {kind: mock}\nmodels:\n  x: {}\n", "models.x.targets: at least one target is required"),
        ("providers:\n  m: {kind: mock}\nmodels:\n  x: {targets: [{model: y}]}\n", "models.x.targets[0].provider: is required"),
        ("providers:\n  m: {kind: mock}\n", "models: at least one model route is required"),
        ("", "models: at least one model route is required"),
    ],
)
def test_missing_required_keys(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    message = load_error(path)
    assert message.startswith(str(path))
    assert message.endswith(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("listen: {port: eighty}\n" + BASE, ":1: listen.port: must be a number (got 'eighty')"),
        ("listen: {port: 70000}\n" + BASE, ":1: listen.port: must be at most 65535 (got 70000)"),
        ("listen: {host: [a, b]}\n" + BASE, ":1: listen.host: must be a string (got ['a', 'b'])"),
        ("workers: 0\n" + BASE, ":1: workers: must be at least 1 (got 0)"),
        ("workers: true\n" + BASE, ":1: workers: must be a number (got True)"),
        ("workers: 1.5\n" + BASE, ":1: workers: must be a whole number (got 1.5)"),
        ("limits: {max_body_bytes: -1}\n" + BASE, ":1: limits.max_body_bytes: must be at least 1 (got -1)"),
        ("listen: 8080\n" + BASE, ":1: listen: must be a mapping (got a number)"),
        ("providers: [a, b]\nmodels: {}\n", ":1: providers: must be a mapping (got a list)"),
        ("providers:\n  m: {kind: mock}\nmodels:\n  x: {targets: {provider: m}}\n", ":4: models.x.targets: must be a list (got a mapping)"),
        ("providers:\n  m: {kind: mock}\nmodels:\n  x: {targets: [m]}\n", "models.x.targets[0]: must be a mapping (got a string)"),
        ("providers:\n  u: {kind: openai, base_url: ftp://h}\nmodels:\n  x: {targets: [{provider: u}]}\n", ":2: providers.u.base_url: must be an http:// or https:// URL (got 'ftp://h')"),
        ("providers:\n  u: {kind: openai, base_url: 'http://h', headers: [a]}\nmodels:\n  x: {targets: [{provider: u}]}\n", ":2: providers.u.headers: must be a mapping of names to strings"),
        ("providers:\n  u: {kind: openai, base_url: 'http://h?x=1'}\nmodels:\n  x: {targets: [{provider: u}]}\n", ":2: providers.u.base_url: a base URL takes no query, fragment or credentials: 'http://h?x=1'"),
        ("providers:\n  u: {kind: openai, base_url: 'http://h', headers: {'x-a b': v}}\nmodels:\n  x: {targets: [{provider: u}]}\n", ":2: providers.u.headers: 'x-a b' is not a valid HTTP header name"),
        ("providers:\n  u: {kind: openai, base_url: 'http://h', headers: {x-a: \"v\\r\\nx-evil: 1\"}}\nmodels:\n  x: {targets: [{provider: u}]}\n", ":2: providers.u.headers: the value of header 'x-a' has a line break or another control character"),
        ("providers:\n  u: {kind: openai, base_url: 'http://h', api_key: \"sk\\nx\"}\nmodels:\n  x: {targets: [{provider: u}]}\n", ":2: providers.u.api_key: has a line break or another control character"),
        ("audit: {content: everything}\n" + BASE, ":1: audit.content: must be one of none, hmac, redacted, full (got 'everything')"),
        ("- just\n- a list\n", "must be a mapping (got a list)"),
    ],
)
def test_wrong_types(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    message = load_error(path)
    if expected.startswith(":"):
        assert message.startswith(f"{path}{expected}")
    else:
        assert message.startswith(str(path)) and message.endswith(expected)


def test_unknown_provider_kind(tmp_path: Path) -> None:
    path = write(tmp_path, "providers:\n  a:\n    kind: anthropic\nmodels:\n  x: {targets: [{provider: a}]}\n")
    assert load_error(path) == f"{path}:3: providers.a.kind: must be one of openai, mock (got 'anthropic')"


def test_target_naming_an_unknown_provider(tmp_path: Path) -> None:
    path = write(tmp_path, "providers:\n  m: {kind: mock}\n  n: {kind: mock}\nmodels:\n  x:\n    targets:\n      - {provider: opneai}\n")
    assert load_error(path) == f"{path}:7: models.x.targets[0].provider: unknown provider 'opneai' (known: m, n)"


def test_duplicate_yaml_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "providers:\n  m: {kind: mock}\nmodels:\n  x: {targets: [{provider: m}]}\nproviders:\n  n: {kind: mock}\n")
    assert load_error(path) == f"{path}:5: duplicate key 'providers'"


def test_duplicate_nested_yaml_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "providers:\n  m: {kind: mock, kind: openai}\nmodels:\n  x: {targets: [{provider: m}]}\n")
    message = load_error(path)
    assert message == f"{path}:2: duplicate key 'kind'"


@pytest.mark.parametrize(("text", "line"), [("providers: {m: {kind: mock}\nmodels: x\n", 2), ("a: b\n  c: d\n", 2), ("key: [unclosed\n", 2), ("\tkey: tab\n", 1)])
def test_invalid_yaml(tmp_path: Path, text: str, line: int) -> None:
    path = write(tmp_path, text)
    message = load_error(path)
    assert re.fullmatch(rf"{re.escape(str(path))}:{line}: .+", message), message


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_bytes(b"listen: {host: \xff\xfe}\n")
    assert load_error(path) == f"{path}: not valid UTF-8"


# -- auth ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("auth: {mode: jwt}\n", "auth.mode: jwt needs auth.jwt"),
        ("auth: {mode: api_key}\n", "auth.mode: api_key needs auth.api_keys"),
        ("auth: {mode: jwt, jwt: {algorithms: [none], secret: s}}\n", "auth.jwt.algorithms: 'none' is not allowed"),
        ("auth: {mode: jwt, jwt: {algorithms: [HS256, RS256], secret: s}}\n", "do not mix HS* with public-key algorithms"),
        ("auth: {mode: jwt, jwt: {algorithms: [RS256], secret: s}}\n", "auth.jwt.secret: a shared secret goes with HS256/384/512 only"),
        ("auth: {mode: jwt, jwt: {algorithms: [RS256]}}\n", "auth.jwt: needs exactly one key source"),
        ("auth: {mode: api_key, api_keys: [{sha256: abc, app: a}]}\n", "auth.api_keys[0].sha256: must be the 64-hex-digit sha256"),
    ],
)
def test_auth_mistakes_are_refused(tmp_path: Path, extra: str, expected: str) -> None:
    assert expected in load_error(write(tmp_path, BASE + extra))


def test_routes_with_fallback_targets_retries_and_breakers(tmp_path: Path) -> None:
    path = write(tmp_path, """\
providers:
  m: {kind: mock}
  n: {kind: mock}
models:
  x:
    targets: [{provider: m, weight: 3}, {provider: n, model: other, weight: 1}]
    retry: {attempts: 3, backoff_ms: 50, retry_on: [connect_error, 5xx]}
    timeout_s: 20
    attempt_timeout_s: 5
    balance: weighted
routing: {breaker: {failures: 3, open_s: 10}}
""")
    config = load_config(str(path))
    route = config.models["x"]
    assert [(t.provider, t.model, t.weight) for t in route.targets] == [("m", "x", 3.0), ("n", "other", 1.0)]
    assert (route.retry.attempts, route.retry.backoff_ms, route.retry.retry_on) == (3, 50.0, ("connect_error", "5xx"))
    assert (route.timeout_s, route.attempt_timeout_s, route.balance) == (20.0, 5.0, "weighted")
    assert (config.routing.breaker.failures, config.routing.breaker.open_s, config.routing.breaker.window_s) == (3, 10.0, 30.0)


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        ("targets: [{provider: m}, {provider: m}]", "models.x.targets: the same provider and model are listed twice"),
        ("targets: [{provider: m}]\n    retry: {retry_on: [sunspots]}", "models.x.retry.retry_on: unknown 'sunspots'"),
        ("targets: [{provider: m}]\n    retry: {attempts: 0}", "models.x.retry.attempts: must be at least 1"),
        ("targets: [{provider: m}]\n    timeout_s: 5\n    attempt_timeout_s: 10", "models.x.attempt_timeout_s: must not exceed timeout_s"),
        ("targets: [{provider: m, weight: 0}]\n    balance: weighted", "models.x.balance: weighted balancing needs"),
    ],
)
def test_route_mistakes_are_refused(tmp_path: Path, route: str, expected: str) -> None:
    path = write(tmp_path, f"providers:\n  m: {{kind: mock}}\nmodels:\n  x:\n    {route}\n")
    assert expected in load_error(path)


@pytest.mark.parametrize("word", ["off", "watch"])
def test_policies_reload_words_are_not_yaml_booleans(tmp_path: Path, word: str) -> None:
    # DESIGN.md documents `reload: watch | off`; YAML 1.1 would read a bare `off` as false.
    config = load_config(str(write(tmp_path, BASE + f"policies: {{reload: {word}}}\n")))
    assert config.policies.reload == word


def test_policies_reload_other_words_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "policies: {reload: no}\n")
    assert load_error(path) == f"{path}:5: policies.reload: must be one of watch, off (got 'no')"


def test_authorization_in_provider_headers_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "providers:\n  u: {kind: openai, base_url: 'http://h', headers: {Authorization: Bearer x}}\nmodels:\n  x: {targets: [{provider: u}]}\n")
    assert "providers.u.headers: set the provider key with api_key" in load_error(path)


# -- which file ----------------------------------------------------------------------------------------------------
def test_embedded_default_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(None)
    assert config.source == "<embedded default>"
    assert (config.listen.host, config.listen.port, config.workers) == ("127.0.0.1", 8080, 1)
    assert {name: p.kind for name, p in config.providers.items()} == {"mock": "mock"}
    assert sorted(config.models) == ["mock-embedding", "mock-gpt"]
    assert all(route.targets[0].provider == "mock" for route in config.models.values())
    assert config.store.backend == "local"
    assert config.auth.mode == "none"


def test_gateway_yaml_in_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, VALID)
    monkeypatch.chdir(tmp_path)
    config = load_config(None)
    assert config.source == "gateway.yaml"
    assert config.listen.port == 9001


def test_explicit_config_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert load_error(missing) == f"{missing}: config file not found"


def test_config_that_is_a_directory(tmp_path: Path) -> None:
    assert load_error(tmp_path) == f"{tmp_path}: config file not found"


def test_gateway_config_env_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, VALID, "from-env.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(CONFIG_ENV, str(path))
    assert load_config(None).source == str(path)


def test_gateway_config_env_variable_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "gone.yaml"))
    with pytest.raises(ConfigError, match="gone.yaml: config file not found"):
        load_config(None)


def test_explicit_config_wins_over_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = write(tmp_path, VALID, "explicit.yaml")
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "gone.yaml"))
    assert load_config(str(explicit)).source == str(explicit)


def test_command_line_overrides(tmp_path: Path) -> None:
    config = load_config(str(write(tmp_path, VALID)))
    changed = with_overrides(config, "0.0.0.0", 9999, 3)
    assert (changed.listen.host, changed.listen.port, changed.workers) == ("0.0.0.0", 9999, 3)
    unchanged = with_overrides(config, None, None, None)
    assert unchanged == config


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("rate_limits: [{per: planet, requests_per_minute: 5}]\n", "rate_limits[0].per: must be one or more of app, tenant, model"),
        ("rate_limits: [{per: app}]\n", "rate_limits[0]: sets no limit"),
        ("budgets: [{per: tenant, tokens: 100, period: fortnight}]\n", "budgets[0].period: must be one of hour, day, month"),
        ("budgets: [{per: tenant}]\n", "budgets[0].tokens: is required"),
    ],
)
def test_limit_mistakes_are_refused(tmp_path: Path, extra: str, expected: str) -> None:
    assert expected in load_error(write(tmp_path, BASE + extra))


def test_rate_limits_and_budgets(tmp_path: Path) -> None:
    config = load_config(str(write(tmp_path, BASE + "rate_limits: [{per: [app, model], requests_per_minute: 60, models: [gpt-4o*]}]\nbudgets: [{per: tenant, tokens: 1000000, period: month}]\n")))
    (limit,) = config.rate_limits
    (budget,) = config.budgets
    assert (limit.per, limit.requests_per_minute, limit.tokens_per_minute, limit.models) == (("app", "model"), 60, None, ("gpt-4o*",))
    assert (budget.per, budget.tokens, budget.period) == (("tenant",), 1_000_000, "month")
