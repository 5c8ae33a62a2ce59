"""The deployment files under deploy/: they parse, name only metrics the engine exports, keep
the security settings they promise, and their configurations pass `switchboard check`.

Fast and offline. When `promtool` is installed (Debian: prometheus) the rules, the scrape
configuration and every dashboard query are also checked by it, and each alert rule is run
through `promtool test rules` against made-up series.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from engine.config.scalars import parse_duration
from engine.metrics import Metrics

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "switchboard-dashboard.json"
COMPOSE_DIR = DEPLOY / "compose"
DOCKERFILE = DEPLOY / "container" / "Dockerfile"
K8S = DEPLOY / "kubernetes"

# Metrics not exported by engine.metrics.Metrics that the files may still use.
EXTRA_METRICS = {
    "switchboard_certificate_expiry_seconds",  # gauge {listener, kind}
    "up",  # Prometheus' own, per scrape target
}
SEVERITIES = {"info", "warning", "critical"}
ENV = {"POSTGRES_PASSWORD": "not-a-secret", "SWITCHBOARD_ADMIN_TOKEN": "not-a-token"}


# helpers -------------------------------------------------------------------------------
def exported_metric_names() -> set[str]:
    """The series names Prometheus sees from a fresh engine's registry."""
    names = set()
    for family in Metrics().registry.collect():
        name = family.name
        if family.type == "counter":
            names.add(f"{name}_total")
        elif family.type == "histogram":
            names.update(f"{name}_{suffix}" for suffix in ("bucket", "sum", "count"))
        elif family.type == "summary":
            names.update((name, f"{name}_sum", f"{name}_count"))
        else:
            names.add(name)
    return names


ALLOWED_METRICS = exported_metric_names() | EXTRA_METRICS

_KEYWORDS = {
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
    "group_left", "group_right", "inf", "nan", "atan2",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (or a Grafana query with $variables)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)  # label matchers (and ${var})
    s = re.sub(r"\[[^\]]*\]", " ", s)  # ranges and subqueries
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\$\w+", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", s):
        token = m.group(0)
        if token.lower() in _KEYWORDS or re.match(r"\s*\(", s[m.end() :]):
            continue  # a keyword or a function / aggregation call
        names.add(token)
    return names


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def alert_rules() -> list[dict]:
    return [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def dashboard_queries(dash: dict) -> list[str]:
    """Every PromQL expression of the dashboard: panel targets and variable queries."""
    exprs = []
    for panel in dash["panels"]:
        for sub in [panel, *panel.get("panels", [])]:
            exprs += [t["expr"] for t in sub.get("targets", [])]
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            m = re.fullmatch(r"label_values\((.+),\s*\w+\)", query)
            exprs.append(m.group(1) if m else query)
    return exprs


def switchboard_check(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ENV and k != "SWITCHBOARD_CONFIG"}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "engine", "check", "-c", str(config)],
        cwd=REPO,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )


def config_dir(tmp_path: Path, routes: str, channels: dict[str, str] | None = None) -> Path:
    """An /etc/switchboard as the image has it: routes.yaml, channels/ and transforms/."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "routes.yaml").write_text(routes, encoding="utf-8")
    if channels is None:
        (etc / "channels").symlink_to(REPO / "channels")
    else:
        (etc / "channels").mkdir()
        for name, text in channels.items():
            (etc / "channels" / name).write_text(text, encoding="utf-8")
    (etc / "transforms").symlink_to(REPO / "transforms")
    return etc / "routes.yaml"


def compose() -> dict:
    return load_yaml(COMPOSE_DIR / "compose.yaml")


def k8s_objects() -> dict[str, list[dict]]:
    objects: dict[str, list[dict]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc and "kind" in doc:
                objects.setdefault(doc["kind"], []).append(doc)
    return objects


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (word, _) in enumerate(instructions) if word == "FROM"]
    return instructions[starts[-1] :]


# every file parses -----------------------------------------------------------------------
def test_every_yaml_and_json_file_under_deploy_parses():
    seen = set()
    for root, _dirs, files in os.walk(DEPLOY):  # symlinked example dirs are not followed
        for name in files:
            path = Path(root) / name
            if path.suffix in (".yaml", ".yml"):
                docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
                assert docs, f"{path}: empty"
            elif path.suffix == ".json":
                json.loads(path.read_text(encoding="utf-8"))
            else:
                continue
            seen.add(path.relative_to(DEPLOY).as_posix())
    expected = {
        "prometheus/prometheus.yml", "prometheus/alerts.yml",
        "grafana/switchboard-dashboard.json", "grafana/provisioning/datasources/prometheus.yaml",
        "grafana/provisioning/dashboards/switchboard.yaml", "compose/compose.yaml",
        "compose/routes.yaml", "container/routes.yaml", "kubernetes/deployment.yaml",
        "kubernetes/service.yaml", "kubernetes/configmap.yaml", "kubernetes/pdb.yaml",
        "kubernetes/secret.example.yaml", "kubernetes/kustomization.yaml",
    }  # fmt: skip
    assert expected <= seen, f"missing: {sorted(expected - seen)}"


# metric names --------------------------------------------------------------------------
def test_metric_name_extraction():
    expr = (
        'sum by (listener) (rate(switchboard_acks_total{code=~"AE|AR"}[5m])) / 2 > 0.05 '
        "and on (listener) up offset 5m"
    )
    assert metric_names(expr) == {"switchboard_acks_total", "up"}
    assert metric_names("histogram_quantile(0.99, sum by (le) (rate(x_bucket[$__rate_interval])))"
                        ) == {"x_bucket"}  # fmt: skip
    assert metric_names('max by (a, b) (g{c=~"$channel"}) < 14 * 86400') == {"g"}
    # names the engine does not export are caught: a counter without _total, a typo
    assert "switchboard_acks" not in ALLOWED_METRICS
    assert "switchboard_acks_total" in ALLOWED_METRICS
    assert "switchboard_ack_latency_seconds_bucket" in ALLOWED_METRICS
    assert "switchboard_destination_health" in ALLOWED_METRICS
    assert "switchboard_destination_health_total" not in ALLOWED_METRICS


def test_alerts_use_only_exported_metrics():
    used = set()
    for rule in alert_rules():
        names = metric_names(rule["expr"])
        assert names, f"{rule['alert']}: no metric found in {rule['expr']!r}"
        unknown = names - ALLOWED_METRICS
        assert not unknown, f"{rule['alert']}: unknown metrics {sorted(unknown)}"
        used |= names
    for required in (
        "switchboard_destination_health", "switchboard_queue_oldest_age_seconds",
        "switchboard_acks_total", "switchboard_dead_letters_total",
        "switchboard_messages_received_total", "switchboard_store_commit_seconds_bucket",
        "switchboard_certificate_expiry_seconds",
    ):  # fmt: skip
        assert required in used, f"no alert on {required}"


def test_dashboard_uses_only_exported_metrics():
    used = set()
    for expr in dashboard_queries(dashboard()):
        names = metric_names(expr)
        assert names, f"no metric found in {expr!r}"
        unknown = names - ALLOWED_METRICS
        assert not unknown, f"unknown metrics {sorted(unknown)} in {expr!r}"
        used |= names
    for required in (
        "switchboard_messages_received_total", "switchboard_acks_total",
        "switchboard_ack_latency_seconds_bucket", "switchboard_store_commit_seconds_bucket",
        "switchboard_store_batch_size_bucket", "switchboard_queue_depth",
        "switchboard_queue_oldest_age_seconds", "switchboard_delivered_total",
        "switchboard_delivery_retries_total", "switchboard_dead_letters_total",
        "switchboard_destination_health", "switchboard_step_errors_total",
        "switchboard_unmapped_codes_total", "switchboard_connections_open",
        "switchboard_frame_errors_total",
    ):  # fmt: skip
        assert required in used, f"no panel shows {required}"


# alert rules ----------------------------------------------------------------------------
def test_alert_rules_are_complete():
    rules = alert_rules()
    assert len(rules) >= 8
    names = [r.get("alert") for r in rules]
    assert len(set(names)) == len(names), "duplicate alert names"
    for rule in rules:
        name = rule.get("alert")
        assert name and rule.get("expr"), rule
        assert parse_duration(str(rule["for"])) >= 0, name
        assert rule["labels"]["severity"] in SEVERITIES, name
        notes = rule["annotations"]
        assert notes.get("summary") and notes.get("description") and notes.get("runbook"), name
        text = " ".join(str(v) for v in notes.values())
        grouped = set()
        for clause in re.findall(r"\bby\s*\(([^)]*)\)", rule["expr"]):
            grouped |= {label.strip() for label in clause.split(",")}
        for label in ("listener", "destination", "channel", "instance"):
            if label in grouped:
                assert f"$labels.{label}" in text, f"{name}: annotations do not name {label}"


def test_alerts_the_operators_asked_for():
    by_expr = {r["alert"]: re.sub(r"\s+", " ", r["expr"]) for r in alert_rules()}

    def find(pattern):
        hits = [name for name, expr in by_expr.items() if re.search(pattern, expr)]
        assert hits, f"no alert matches {pattern!r}"
        return {r["alert"]: r for r in alert_rules()}[hits[0]]

    down = find(r"switchboard_destination_health\) == 2")
    assert parse_duration(down["for"]) == 300
    find(r"switchboard_queue_oldest_age_seconds\) > \d+")
    nak = find(r'switchboard_acks_total\{code=~"AE\|AR\|CE\|CR"\}\[5m\]')
    assert "/" in nak["expr"]
    find(r"increase\(switchboard_dead_letters_total\[\w+\]\)\) > 0")
    find(r"increase\(switchboard_messages_received_total\[15m\]\)\) == 0")
    find(r"histogram_quantile\(0\.99, sum by \([^)]*\) \(rate\(switchboard_store_commit")
    cert = find(r"switchboard_certificate_expiry_seconds\) < 14 \* 86400")
    assert cert["labels"]["severity"] == "warning"


# promtool (optional) -----------------------------------------------------------------------
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(not PROMTOOL, reason="promtool not installed")


def promtool(*args: str, cwd: Path) -> None:
    proc = subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_promtool
def test_promtool_checks_rules_and_config():
    promtool("check", "rules", ALERTS.name, cwd=ALERTS.parent)
    promtool("check", "config", PROMETHEUS.name, cwd=PROMETHEUS.parent)


@needs_promtool
def test_promtool_parses_every_dashboard_query(tmp_path):
    rules = []
    for i, expr in enumerate(dashboard_queries(dashboard())):
        expr = expr.replace("$__rate_interval", "5m")
        expr = re.sub(r"\$\{?\w+\}?", ".*", expr)
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    (tmp_path / "dashboard.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "d", "rules": rules}]})
    )
    promtool("check", "rules", "dashboard.yml", cwd=tmp_path)


def _series(name: str, values: str, **labels: str) -> dict:
    labels = {"job": "switchboard", "instance": "n1:8480", **labels}
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


def _alert(name: str, at: str, *expected: dict) -> dict:
    return {"eval_time": at, "alertname": name, "exp_alerts": [{"exp_labels": e} for e in expected]}


EPIC = {"channel": "lab-results", "destination": "epic"}
LAB = {"channel": "adt-fanout", "destination": "lab"}
N1, N2 = {"instance": "n1:8480"}, {"instance": "n2:8480"}
WARN, CRIT = {"severity": "warning"}, {"severity": "critical"}
HEALTH, AGE = "switchboard_destination_health", "switchboard_queue_oldest_age_seconds"
ACKS, RECEIVED = "switchboard_acks_total", "switchboard_messages_received_total"
COMMIT, CERT = "switchboard_store_commit_seconds_bucket", "switchboard_certificate_expiry_seconds"
TLS = {"listener": "lab-tls"}
CLIENT = {"listener": "lab-results/epic", "kind": "client"}
CONFLICTS = "switchboard_conflicting_duplicates_total"
REJECTING = {"listener": "mllp-in", "action": "reject"}
ALERT_TESTS = [
    {  # a destination down on the node holding its lease, healthy on the other
        "input_series": [
            _series(HEALTH, "2x30", **EPIC),
            _series(HEALTH, "0x30", **EPIC, **N2),
            _series(HEALTH, "1x30", **LAB),
        ],
        "alert_rule_test": [
            _alert("SwitchboardDestinationDown", "4m"),
            _alert("SwitchboardDestinationDown", "6m", {**EPIC, **CRIT}),
            _alert("SwitchboardDestinationDegraded", "14m"),
            _alert("SwitchboardDestinationDegraded", "16m", {**LAB, **WARN}),
        ],
    },
    {  # the oldest delivery ages a minute a minute, seen by both nodes
        "input_series": [
            _series(AGE, "0+60x90", **EPIC),
            _series(AGE, "0+60x90", **EPIC, **N2),
            _series(AGE, "0x90", channel="orders", destination="ris"),
        ],
        "alert_rule_test": [
            _alert("SwitchboardQueueBacklog", "19m"),
            _alert("SwitchboardQueueBacklog", "22m", {**EPIC, **WARN}),
            _alert("SwitchboardQueueStalled", "64m"),
            _alert("SwitchboardQueueStalled", "67m", {**EPIC, **CRIT}),
        ],
    },
    {  # one dead letter at minute 5
        "input_series": [
            _series("switchboard_dead_letters_total", "0x4 1x40", **EPIC),
            _series("switchboard_dead_letters_total", "0x45", **EPIC, **N2),
        ],
        "alert_rule_test": [
            _alert("SwitchboardDeadLetters", "4m"),
            _alert("SwitchboardDeadLetters", "7m", {**EPIC, **WARN}),
            _alert("SwitchboardDeadLetters", "25m"),
        ],
    },
    {  # 9% AR on mllp-in; 1% AE on lab-in; 100% AR but 1/min on drop (too few to tell)
        "input_series": [
            _series(ACKS, "0+100x30", listener="mllp-in", code="AA"),
            _series(ACKS, "0+10x30", listener="mllp-in", code="AR"),
            _series(ACKS, "0+100x30", listener="lab-in", code="AA"),
            _series(ACKS, "0+1x30", listener="lab-in", code="AE"),
            _series(ACKS, "0+1x30", listener="drop", code="AR"),
        ],
        "alert_rule_test": [
            _alert("SwitchboardHighNakRate", "8m"),
            _alert("SwitchboardHighNakRate", "15m", {"listener": "mllp-in", **WARN}),
        ],
    },
    {  # mllp-in stops at minute 20 (and never gets traffic on n2); lab-in keeps going
        "input_series": [
            _series(RECEIVED, "0+10x20 200x30", listener="mllp-in"),
            _series(RECEIVED, "0x50", listener="mllp-in", **N2),
            _series(RECEIVED, "0+5x50", listener="lab-in"),
        ],
        "alert_rule_test": [
            _alert("SwitchboardListenerSilent", "33m"),
            _alert("SwitchboardListenerSilent", "41m", {"listener": "mllp-in", **WARN}),
        ],
    },
    {  # commits take 0.25-0.5 s on n1, under 0.1 s on n2
        "input_series": [
            _series(COMMIT, "0x30", le="0.1"),
            _series(COMMIT, "0x30", le="0.25"),
            _series(COMMIT, "0+10x30", le="0.5"),
            _series(COMMIT, "0+10x30", le="+Inf"),
            *(_series(COMMIT, "0+10x30", le=le, **N2) for le in ("0.1", "0.25", "0.5", "+Inf")),
        ],
        "alert_rule_test": [
            _alert("SwitchboardStoreCommitSlow", "8m"),
            _alert("SwitchboardStoreCommitSlow", "15m", {**N1, **WARN}),
        ],
    },
    {
        "input_series": [
            _series("switchboard_store_errors_total", "0x3 5x20", listener="mllp-in"),
            _series("up", "1x2 0x10"),
            _series("up", "1x12", **N2),
        ],
        "alert_rule_test": [
            _alert("SwitchboardStoreErrors", "2m"),
            _alert("SwitchboardStoreErrors", "6m", {**N1, "listener": "mllp-in", **CRIT}),
            _alert("SwitchboardNodeDown", "2m"),
            _alert("SwitchboardNodeDown", "6m", {"job": "switchboard", **N1, **CRIT}),
        ],
    },
    {  # certificates with 10, 30 and 2 days left
        "input_series": [
            _series(CERT, "864000-60x120", **TLS, kind="server"),
            _series(CERT, "2592000-60x120", **TLS, kind="client_ca"),
            _series(CERT, "172800-60x120", **CLIENT),
        ],
        "alert_rule_test": [
            _alert("SwitchboardCertificateExpiringSoon", "30m"),
            _alert(
                "SwitchboardCertificateExpiringSoon",
                "61m",
                {**TLS, "kind": "server", **WARN},
                {**CLIENT, **WARN},
            ),
            _alert("SwitchboardCertificateExpiring", "5m"),
            _alert("SwitchboardCertificateExpiring", "11m", {**CLIENT, **CRIT}),
        ],
    },
    {  # one conflicting duplicate at minute 5 on n1
        "input_series": [
            _series(CONFLICTS, "0x4 1x40", **REJECTING),
            _series(CONFLICTS, "0x45", **REJECTING, **N2),
        ],
        "alert_rule_test": [
            _alert("SwitchboardConflictingDuplicates", "4m"),
            _alert("SwitchboardConflictingDuplicates", "7m", {**REJECTING, **WARN}),
            _alert("SwitchboardConflictingDuplicates", "25m"),
        ],
    },
    {
        "input_series": [
            _series("switchboard_frame_errors_total", "0+5x30", listener="mllp-in", reason="junk"),
            _series("switchboard_frame_errors_total", "0x30", listener="mllp-in", reason="timeout"),
        ],
        "alert_rule_test": [
            _alert("SwitchboardFrameErrors", "1m"),
            _alert(
                "SwitchboardFrameErrors",
                "15m",
                {"listener": "mllp-in", "reason": "junk", "severity": "info"},
            ),
        ],
    },
]


def test_every_alert_has_a_promtool_case():
    tested = {t["alertname"] for case in ALERT_TESTS for t in case["alert_rule_test"]}
    assert {r["alert"] for r in alert_rules()} == tested


@needs_promtool
def test_alert_rules_fire_as_intended(tmp_path):
    # promtool compares annotations too; the rules are tested without them
    data = load_yaml(ALERTS)
    for group in data["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(data))
    tests = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", **case} for case in ALERT_TESTS],
    }
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(tests))
    promtool("test", "rules", "tests.yml", cwd=tmp_path)


# Prometheus and Grafana ---------------------------------------------------------------------
def test_prometheus_scrapes_the_compose_engine_admin_port():
    prom = load_yaml(PROMETHEUS)
    assert prom["rule_files"] == ["alerts.yml"]
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "switchboard")
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    routes = load_yaml(COMPOSE_DIR / "routes.yaml")
    port = re.match(r"tcp:(\d+)", routes["admin"]["listen"]).group(1)
    assert targets == [f"engine:{port}"]
    assert "engine" in compose()["services"]
    # the job name is the one the node-down alert selects
    assert any('job="switchboard"' in r["expr"] for r in alert_rules())


def test_dashboard_structure():
    dash = dashboard()
    assert 36 <= dash["schemaVersion"] <= 41
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for var in variables.values():
        if var["type"] == "query":
            assert var["datasource"]["uid"] == "${datasource}", var["name"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], int] = {}
    for panel in dash["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps panel {cells[(x, y)]}"
                cells[(x, y)] = panel["id"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            for var in re.findall(r"\$(\w+)", target["expr"]):
                assert var.startswith("__") or var in variables, f"{panel['title']}: ${var}"
    stats = [p for p in dash["panels"] if p["type"] == "stat"]
    assert any("switchboard_destination_health" in t["expr"] for p in stats for t in p["targets"])
    ack = " ".join(t["expr"] for p in dash["panels"] for t in p.get("targets", []))
    latency = "rate(switchboard_ack_latency_seconds_bucket"
    for q in ("0.5", "0.99"):
        assert f"histogram_quantile({q}, sum by (le, listener) ({latency}" in ack


def test_grafana_provisioning_matches_compose():
    grafana = compose()["services"]["grafana"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    provisioning = DEPLOY / "grafana" / "provisioning"
    assert (COMPOSE_DIR / mounts["/etc/grafana/provisioning"]).resolve() == provisioning
    provider = load_yaml(provisioning / "dashboards" / "switchboard.yaml")["providers"][0]
    dash_mount = next(c for c in mounts if c.endswith(".json"))
    assert Path(dash_mount).parent.as_posix() == provider["options"]["path"]
    assert (COMPOSE_DIR / mounts[dash_mount]).resolve() == DASHBOARD
    source = load_yaml(provisioning / "datasources" / "prometheus.yaml")["datasources"][0]
    assert source["type"] == "prometheus"
    host = re.match(r"http://([^:/]+)", source["url"]).group(1)
    assert host in compose()["services"]


# compose -------------------------------------------------------------------------------
def test_compose_engine_is_read_only_and_not_root():
    services = compose()["services"]
    assert {"engine", "postgres", "prometheus", "grafana"} <= set(services)
    engine = services["engine"]
    assert engine["read_only"] is True
    user = str(engine["user"]).split(":")[0]
    assert user not in ("", "0", "root")
    assert any(str(t).split(":")[0] == "/tmp" for t in engine["tmpfs"])
    targets = {}
    for volume in engine["volumes"]:
        source, target, *mode = volume.split(":")
        targets[target] = (source, mode)
        if source.startswith("."):
            assert (COMPOSE_DIR / source).exists(), f"{source} does not exist"
    assert targets["/etc/switchboard/routes.yaml"] == ("./routes.yaml", ["ro"])
    assert all(m == ["ro"] for t, (_, m) in targets.items() if t.startswith("/etc/switchboard"))
    assert "/var/lib/switchboard" in targets
    assert engine["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert engine["command"] == ["run", "-c", "/etc/switchboard/routes.yaml"]


def test_compose_postgres_and_prometheus():
    services = compose()["services"]
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:16")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    prometheus = services["prometheus"]
    for volume in prometheus["volumes"]:
        source = volume.split(":")[0]
        if source.startswith("."):
            assert (COMPOSE_DIR / source).exists(), source
    mounted = {Path(v.split(":")[0]).name for v in prometheus["volumes"]}
    assert {"prometheus.yml", "alerts.yml"} <= mounted


def test_compose_routes_pass_switchboard_check():
    routes = COMPOSE_DIR / "routes.yaml"
    text = routes.read_text(encoding="utf-8")
    assert "postgresql+psycopg://switchboard:${POSTGRES_PASSWORD}@postgres:5432/switchboard" in text
    ok = switchboard_check(routes.relative_to(REPO), ENV)
    assert ok.returncode == 0, ok.stderr
    assert "admin: tcp:8480:interface=0.0.0.0 (token required)" in ok.stdout
    # and the check does fail: without the password the store URL cannot be resolved
    failed = switchboard_check(routes.relative_to(REPO), {"SWITCHBOARD_ADMIN_TOKEN": "x"})
    assert failed.returncode == 1
    assert "POSTGRES_PASSWORD" in failed.stderr


# container -----------------------------------------------------------------------------
def test_dockerfile_is_multi_stage_non_root_with_healthcheck():
    instructions = dockerfile_instructions()
    froms = [args for word, args in instructions if word == "FROM"]
    assert len(froms) >= 2 and " AS " in froms[0].upper()
    args = dict(a.split("=", 1) for w, a in instructions if w == "ARG" and "=" in a)
    assert args["PYTHON_IMAGE"].startswith("python:3.11-slim")
    last = final_stage(instructions)
    users = [a for w, a in last if w == "USER"]
    assert users, "no USER in the final stage"
    assert users[-1].split(":")[0] not in ("0", "root")
    assert users[-1].split(":")[0] == "10001"
    health = [a for w, a in last if w == "HEALTHCHECK"]
    assert health and "/healthz" in health[0] and "urllib" in health[0]
    exposed = {p for w, a in last if w == "EXPOSE" for p in a.split()}
    assert {"2575", "8480"} <= exposed
    entrypoint = json.loads(next(a for w, a in last if w == "ENTRYPOINT"))
    cmd = json.loads(next(a for w, a in last if w == "CMD"))
    assert entrypoint + cmd == ["switchboard", "run", "-c", "/etc/switchboard/routes.yaml"]


def test_dockerfile_copies_only_what_the_context_filter_sends():
    ignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    allowed = {ln[1:].rstrip("/") for ln in ignore.splitlines() if ln.startswith("!")}
    for word, args in dockerfile_instructions():
        if word != "COPY" or "--from=" in args:
            continue
        parts = [p for p in shlex.split(args) if not p.startswith("--")]
        for source in parts[:-1]:
            assert (REPO / source).exists(), f"COPY {source}: not in the repository"
            assert source.rstrip("/") in allowed, f"COPY {source}: excluded by the dockerignore"


def test_image_default_config_passes_check(tmp_path):
    routes = (DEPLOY / "container" / "routes.yaml").read_text(encoding="utf-8")
    assert "/var/lib/switchboard/" in routes  # the only writable place
    result = switchboard_check(config_dir(tmp_path, routes), ENV)
    assert result.returncode == 0, result.stderr


# Kubernetes ----------------------------------------------------------------------------
def test_kubernetes_deployment_hardening_and_probes():
    objects = k8s_objects()
    (deployment,) = objects["Deployment"]
    spec = deployment["spec"]
    assert spec["replicas"] >= 2
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["runAsNonRoot"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] in ("/healthz", "/readyz")
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0].endswith("sleep")
    assert pod["terminationGracePeriodSeconds"] >= int(pre_stop[1]) + 40
    assert container["args"] == ["run", "-c", "/etc/switchboard/routes.yaml"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"mllp": 2575, "admin": 8480}
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/var/lib/switchboard", "/tmp", "/etc/switchboard/routes.yaml"} <= mounts

    # the secret keys it reads are the example's; the config keys it mounts exist
    (secret,) = objects["Secret"]
    for env in container["env"]:
        ref = env.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert ref["name"] == secret["metadata"]["name"]
            assert ref["key"] in secret["stringData"]
    (configmap,) = objects["ConfigMap"]
    for volume in pod["volumes"]:
        if "configMap" in volume:
            assert volume["configMap"]["name"] == configmap["metadata"]["name"]
            for item in volume["configMap"]["items"]:
                assert item["key"] in configmap["data"]

    # the Service and the PDB select these pods
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    (service,) = objects["Service"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert {p["port"]: p["targetPort"] for p in service["spec"]["ports"]} == {
        2575: "mllp",
        8480: "admin",
    }
    (pdb,) = objects["PodDisruptionBudget"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] < spec["replicas"]

    kustomization = load_yaml(K8S / "kustomization.yaml")
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource
    assert "secret.example.yaml" not in kustomization["resources"]


def test_kubernetes_config_passes_check(tmp_path):
    (configmap,) = k8s_objects()["ConfigMap"]
    data = dict(configmap["data"])
    routes = data.pop("routes.yaml")
    assert "postgresql+psycopg://" in routes and "lease_ttl" in routes
    result = switchboard_check(config_dir(tmp_path, routes, channels=data), ENV)
    assert result.returncode == 0, result.stderr
    assert f"channels ({len(data)})" in result.stdout


# systemd -------------------------------------------------------------------------------
def test_systemd_unit():
    text = (DEPLOY / "systemd" / "switchboard.service").read_text(encoding="utf-8")
    settings: dict[str, str] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    assert settings["User"] not in ("root", "0")
    assert re.search(r"switchboard run -c \S+routes\.yaml$", settings["ExecStart"])
    assert "switchboard check -c" in settings["ExecStartPre"]
    assert settings["ProtectSystem"] == "strict"
    assert settings["ExecReload"].endswith("-HUP $MAINPID")
    assert parse_duration(settings["TimeoutStopSec"] + "s") >= 40
