"""The observability pack: the Grafana dashboard, the Prometheus alerts and their unit tests, and how the compose
stack loads them. Every PromQL expression may name only metrics the gateway exports (read from a real
`Metrics()` registry) or `up`; every alert points at a runbook that exists; promtool checks and tests the rules."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from gateway.config.model import AuditConfig
from gateway.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST = DEPLOY / "prometheus" / "alerts_test.yml"
DASHBOARD = DEPLOY / "grafana" / "gateway-dashboard.json"
PROVISIONING = DEPLOY / "grafana" / "provisioning"

# The review queue's metrics (family names: counters without `_total`), which the dashboard and the alerts rely
# on; checked against the registry below.
REVIEW_METRICS = {
    "gateway_review_queue_depth": ("gauge", {"queue", "state"}),
    "gateway_review_oldest_pending_seconds": ("gauge", {"queue"}),
    "gateway_reviews_opened": ("counter", {"queue", "phase"}),
    "gateway_review_decisions": ("counter", {"queue", "decision"}),
    "gateway_review_time_to_decision_seconds": ("histogram", {"queue"}),
}
# Labels Prometheus adds to every scraped series (`le` comes with histogram buckets).
TARGET_LABELS = {"instance", "job"}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


# -- what the gateway exports ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def families() -> dict[str, tuple[str, frozenset[str]]]:
    """Every metric family of a real `Metrics()`: name -> (type, label names)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)  # the in-memory registry, not the files
        metrics = Metrics()
    types = {family.name: family.type for family in metrics.registry.collect()}
    # Label names are not in collect() until a child exists: read them from the collectors themselves.
    labels = {
        collector._name: frozenset(collector._labelnames)  # noqa: SLF001 - prometheus_client keeps no public accessor
        for collector in vars(metrics).values()
        if hasattr(collector, "_labelnames") and hasattr(collector, "_name")
    }
    assert types and set(types) == set(labels), "every collector of Metrics must be in its registry"
    return {name: (kind, labels[name]) for name, kind in types.items()}


@pytest.fixture(scope="module")
def exported(families: dict[str, tuple[str, frozenset[str]]]) -> dict[str, frozenset[str]]:
    """Series names a scrape can show -> the labels they may carry (the scrape adds `instance` and `job`)."""
    names: dict[str, frozenset[str]] = {"up": frozenset(TARGET_LABELS)}
    for family, (kind, labels) in families.items():
        for suffix in SUFFIXES[kind]:
            extra = {"le"} if suffix == "_bucket" else set()
            names[family + suffix] = labels | TARGET_LABELS | extra
    return names


def test_the_review_metrics_are_exported(families: dict[str, tuple[str, frozenset[str]]]) -> None:
    for name, (kind, labels) in REVIEW_METRICS.items():
        assert name in families, f"{name} is not in gateway/metrics.py"
        assert families[name] == (kind, frozenset(labels)), name


# -- PromQL: the names and labels an expression uses ------------------------------------------------------------

KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
    "quantile", "inf", "nan",
}
GRAFANA_VARIABLE = re.compile(r"\$(?:\{[^}]*\}|\w+)")
STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
RANGE = re.compile(r"\[[^\]]*\]")
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
SELECTOR = re.compile(r"(?<![\w:.])([a-zA-Z_:][\w:]*)?\s*\{([^}]*)\}")
MATCHER_LABEL = re.compile(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)")
IDENTIFIER = re.compile(r"(?<![\w:.])([a-zA-Z_:][\w:]*)(?![\w:]|\s*\()")  # not a function


def promql_usage(expr: str) -> tuple[set[str], dict[str, set[str]], set[str]]:
    """(metric names, labels matched per metric, labels used in by/without/on/ignoring/group_*)."""
    text = GRAFANA_VARIABLE.sub("1", STRING.sub('""', expr))
    text = RANGE.sub("", text)
    grouping = {label.strip() for _, labels in GROUPING.findall(text) for label in labels.split(",") if label.strip()}
    text = GROUPING.sub(" ", text)
    matched: dict[str, set[str]] = {}
    for name, matchers in SELECTOR.findall(text):
        assert name, f"a selector without a metric name in {expr!r}"
        matched.setdefault(name, set()).update(MATCHER_LABEL.findall(matchers))
    text = SELECTOR.sub(lambda m: f" {m.group(1)} ", text)
    names = {name for name in IDENTIFIER.findall(text) if name not in KEYWORDS}
    return names, matched, grouping


def test_promql_usage_reads_names_and_labels() -> None:
    names, matched, grouping = promql_usage(
        'histogram_quantile(0.99, sum by (le, provider) (rate(gateway_upstream_duration_seconds_bucket{instance=~"$instance"}[$__rate_interval])))'
        ' / ignoring(x) gateway_requests_total{status=~"5.."} offset 15m > 0.8 * 1073741824 and up == 0'
    )
    assert names == {"gateway_upstream_duration_seconds_bucket", "gateway_requests_total", "up"}
    assert matched == {"gateway_upstream_duration_seconds_bucket": {"instance"}, "gateway_requests_total": {"status"}}
    assert grouping == {"le", "provider", "x"}


def check_expression(expr: str, exported: dict[str, frozenset[str]], where: str) -> None:
    names, matched, grouping = promql_usage(expr)
    assert names, f"{where}: no metric in {expr!r}"
    unknown = names - exported.keys()
    assert not unknown, f"{where}: {sorted(unknown)} not exported by gateway/metrics.py (expression {expr!r})"
    for name, labels in matched.items():
        assert labels <= exported[name], f"{where}: {name} has no label(s) {sorted(labels - exported[name])}"
    available = set().union(*(exported[name] for name in names))
    assert grouping <= available, f"{where}: no metric of {expr!r} has label(s) {sorted(grouping - available)}"


# -- the dashboard ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))  # a collapsed row holds its panels
    return found


def test_dashboard_is_a_grafana_dashboard(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] and dashboard["title"]
    assert 36 <= dashboard["schemaVersion"] <= 41
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["instance"]["type"] == "query"
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_every_panel_has_a_title_and_queries_the_datasource_variable(dashboard: dict[str, Any]) -> None:
    queried = [panel for panel in panels(dashboard) if panel["type"] != "row"]
    assert len(queried) >= 15
    for panel in panels(dashboard):
        assert panel.get("title"), panel
    for panel in queried:
        title = panel["title"]
        assert panel.get("datasource") == {"type": "prometheus", "uid": "${datasource}"}, title
        assert panel["targets"], title
        for target in panel["targets"]:
            assert target.get("expr") and target.get("refId"), title
            assert target.get("datasource", panel["datasource"]) == panel["datasource"], title


def test_dashboard_covers_the_pack(dashboard: dict[str, Any]) -> None:
    used = {name for panel in panels(dashboard) for target in panel.get("targets", []) for name in promql_usage(target["expr"])[0]}
    expected = {
        "gateway_requests_total", "gateway_overhead_seconds_bucket", "gateway_upstream_duration_seconds_bucket",
        "gateway_policy_decisions_total", "gateway_route_fallbacks_total", "gateway_route_retries_total",
        "gateway_circuit_breaker_state", "gateway_review_queue_depth", "gateway_review_oldest_pending_seconds",
        "gateway_review_decisions_total", "gateway_review_time_to_decision_seconds_bucket", "gateway_audit_spool_bytes",
        "gateway_audit_backend_up", "gateway_audit_queue_depth", "gateway_policy_version_info", "gateway_policy_reloads_total",
    }
    assert expected <= used, sorted(expected - used)


def test_dashboard_queries_use_only_exported_metrics(dashboard: dict[str, Any], exported: dict[str, frozenset[str]]) -> None:
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            check_expression(target["expr"], exported, f"panel {panel['title']!r}")
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        label_values = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
        assert label_values, f"variable {variable['name']}: {query!r}"
        check_expression(label_values.group(1), exported, f"variable {variable['name']}")
        assert label_values.group(2) in set().union(*(exported[n] for n in promql_usage(label_values.group(1))[0]))


# -- the alerts -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


@pytest.fixture(scope="module")
def alerts(rules: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found = {rule["alert"]: rule for rule in rules if "alert" in rule}
    assert len(found) == len([rule for rule in rules if "alert" in rule]), "alert names must be unique"
    return found


def test_the_alerts_cover_the_pack(alerts: dict[str, dict[str, Any]]) -> None:
    expressions = {name: rule["expr"] for name, rule in alerts.items()}

    def alerting_on(metric: str) -> list[str]:
        return [name for name, expr in expressions.items() if metric in promql_usage(expr)[0]]

    for metric in (
        "up", "gateway_requests_total", "gateway_policy_reloads_total", "gateway_audit_backend_up", "gateway_audit_spool_bytes",
        "gateway_circuit_breaker_state", "gateway_review_oldest_pending_seconds",
    ):
        assert alerting_on(metric), f"no alert on {metric}"
    assert any(rule.get("for") for rule in alerts.values() if "gateway_circuit_breaker_state" in rule["expr"])


def test_every_alert_has_annotations_and_an_existing_runbook(alerts: dict[str, dict[str, Any]]) -> None:
    for name, rule in alerts.items():
        annotations = rule.get("annotations", {})
        for key in ("summary", "description", "runbook_url"):
            assert annotations.get(key, "").strip(), f"{name}: no {key}"
        assert rule.get("labels", {}).get("severity") in {"critical", "warning", "info"}, name
        runbook = annotations["runbook_url"].split("#")[0]
        assert runbook.startswith("docs/runbooks/") and (REPO / runbook).is_file(), f"{name}: {runbook} does not exist"


def test_alerts_use_only_exported_metrics(rules: list[dict[str, Any]], exported: dict[str, frozenset[str]]) -> None:
    for rule in rules:
        check_expression(rule["expr"], exported, rule.get("alert") or rule.get("record", "?"))


def test_the_spool_alert_uses_the_configured_default_limit(alerts: dict[str, dict[str, Any]]) -> None:
    (expr,) = [rule["expr"] for rule in alerts.values() if "gateway_audit_spool_bytes" in rule["expr"]]
    limit = re.search(r">\s*([\d.]+)\s*\*\s*(\d+)", expr)
    assert limit, expr
    assert int(limit.group(2)) == AuditConfig().spool_max_bytes, "update the alert (and its annotation) with audit.spool_max_bytes"
    assert 0.5 <= float(limit.group(1)) < 1


def test_every_alert_is_unit_tested_firing_and_silent(alerts: dict[str, dict[str, Any]]) -> None:
    doc = yaml.safe_load(ALERTS_TEST.read_text(encoding="utf-8"))
    assert [(ALERTS_TEST.parent / path).resolve() for path in doc["rule_files"]] == [ALERTS.resolve()]
    cases = [case for test in doc["tests"] for case in test.get("alert_rule_test", [])]
    for name in alerts:
        mine = [case for case in cases if case["alertname"] == name]
        assert any(case.get("exp_alerts") for case in mine), f"{name}: no test where it fires"
        assert any(not case.get("exp_alerts") for case in mine), f"{name}: no test where it stays silent"
    assert {case["alertname"] for case in cases} <= set(alerts), "a test names an alert that does not exist"


# -- promtool ---------------------------------------------------------------------------------------------------


def run_promtool(*args: str) -> str:
    """promtool's output; the test fails (never skips) without it: CI must check the rules."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: install Debian's prometheus package (apt-get install --no-install-recommends prometheus)")
    result = subprocess.run([promtool, *args], cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def test_promtool_checks_the_rules() -> None:
    run_promtool("check", "rules", str(ALERTS.relative_to(REPO)))


def test_promtool_unit_tests_the_alerts() -> None:
    assert "SUCCESS" in run_promtool("test", "rules", str(ALERTS_TEST.relative_to(REPO)))


def test_promtool_checks_the_compose_prometheus_config() -> None:
    """Also resolves `rule_files` from the config's directory, as Prometheus does in the container."""
    output = run_promtool("check", "config", str((COMPOSE / "prometheus.yml").relative_to(REPO)))
    assert "alerts.yml" in output


# -- the compose stack ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    found: dict[str, Any] = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text(encoding="utf-8"))["services"]
    return found


def mounts(service: dict[str, Any]) -> dict[PurePosixPath, Path]:
    """Bind mounts of a service: container path -> repository path."""
    found = {}
    for volume in service.get("volumes", []):
        source, target, *_ = str(volume).split(":")
        if source.startswith("."):
            found[PurePosixPath(target)] = (COMPOSE / source).resolve()
    return found


def in_container(binds: dict[PurePosixPath, Path], path: PurePosixPath) -> Path:
    """The repository file a container path shows, through the deepest bind mount that contains it."""
    containing = [target for target in binds if target == path or target in path.parents]
    assert containing, f"{path} is not mounted"
    target = max(containing, key=lambda t: len(t.parts))
    return binds[target] / path.relative_to(target)


def test_prometheus_loads_the_alerts(services: dict[str, Any]) -> None:
    prometheus = services["prometheus"]
    binds = mounts(prometheus)
    flag = next(arg for arg in prometheus["command"] if arg.startswith("--config.file="))
    config_path = PurePosixPath(flag.split("=", 1)[1])
    assert in_container(binds, config_path) == (COMPOSE / "prometheus.yml").resolve()
    config = yaml.safe_load((COMPOSE / "prometheus.yml").read_text(encoding="utf-8"))
    loaded = []
    for rule_file in config["rule_files"]:
        resolved = PurePosixPath(rule_file) if rule_file.startswith("/") else config_path.parent / rule_file
        parts: list[str] = []
        for part in resolved.parts:  # normalise `..` as Prometheus does (no symlinks in the container paths)
            if part == "..":
                parts.pop()
            else:
                parts.append(part)
        loaded.append(in_container(binds, PurePosixPath(*parts)))
    assert ALERTS.resolve() in loaded


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard(services: dict[str, Any]) -> None:
    grafana = services["grafana"]
    binds = mounts(grafana)
    assert in_container(binds, PurePosixPath("/etc/grafana/provisioning")) == PROVISIONING.resolve()
    (datasource,) = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text(encoding="utf-8"))["datasources"]
    assert datasource["type"] == "prometheus"
    url = re.fullmatch(r"http://([\w-]+):(\d+)/?", datasource["url"])
    assert url and url.group(1) in services
    assert any(str(port).endswith(f":{url.group(2)}") for port in services[url.group(1)]["ports"])
    (provider,) = yaml.safe_load((PROVISIONING / "dashboards" / "gateway.yml").read_text(encoding="utf-8"))["providers"]
    assert provider["type"] == "file"
    dashboards = in_container(binds, PurePosixPath(provider["options"]["path"]) / DASHBOARD.name)
    assert dashboards == DASHBOARD.resolve()
    home = grafana["environment"].get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    assert home is None or in_container(binds, PurePosixPath(home)) == DASHBOARD.resolve()
    assert "prometheus" in grafana.get("depends_on", [])


def test_grafana_keeps_no_secret_in_the_files(services: dict[str, Any]) -> None:
    for name, value in services["grafana"]["environment"].items():
        if "PASSWORD" in name or "SECRET" in name or "TOKEN" in name:
            assert re.fullmatch(r"\$\{[A-Z_]+(:-[^}]*)?\}", str(value)), f"{name} must come from the environment"
    for path in PROVISIONING.rglob("*.yml"):
        assert not re.search(r"(?i)(password|secret|token|basicAuth)", path.read_text(encoding="utf-8")), path
