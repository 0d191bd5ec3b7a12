"""The deployment pack (`deploy/`): every file parses, the configs pass the gateway's own loader, the policy
bundle compiles, no ConfigMap holds a secret, and the manifests agree with each other and with the config
(probe paths, ports, mounts, selectors, the drain timeout)."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from gateway import __version__
from gateway.config import GatewayConfig, parse_config
from gateway.config.yaml_source import load_yaml_text
from gateway.metrics import Metrics
from gateway.policy.compiler import compile_bundle

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "kubernetes"
COMPOSE = DEPLOY / "compose"
SHIPPED_POLICIES = REPO / "policies"

NAMESPACE = "gateway"
CONFIG_MAP, POLICY_MAP, SECRET, DEPLOYMENT = "gateway-config", "gateway-policies", "gateway-secrets", "gateway"
K8S_FILES = (
    "namespace.yaml", "configmap.yaml", "secret.yaml", "deployment.yaml", "service.yaml", "pdb.yaml",
    "hpa.yaml", "redis.yaml", "networkpolicy.yaml", "kustomization.yaml",
)
# Values the tests put in the environment for the `${VAR}` references of the configs.
TEST_ENV = {"OPENAI_API_KEY": "sk-test-0000000000000000000000", "AUDIT_HMAC_KEY": "test-hmac-key"}


# -- loading ----------------------------------------------------------------------------------------------


def yaml_files() -> list[Path]:
    return sorted(path for path in DEPLOY.rglob("*") if path.suffix in (".yaml", ".yml") and path.is_file())


def load_docs(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    """Every Kubernetes object of the pack (the Kustomization itself excluded)."""
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in load_docs(path):
            if doc.get("kind") != "Kustomization":
                found.append(doc)
    return found


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [obj for obj in objects if obj["kind"] == kind and (name is None or obj["metadata"]["name"] == name)]
    assert len(matches) == 1, f"expected exactly one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def find_all(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


@pytest.fixture(scope="module")
def deployment(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return find(objects, "Deployment", DEPLOYMENT)


@pytest.fixture(scope="module")
def pod(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]


@pytest.fixture(scope="module")
def container(pod: dict[str, Any]) -> dict[str, Any]:
    containers = pod["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


@pytest.fixture(scope="module")
def redis_pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return find(objects, "StatefulSet", "redis")["spec"]["template"]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def k8s_gateway_yaml(objects: list[dict[str, Any]]) -> str:
    return find(objects, "ConfigMap", CONFIG_MAP)["data"]["gateway.yaml"]


def parse_gateway_yaml(text: str, source: str) -> GatewayConfig:
    """As `gateway serve --config` reads it: the line-aware loader, then the validating parser."""
    return parse_config(load_yaml_text(text, source), source)


@pytest.fixture
def k8s_config(objects: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> GatewayConfig:
    for name, value in TEST_ENV.items():
        monkeypatch.setenv(name, value)
    return parse_gateway_yaml(k8s_gateway_yaml(objects), "configmap.yaml#gateway.yaml")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    (doc,) = load_docs(COMPOSE / "docker-compose.yml")
    return doc


def gateway_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: service for name, service in compose["services"].items() if "gateway" in " ".join(service.get("command", []))}


def mount_for(mounts: list[dict[str, Any]], path: PurePosixPath) -> dict[str, Any]:
    """The volume mount a path lives on: the deepest mountPath that contains it."""
    containing = [m for m in mounts if path == PurePosixPath(m["mountPath"]) or PurePosixPath(m["mountPath"]) in path.parents]
    assert containing, f"{path} is on no volume (the root filesystem is read-only)"
    return max(containing, key=lambda m: len(PurePosixPath(m["mountPath"]).parts))


def volume(pod: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [v for v in pod["spec"]["volumes"] if v["name"] == name]
    return found


ENV_NAME = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}")


def strings(node: Any) -> list[str]:
    """Every string value of a parsed YAML document (comments are not values)."""
    if isinstance(node, dict):
        return [text for value in node.values() for text in strings(value)]
    if isinstance(node, list):
        return [text for value in node for text in strings(value)]
    return [node] if isinstance(node, str) else []


def seconds(duration: str | int | float) -> float:
    """A compose duration (`45s`, `1m30s`) in seconds."""
    if isinstance(duration, (int, float)):
        return float(duration)
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"unreadable duration {duration!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


# -- secrets ----------------------------------------------------------------------------------------------

SECRET_PATTERNS = {
    "an OpenAI-style key": re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"),
    "a private key block": re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"),
    "an AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "a GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"),
    "a Slack token": re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    "a JWT": re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
}
# A literal after one of these keys is a secret written into the file; only `${VAR}` (or `${VAR:-}`) is not.
SECRET_ASSIGNMENT = re.compile(
    r"""(?ix)\b(api_key|apikey|hmac_key|password|passwd|client_secret|secret|token|private_key)\s*:\s*
        (?P<value>"[^"]*"|'[^']*'|[^\s,}\#]+)"""
)
ENV_REFERENCE = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(?::-)?\}$")
SECRET_FILE_NAME = re.compile(r"(?i)(\.pem$|\.key$|\.p12$|\.pfx$|\.jks$|jwks|id_rsa|credential|password|token|api[_-]?key|hmac)")


def secret_findings(text: str) -> list[str]:
    findings = [f"{what}: {match.group(0)[:24]}..." for what, pattern in SECRET_PATTERNS.items() for match in pattern.finditer(text)]
    for match in SECRET_ASSIGNMENT.finditer(text):
        value = match.group("value").strip("\"'")
        if not ENV_REFERENCE.match(value):
            findings.append(f"a literal {match.group(1)}: {match.group(0)}")
    return findings


def without_policy_tests(text: str) -> str:
    """A policy file minus its `spec.tests`: test inputs are deliberately secret-shaped (the secrets
    detector must catch them); they are checked to be the shipped ones, byte for byte, separately."""
    doc = yaml.safe_load(text)
    doc.get("spec", {}).pop("tests", None)
    return yaml.safe_dump(doc, sort_keys=False)


def test_the_secret_scanner_finds_what_it_looks_for() -> None:
    assert secret_findings('api_key: "sk-proj-abcdefghijklmnop1234"')
    assert secret_findings("api_key: hunter2")
    assert secret_findings("providers: {openai: {kind: openai, api_key: 'abc'}}")
    assert secret_findings("hmac_key: 0123456789abcdef")
    assert secret_findings("-----BEGIN PRIVATE KEY-----\nMIIE...")
    assert secret_findings("-----BEGIN RSA PRIVATE KEY-----")
    assert not secret_findings('api_key: "${OPENAI_API_KEY}"')
    assert not secret_findings('hmac_key: "${AUDIT_HMAC_KEY:-}"')
    assert not secret_findings("check: {secrets: {}}")
    # The shipped secrets pack carries secret-shaped test inputs: the scanner sees them, the test strips them.
    shipped = (SHIPPED_POLICIES / "secrets.yaml").read_text(encoding="utf-8")
    assert secret_findings(shipped)
    assert not secret_findings(without_policy_tests(shipped))


# -- every file -------------------------------------------------------------------------------------------


def test_the_pack_has_its_files() -> None:
    for name in K8S_FILES:
        assert (K8S / name).is_file(), name
    for name in ("docker-compose.yml", "prometheus.yml", "gateway.yaml"):
        assert (COMPOSE / name).is_file(), name
    assert (DEPLOY / "README.md").is_file()


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_parses(path: Path) -> None:
    docs = load_docs(path)
    assert docs, f"{path}: no YAML document"
    assert all(isinstance(doc, dict) for doc in docs)


def test_kubernetes_objects_are_well_formed(objects: list[dict[str, Any]]) -> None:
    seen = set()
    for obj in objects:
        assert obj.get("apiVersion") and obj.get("kind") and obj["metadata"].get("name"), obj
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == NAMESPACE, f"{obj['kind']}/{obj['metadata']['name']}"
        key = (obj["kind"], obj["metadata"]["name"])
        assert key not in seen, f"{key} defined twice"
        seen.add(key)
    assert find(objects, "Namespace", NAMESPACE)


def test_kustomization_lists_every_manifest_except_the_example_secret() -> None:
    (kustomization,) = load_docs(K8S / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    listed = kustomization["resources"]
    manifests = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    # Listing the placeholder Secret would overwrite the real one with it on every `kubectl apply -k`.
    assert set(listed) == manifests - {"secret.yaml"}
    assert listed[0] == "namespace.yaml"


# -- the Deployment ---------------------------------------------------------------------------------------


def test_deployment_runs_the_image_with_three_replicas(deployment: dict[str, Any], container: dict[str, Any]) -> None:
    assert deployment["apiVersion"] == "apps/v1"
    assert deployment["spec"]["replicas"] == 3
    assert container["image"] == f"runtime-control-gateway:{__version__}"
    assert selects(deployment["spec"]["selector"]["matchLabels"], deployment["spec"]["template"]["metadata"]["labels"])


def test_probes(container: dict[str, Any], k8s_config: GatewayConfig) -> None:
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["http"] == k8s_config.listen.port == 8080
    expected = {"readinessProbe": "/readyz", "livenessProbe": "/healthz", "startupProbe": "/healthz"}
    for probe, path in expected.items():
        http = container[probe]["httpGet"]
        assert http["path"] == path, probe
        assert ports.get(http["port"], http["port"]) == k8s_config.listen.port, probe


def test_security_context(pod: dict[str, Any], container: dict[str, Any]) -> None:
    pod_security, security = pod["spec"].get("securityContext", {}), container["securityContext"]
    assert security.get("runAsNonRoot", pod_security.get("runAsNonRoot")) is True
    assert pod_security.get("runAsUser", 0) != 0 and security.get("runAsUser", 1) != 0
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    assert not security["capabilities"].get("add")
    assert security.get("privileged", False) is False
    assert pod["spec"]["automountServiceAccountToken"] is False


def test_resources_are_set(container: dict[str, Any]) -> None:
    resources = container["resources"]
    for kind in ("requests", "limits"):
        assert resources[kind]["cpu"] and resources[kind]["memory"], kind


def test_termination_outlasts_prestop_and_drain(pod: dict[str, Any], container: dict[str, Any], k8s_config: GatewayConfig) -> None:
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop_s = float(command[1])
    grace_s = pod["spec"]["terminationGracePeriodSeconds"]
    drain_s = k8s_config.limits.drain_timeout_s
    assert grace_s > drain_s
    # the grace period runs from the start of preStop: it must hold the sleep, the drain and the audit flush
    assert grace_s >= pre_stop_s + drain_s + 5


def test_prometheus_scrape_annotations(pod: dict[str, Any], k8s_config: GatewayConfig) -> None:
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == k8s_config.listen.port


def test_the_gateway_writes_only_to_writable_volumes(pod: dict[str, Any], container: dict[str, Any], k8s_config: GatewayConfig) -> None:
    mounts = container["volumeMounts"]
    for path in (k8s_config.store.local_dir, k8s_config.audit.spool_dir, Path("/tmp")):
        mount = mount_for(mounts, PurePosixPath(path))
        assert not mount.get("readOnly", False), path
        source = volume(pod, mount["name"])
        assert {"emptyDir", "ephemeral", "persistentVolumeClaim"} & source.keys(), f"{path}: {source}"
    spool = volume(pod, mount_for(mounts, PurePosixPath(k8s_config.audit.spool_dir))["name"])
    if "emptyDir" in spool and spool["emptyDir"].get("sizeLimit"):  # a full emptyDir evicts the pod, spool and all
        limit = spool["emptyDir"]["sizeLimit"]
        assert limit.endswith("Gi") and float(limit[:-2]) * 2**30 > k8s_config.audit.spool_max_bytes


def test_config_policies_and_keys_are_mounted_where_the_config_says(
    pod: dict[str, Any], container: dict[str, Any], k8s_config: GatewayConfig
) -> None:
    mounts = container["volumeMounts"]
    # the config file given to `gateway serve`
    args = container.get("command", []) + container.get("args", [])
    config_path = PurePosixPath(args[args.index("--config") + 1])
    mount = mount_for(mounts, config_path)
    source = volume(pod, mount["name"])["configMap"]
    assert source["name"] == CONFIG_MAP
    assert {"key": "gateway.yaml", "path": str(config_path.relative_to(mount["mountPath"]))} in source["items"]
    # the policy bundle: the whole ConfigMap as a directory (a subPath mount would never see updates)
    policies = [m for m in mounts if PurePosixPath(m["mountPath"]) == PurePosixPath(k8s_config.policies.dir)]
    assert len(policies) == 1 and "subPath" not in policies[0]
    assert volume(pod, policies[0]["name"])["configMap"]["name"] == POLICY_MAP
    # the JWKS, from the Secret
    assert k8s_config.auth.mode == "jwt" and k8s_config.auth.jwt is not None
    jwks = PurePosixPath(k8s_config.auth.jwt.jwks_file)  # type: ignore[arg-type]
    assert jwks == PurePosixPath("/etc/gateway/keys/jwks.json")
    mount = mount_for(mounts, jwks)
    secret = volume(pod, mount["name"])["secret"]
    assert secret["secretName"] == SECRET
    assert {"key": "jwks.json", "path": str(jwks.relative_to(mount["mountPath"]))} in secret["items"]
    for m in mounts:
        if {"configMap", "secret"} & volume(pod, m["name"]).keys():
            assert m.get("readOnly") is True, m["name"]


def test_the_secret_is_referenced_and_feeds_every_env_reference(
    objects: list[dict[str, Any]], pod: dict[str, Any], container: dict[str, Any]
) -> None:
    secret = find(objects, "Secret", SECRET)
    keys = set(secret["stringData"])
    env = {item["name"]: item for item in container["env"]}
    from_secret = {
        name: item["valueFrom"]["secretKeyRef"] for name, item in env.items() if "secretKeyRef" in item.get("valueFrom", {})
    }
    assert from_secret, "the Deployment takes nothing from the Secret"
    for ref in from_secret.values():
        assert ref["name"] == SECRET and ref["key"] in keys
    assert any(v.get("secret", {}).get("secretName") == SECRET for v in pod["spec"]["volumes"])
    # every ${VAR} the config needs is in the container's environment, every secret one from the Secret
    referenced = {name for text in strings(yaml.safe_load(k8s_gateway_yaml(objects))) for name in ENV_NAME.findall(text)}
    assert referenced == {"OPENAI_API_KEY", "AUDIT_HMAC_KEY"}
    assert referenced <= set(from_secret)
    assert {"OPENAI_API_KEY", "AUDIT_HMAC_KEY", "jwks.json"} <= keys


def test_the_secret_is_an_example_with_placeholders_only(objects: list[dict[str, Any]]) -> None:
    secret = find(objects, "Secret", SECRET)
    assert "EXAMPLE" in (K8S / "secret.yaml").read_text(encoding="utf-8").upper()
    assert "data" not in secret, "use stringData placeholders, not base64 values"
    for key, value in secret["stringData"].items():
        if key == "jwks.json":
            assert yaml.safe_load(value) == {"keys": []}, "the example JWKS must hold no key"
        else:
            assert value.startswith("REPLACE"), f"{key} is not a placeholder"
        assert not secret_findings(f"{key}: {value}") or value.startswith("REPLACE")


# -- ConfigMaps -------------------------------------------------------------------------------------------


def test_no_configmap_holds_a_secret(objects: list[dict[str, Any]]) -> None:
    secret_values = [v for v in find(objects, "Secret", SECRET)["stringData"].values() if len(v.strip()) >= 8]
    config_maps = find_all(objects, "ConfigMap")
    assert {cm["metadata"]["name"] for cm in config_maps} == {CONFIG_MAP, POLICY_MAP}
    for config_map in config_maps:
        assert "binaryData" not in config_map
        for key, text in config_map["data"].items():
            where = f"ConfigMap {config_map['metadata']['name']}, {key}"
            assert not SECRET_FILE_NAME.search(key), f"{where}: a key file belongs in a Secret"
            scanned = without_policy_tests(text) if config_map["metadata"]["name"] == POLICY_MAP else text
            assert secret_findings(scanned) == [], where
            assert not any(value in text for value in secret_values), where


def test_configmap_gateway_yaml_parses_with_the_gateway_loader(k8s_config: GatewayConfig) -> None:
    config = k8s_config
    assert (config.listen.host, config.listen.port, config.workers) == ("0.0.0.0", 8080, 2)
    assert config.store.backend == "redis"
    assert config.store.redis_url == "redis://redis:6379/0"
    openai = config.providers["openai"]
    assert openai.kind == "openai" and openai.api_key is not None
    assert openai.api_key.reveal() == TEST_ENV["OPENAI_API_KEY"]  # from the environment, not the file
    assert config.audit.hmac_key is not None and config.audit.hmac_key.reveal() == TEST_ENV["AUDIT_HMAC_KEY"]
    assert config.models and all(t.provider == "openai" for route in config.models.values() for t in route.targets)
    assert config.policies.dir == Path("/etc/gateway/policies")
    assert config.auth.mode == "jwt"
    assert config.audit.spool_dir.is_absolute() and config.store.local_dir.is_absolute()


def test_configmap_gateway_yaml_needs_its_environment(objects: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDIT_HMAC_KEY", "x")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ValueError, match="OPENAI_API_KEY is not set"):
        parse_gateway_yaml(k8s_gateway_yaml(objects), "configmap.yaml#gateway.yaml")


def test_policy_configmap_is_the_shipped_bundle(objects: list[dict[str, Any]]) -> None:
    data = find(objects, "ConfigMap", POLICY_MAP)["data"]
    shipped = {path.name: path.read_text(encoding="utf-8") for path in SHIPPED_POLICIES.glob("*.yaml")}
    assert shipped, "no shipped policies found"
    assert set(data) == set(shipped)
    for name, text in shipped.items():
        assert data[name] == text, f"{name} differs from policies/{name}: regenerate configmap.yaml"


def test_policy_configmap_compiles(objects: list[dict[str, Any]], k8s_config: GatewayConfig, tmp_path: Path) -> None:
    data = find(objects, "ConfigMap", POLICY_MAP)["data"]
    for name, text in data.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    compiled = compile_bundle(tmp_path, Metrics(), known_models=k8s_config.models)  # as `gateway serve` checks it
    assert compiled.policies.rule_count > 0
    assert len(compiled.bundle.policy_files()) == len(data)


# -- Service, PDB, HPA, NetworkPolicy -----------------------------------------------------------------------


def test_service_selects_the_gateway_pods(
    objects: list[dict[str, Any]], pod: dict[str, Any], container: dict[str, Any], redis_pod: dict[str, Any]
) -> None:
    service = find(objects, "Service", "gateway")
    labels = pod["metadata"]["labels"]
    assert selects(service["spec"]["selector"], labels)
    assert not selects(service["spec"]["selector"], redis_pod["metadata"]["labels"])
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in ports or port["targetPort"] in ports.values()


def test_pdb_protects_the_gateway_pods(objects: list[dict[str, Any]], pod: dict[str, Any], redis_pod: dict[str, Any]) -> None:
    pdb = find(objects, "PodDisruptionBudget", "gateway")
    assert pdb["apiVersion"] == "policy/v1"
    selector = pdb["spec"]["selector"]["matchLabels"]
    assert selects(selector, pod["metadata"]["labels"]) and not selects(selector, redis_pod["metadata"]["labels"])
    assert pdb["spec"].get("minAvailable") == 2 or pdb["spec"].get("maxUnavailable") == 1


def test_hpa_scales_the_deployment_on_cpu(objects: list[dict[str, Any]], deployment: dict[str, Any]) -> None:
    hpa = find(objects, "HorizontalPodAutoscaler", "gateway")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment", deployment["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] <= deployment["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]
    assert hpa["spec"]["minReplicas"] >= 2, "a PDB disruption must leave a pod serving"
    (metric,) = [m for m in hpa["spec"]["metrics"] if m["type"] == "Resource"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == "Utilization"
    # utilisation is relative to the request: the container must have one
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"]


def test_redis_admits_only_gateway_pods(objects: list[dict[str, Any]], pod: dict[str, Any], redis_pod: dict[str, Any]) -> None:
    policy = find(objects, "NetworkPolicy", "redis-from-gateway-only")
    assert selects(policy["spec"]["podSelector"]["matchLabels"], redis_pod["metadata"]["labels"])
    sources = [peer["podSelector"]["matchLabels"] for rule in policy["spec"]["ingress"] for peer in rule["from"]]
    assert sources and all(selects(source, pod["metadata"]["labels"]) for source in sources)


# -- Redis ------------------------------------------------------------------------------------------------


def test_redis_statefulset(objects: list[dict[str, Any]], redis_pod: dict[str, Any], k8s_config: GatewayConfig) -> None:
    statefulset = find(objects, "StatefulSet", "redis")
    assert statefulset["spec"]["replicas"] == 1
    (container,) = redis_pod["spec"]["containers"]
    assert container["image"].split(":")[0] == "redis" and container["image"].split(":")[1].startswith("7")
    args = container.get("command", []) + container.get("args", [])
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    # persistent data: a claim per pod, mounted where Redis writes
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert {"name": claim["metadata"]["name"], "mountPath": "/data"} in container["volumeMounts"]
    assert claim["spec"]["resources"]["requests"]["storage"]
    assert find(objects, "Service", statefulset["spec"]["serviceName"])["spec"]["clusterIP"] == "None"
    # the Service the gateway's store.redis_url names
    url = re.fullmatch(r"redis://([^:/]+):(\d+)/\d+", k8s_config.store.redis_url)
    assert url is not None
    service = find(objects, "Service", url.group(1))
    assert selects(service["spec"]["selector"], redis_pod["metadata"]["labels"])
    assert int(url.group(2)) in [port["port"] for port in service["spec"]["ports"]]
    assert re.search(r"Sentinel|managed Redis", (K8S / "redis.yaml").read_text(encoding="utf-8"))
    security = container["securityContext"]
    assert redis_pod["spec"]["securityContext"]["runAsNonRoot"] is True and security["allowPrivilegeEscalation"] is False


# -- Docker Compose ---------------------------------------------------------------------------------------


@pytest.fixture
def compose_config(monkeypatch: pytest.MonkeyPatch) -> GatewayConfig:
    # It must run with no API key and no HMAC key in the environment.
    for name in ("OPENAI_API_KEY", "AUDIT_HMAC_KEY"):
        monkeypatch.delenv(name, raising=False)
    path = COMPOSE / "gateway.yaml"
    return parse_gateway_yaml(path.read_text(encoding="utf-8"), str(path))


def test_compose_gateway_yaml_parses_with_the_gateway_loader(compose_config: GatewayConfig, compose: dict[str, Any]) -> None:
    config = compose_config
    assert config.store.backend == "redis"
    assert {provider.kind for provider in config.providers.values()} == {"mock"}
    assert config.audit.hmac_key is None  # unset: each instance generates one
    assert (config.listen.host, config.listen.port) == ("0.0.0.0", 8080)
    url = re.fullmatch(r"redis://([^:/]+):(\d+)/\d+", config.store.redis_url)
    assert url is not None and url.group(1) in compose["services"]


def test_compose_gateway_yaml_takes_the_hmac_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDIT_HMAC_KEY", "shared-key")
    path = COMPOSE / "gateway.yaml"
    config = parse_gateway_yaml(path.read_text(encoding="utf-8"), str(path))
    assert config.audit.hmac_key is not None and config.audit.hmac_key.reveal() == "shared-key"


def test_compose_redis_flags(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert redis["image"].split(":")[0] == "redis" and redis["image"].split(":")[1].startswith("7")
    command = redis["command"]
    command = command.split() if isinstance(command, str) else command
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert any(str(mount).endswith(":/data") for mount in redis["volumes"])


def test_compose_runs_two_gateways_built_from_the_repository(compose: dict[str, Any], compose_config: GatewayConfig) -> None:
    gateways = gateway_services(compose)
    assert len(gateways) == 2
    host_ports = []
    for name, service in gateways.items():
        build = service["build"]
        context = (COMPOSE / (build["context"] if isinstance(build, dict) else build)).resolve()
        assert context == REPO and (context / build.get("dockerfile", "Dockerfile")).is_file(), name
        command = service["command"]
        config_path = command[command.index("--config") + 1]
        volumes = {target: source for source, target, *_ in (str(v).split(":") for v in service["volumes"])}
        assert volumes[config_path] == "./gateway.yaml", name
        assert (COMPOSE / volumes[str(compose_config.policies.dir)]).resolve() == SHIPPED_POLICIES, name
        # the gateway writes only to its own volume (and tmpfs): the root filesystem is read-only
        assert service["read_only"] is True and "/tmp" in service["tmpfs"]
        writable = [target for target, source in volumes.items() if not source.startswith(".")]
        for path in (compose_config.store.local_dir, compose_config.audit.spool_dir):
            assert any(PurePosixPath(path) == PurePosixPath(t) or PurePosixPath(t) in PurePosixPath(path).parents for t in writable)
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert seconds(service["stop_grace_period"]) > compose_config.limits.drain_timeout_s, name
        (port,) = service["ports"]
        host, container_port = str(port).rsplit(":", 1)
        assert int(container_port) == compose_config.listen.port
        host_ports.append(host)
    assert len(set(host_ports)) == 2
    header = (COMPOSE / "docker-compose.yml").read_text(encoding="utf-8")
    for host in host_ports:
        assert host in header.split("services:")[0], f"port {host} is not documented in the header"


def test_compose_volumes_are_per_instance(compose: dict[str, Any]) -> None:
    named = [
        str(v).split(":")[0] for service in gateway_services(compose).values() for v in service["volumes"] if not str(v).startswith(".")
    ]
    assert len(named) == len(set(named)) == 2, "each instance needs its own spool"


def test_prometheus_scrapes_both_gateways(compose: dict[str, Any], compose_config: GatewayConfig) -> None:
    prometheus = compose["services"]["prometheus"]
    assert any(str(v).startswith("./prometheus.yml:") for v in prometheus["volumes"])
    (config,) = load_docs(COMPOSE / "prometheus.yml")
    targets = {
        target
        for job in config["scrape_configs"]
        if job.get("metrics_path", "/metrics") == "/metrics"
        for static in job["static_configs"]
        for target in static["targets"]
    }
    assert targets == {f"{name}:{compose_config.listen.port}" for name in gateway_services(compose)}


def test_compose_policies_compile(compose_config: GatewayConfig) -> None:
    compiled = compile_bundle(SHIPPED_POLICIES, Metrics(), known_models=compose_config.models)
    assert compiled.policies.rule_count > 0


def test_compose_files_hold_no_secret() -> None:
    for path in (COMPOSE / "gateway.yaml", COMPOSE / "docker-compose.yml", COMPOSE / "prometheus.yml"):
        assert secret_findings(path.read_text(encoding="utf-8")) == [], path.name
