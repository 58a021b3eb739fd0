"""The monitoring configs in deploy/observability: checked by promtool, tested, and tied to the code.

promtool validates the local scrape config and the alert rules and runs the rules' unit tests
(alerts.test.yml); the dashboard's queries are parsed by promtool too. On top, the tests pin what
promtool cannot know: that every ``ragstream_*`` metric the dashboard and the alerts read is
defined by a service (so renaming a metric fails here), that the scrape configs name the services,
ports and namespaces the stack and the manifests use, and that a real Prometheus with the local
config starts and lists the five targets. promtool comes from Debian's ``prometheus`` package,
installed by the stack when missing; these tests fail, never skip, when it cannot be provided.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from ragstream_cli.stack.errors import StackError
from ragstream_cli.stack.platform import SERVICES
from ragstream_cli.stack.prometheus import (
    PrometheusTools,
    ensure_prometheus,
    install_prometheus,
    prometheus_status_row,
    stop_prometheus,
)
from ragstream_common import drift

REPO = Path(__file__).resolve().parents[1]
OBSERVABILITY = REPO / "deploy" / "observability"
LOCAL_CONFIG = OBSERVABILITY / "prometheus.yml"
K8S_CONFIG = OBSERVABILITY / "prometheus-k8s.yml"
ALERTS = OBSERVABILITY / "alerts.yml"
ALERT_TESTS = OBSERVABILITY / "alerts.test.yml"
DASHBOARD = OBSERVABILITY / "grafana-dashboard.json"
K8S = REPO / "deploy" / "k8s"
# Where metrics are defined: ServiceMetrics' factories (``.counter("name", ...)`` and friends,
# which prefix ``ragstream_``) in the services and the shared library.
METRIC_SOURCES = (REPO / "services", REPO / "libs")

# Metrics the dashboard or the alerts may read before the code defining them lands (none now).
PENDING_METRICS: dict[str, str] = {}
DRIFT_ALERTS = {
    "RagstreamQueryDrift": "ragstream_query_drift",
    "RagstreamRetrievalScoreShift": "ragstream_retrieval_score_shift",
    "RagstreamGroundednessLow": "ragstream_groundedness_recent",
    "RagstreamUnknownAnswersHigh": "ragstream_unknown_answer_ratio",
}
# Each drift alert's compared quantity and the ragstream_common.drift constant that is its
# threshold (`<quantity> > <constant>` in the rule).
DRIFT_THRESHOLDS = {
    "RagstreamQueryDrift": ("ragstream_query_drift", "QUERY_DRIFT_ALERT_THRESHOLD"),
    "RagstreamRetrievalScoreShift": (
        "ragstream_retrieval_score_shift",
        "SCORE_SHIFT_ALERT_THRESHOLD",
    ),
    "RagstreamGroundednessLow": (
        "ragstream_groundedness_baseline - ragstream_groundedness_recent",
        "GROUNDEDNESS_DROP_ALERT_THRESHOLD",
    ),
    "RagstreamUnknownAnswersHigh": (
        "ragstream_unknown_answer_ratio - ragstream_unknown_answer_ratio_baseline",
        "UNKNOWN_RATE_RISE_ALERT_THRESHOLD",
    ),
}
DASHBOARD_ROWS = ["Overview", "Ingest", "LLM", "Caches", "Quality drift", "Dead letters"]
# Grafana's macros, replaced by a window so that promtool can parse the dashboard's queries.
GRAFANA_MACROS = ("$__rate_interval", "$__range", "$__interval")

_DEFINITION = re.compile(r"\.(counter|gauge|histogram)\(\s*\"([a-z_][a-z0-9_]*)\"")
_USE = re.compile(r"\bragstream_[a-z0-9_]+")
_HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")


# --- helpers -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def prometheus_tools() -> PrometheusTools:
    """promtool and prometheus, installed from Debian's packages if missing; fails, never skips."""
    try:
        return install_prometheus()
    except StackError as error:
        pytest.fail(f"promtool cannot be provided: {error}", pytrace=False)


def promtool(tools: PrometheusTools, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run promtool with ``args`` from the observability directory."""
    return subprocess.run(
        [str(tools.promtool), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=OBSERVABILITY,
    )


def load_yaml(path: Path) -> Any:
    """Parse one YAML document."""
    return yaml.safe_load(path.read_text())


def alert_rules() -> list[dict[str, Any]]:
    """Every alerting rule of alerts.yml."""
    groups = load_yaml(ALERTS)["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def dashboard() -> dict[str, Any]:
    """The dashboard, parsed."""
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def dashboard_panels() -> list[dict[str, Any]]:
    """Every panel of the dashboard (rows included), nested ones too."""
    panels = []
    for panel in dashboard()["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def dashboard_exprs() -> list[str]:
    """The PromQL of every dashboard target."""
    return [
        target["expr"]
        for panel in dashboard_panels()
        for target in panel.get("targets", [])
        if "expr" in target
    ]


@cache
def defined_metrics() -> dict[str, str]:
    """``ragstream_*`` metric names the code defines, with their kind (counter, gauge, histogram)."""
    found: dict[str, str] = {}
    for root in METRIC_SOURCES:
        for path in root.rglob("*.py"):
            if ".venv" in path.parts or "tests" in path.parts:
                continue
            for kind, name in _DEFINITION.findall(path.read_text()):
                found[f"ragstream_{name}"] = kind
    return found


def unknown_metrics(exprs: list[str], known: dict[str, str]) -> set[str]:
    """Names in ``exprs`` that no definition in ``known`` explains (histogram series included).

    Args:
        exprs: PromQL expressions.
        known: Metric name to kind.
    """
    unknown = set()
    for name in (used for expr in exprs for used in _USE.findall(expr)):
        if name in known:
            continue
        family = next((name.removesuffix(s) for s in _HISTOGRAM_SERIES if name.endswith(s)), None)
        if family is not None and known.get(family) == "histogram":
            continue
        unknown.add(name)
    return unknown


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# --- promtool -----------------------------------------------------------------------------------


class TestPromtool:
    def test_local_config_is_valid(self, prometheus_tools: PrometheusTools) -> None:
        """`promtool check config prometheus.yml` accepts the local config and its rule file."""
        result = promtool(prometheus_tools, "check", "config", LOCAL_CONFIG)
        assert result.returncode == 0, result.stdout + result.stderr

    def test_alert_rules_are_valid(self, prometheus_tools: PrometheusTools) -> None:
        """`promtool check rules alerts.yml` accepts every rule."""
        result = promtool(prometheus_tools, "check", "rules", ALERTS)
        assert result.returncode == 0, result.stdout + result.stderr

    def test_alert_unit_tests_pass(self, prometheus_tools: PrometheusTools) -> None:
        """`promtool test rules alerts.test.yml`: each alert fires on its series, and only there."""
        result = promtool(prometheus_tools, "test", "rules", ALERT_TESTS)
        assert result.returncode == 0, result.stdout + result.stderr

    def test_dashboard_queries_parse(
        self, prometheus_tools: PrometheusTools, tmp_path: Path
    ) -> None:
        """Every dashboard query is valid PromQL (checked as a recording rule by promtool)."""
        exprs = []
        for expr in dashboard_exprs():
            for macro in GRAFANA_MACROS:
                expr = expr.replace(macro, "5m")
            exprs.append(expr)
        rules = [{"record": f"dashboard:query_{n}", "expr": e} for n, e in enumerate(exprs)]
        path = tmp_path / "dashboard-rules.yml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
        result = promtool(prometheus_tools, "check", "rules", path)
        assert result.returncode == 0, result.stdout + result.stderr


# --- scrape configs -----------------------------------------------------------------------------


class TestLocalScrapeConfig:
    def test_one_job_per_service_on_its_stack_port(self) -> None:
        """Each service is scraped at 127.0.0.1 on the port the local stack gives it."""
        config = load_yaml(LOCAL_CONFIG)
        targets = {
            job["job_name"]: [t for static in job["static_configs"] for t in static["targets"]]
            for job in config["scrape_configs"]
        }
        assert targets == {spec.name: [f"127.0.0.1:{spec.port}"] for spec in SERVICES}

    def test_rules_come_from_alerts_yml(self) -> None:
        """Both configs load the alert rules beside them."""
        for path in (LOCAL_CONFIG, K8S_CONFIG):
            assert load_yaml(path)["rule_files"] == ["alerts.yml"]


def _base_workloads() -> dict[str, dict[str, Any]]:
    """The Deployments of deploy/k8s/base that ask to be scraped, by their `app` label."""
    found = {}
    for path in sorted((K8S / "base").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "Deployment":
                continue
            template = doc["spec"]["template"]
            annotations = template["metadata"].get("annotations", {})
            if annotations.get("prometheus.io/scrape") == "true":
                found[template["metadata"]["labels"]["app"]] = template
    return found


class TestKubernetesScrapeConfig:
    # Debian's promtool is built without Kubernetes discovery, so it rejects this file: what the
    # discovery keeps is checked here against the manifests instead.

    @staticmethod
    def relabel(action: str, source: str) -> dict[str, Any]:
        """The relabel rule of the k8s job with ``action`` on source label ``source``."""
        (job,) = load_yaml(K8S_CONFIG)["scrape_configs"]
        return next(
            rule
            for rule in job["relabel_configs"]
            if rule.get("action", "replace") == action and rule.get("source_labels") == [source]
        )

    def test_keeps_exactly_the_annotated_services(self) -> None:
        """The pods kept are those of the five services, which all carry the scrape annotation."""
        keep = self.relabel("keep", "__meta_kubernetes_pod_label_app")
        kept = {app for app in _base_workloads() if re.fullmatch(keep["regex"], app)}
        assert kept == {spec.name for spec in SERVICES}

    def test_annotations_name_the_http_port_and_path(self) -> None:
        """Each annotated pod names its container's http port and /metrics."""
        for app, template in _base_workloads().items():
            annotations = template["metadata"]["annotations"]
            (container,) = template["spec"]["containers"]
            ports = {port["name"]: port["containerPort"] for port in container["ports"]}
            assert annotations["prometheus.io/port"] == str(ports["http"]), app
            assert annotations["prometheus.io/path"] == "/metrics", app

    def test_discovers_the_overlays_namespaces(self) -> None:
        """Pods are looked for in the namespaces the overlays deploy into."""
        (job,) = load_yaml(K8S_CONFIG)["scrape_configs"]
        (discovery,) = job["kubernetes_sd_configs"]
        overlays = {
            load_yaml(path)["namespace"] for path in (K8S / "overlays").glob("*/kustomization.yaml")
        }
        assert set(discovery["namespaces"]["names"]) == overlays

    def test_job_label_is_the_service_as_locally(self) -> None:
        """`job` is the pod's app label, as the local config's job names: alerts.yml serves both."""
        rule = self.relabel("replace", "__meta_kubernetes_pod_label_app")
        assert rule["target_label"] == "job"


# --- alert rules --------------------------------------------------------------------------------


class TestAlertRules:
    def test_every_alert_is_described(self) -> None:
        """Each alert has a severity, a summary, a description and a `for:` duration."""
        for rule in alert_rules():
            assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
            assert rule["annotations"]["summary"].strip(), rule["alert"]
            assert rule["annotations"]["description"].strip(), rule["alert"]
            assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]

    def test_drift_alerts_wait_for_their_baseline(self) -> None:
        """Each drift alert reads its gauge only where its detector's baseline is ready."""
        rules = {rule["alert"]: rule for rule in alert_rules()}
        for alert, gauge in DRIFT_ALERTS.items():
            rule = rules[alert]
            detector = rule["labels"]["detector"]
            assert gauge in rule["expr"], alert
            assert f'ragstream_drift_baseline_ready{{detector="{detector}"}} == 1' in rule["expr"]

    def test_drift_thresholds_are_the_detectors_constants(self) -> None:
        """Each drift alert compares its quantity with its ragstream_common.drift constant."""
        rules = {rule["alert"]: rule for rule in alert_rules()}
        assert set(DRIFT_THRESHOLDS) == set(DRIFT_ALERTS)
        for alert, (quantity, constant) in DRIFT_THRESHOLDS.items():
            threshold = getattr(drift, constant)
            rule = rules[alert]
            comparisons = re.findall(rf"{re.escape(quantity)}\s*>\s*([0-9.eE+-]+)", rule["expr"])
            assert [float(found) for found in comparisons] == [threshold], (alert, constant)
            # The description says the same number.
            assert f"more than {threshold:g}" in rule["annotations"]["description"], alert
        # And the comment above each rule names its constant (comments are lost to the parser).
        blocks = re.split(r"^\s*- alert: ", ALERTS.read_text(), flags=re.MULTILINE)
        named = {block.split()[0]: block for block in blocks[1:]}
        for alert, (_, constant) in DRIFT_THRESHOLDS.items():
            assert f"# Threshold: ragstream_common.drift.{constant}." in named[alert], alert

    def test_every_alert_is_unit_tested_or_listed(self) -> None:
        """The lag, dead-letter and drift alerts (at least) have promtool unit tests."""
        tested = {
            case["alertname"]
            for test in load_yaml(ALERT_TESTS)["tests"]
            for case in test.get("alert_rule_test", [])
        }
        required = {
            "RagstreamConsumerLagHigh",
            "RagstreamConsumerLagGrowing",
            "RagstreamDeadLettersIncreasing",
            *DRIFT_ALERTS,
        }
        assert required <= tested
        assert tested <= {rule["alert"] for rule in alert_rules()}


# --- dashboard ----------------------------------------------------------------------------------


class TestDashboard:
    def test_rows_in_order(self) -> None:
        """The dashboard has the agreed rows, in order."""
        rows = [panel["title"] for panel in dashboard()["panels"] if panel["type"] == "row"]
        assert rows == DASHBOARD_ROWS

    def test_panel_ids_are_unique(self) -> None:
        """No two panels share an id (Grafana would mix up their state)."""
        ids = [panel["id"] for panel in dashboard_panels()]
        assert len(ids) == len(set(ids))

    def test_every_panel_queries_prometheus(self) -> None:
        """Each panel but the rows has PromQL targets, on the ${DS_PROMETHEUS} data source."""
        for panel in dashboard_panels():
            if panel["type"] == "row":
                continue
            targets = panel.get("targets", [])
            assert targets, panel["title"]
            for target in targets:
                assert target["expr"].strip(), panel["title"]
                assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
            assert len({t["refId"] for t in targets}) == len(targets), panel["title"]

    def test_data_source_is_a_variable(self) -> None:
        """DS_PROMETHEUS is a data source variable, so the dashboard imports anywhere."""
        variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
        assert variables["DS_PROMETHEUS"]["type"] == "datasource"
        assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
        assert 36 <= dashboard()["schemaVersion"] <= 41


# --- metric names -------------------------------------------------------------------------------


class TestMetricNames:
    def test_the_scan_finds_the_code_definitions(self) -> None:
        """The scan of services/ and libs/ sees the metrics defined there, with their kinds."""
        known = defined_metrics()
        assert known["ragstream_dead_letters_total"] == "counter"
        assert known["ragstream_http_request_duration_seconds"] == "histogram"
        assert known["ragstream_queries_in_flight"] == "gauge"

    def test_a_renamed_metric_is_caught(self) -> None:
        """A name nobody defines, or a histogram series of a counter, is reported."""
        known = defined_metrics()
        exprs = ["rate(ragstream_dead_letter_total[5m])", "ragstream_answers_total_bucket"]
        assert unknown_metrics(exprs, known) == {
            "ragstream_dead_letter_total",
            "ragstream_answers_total_bucket",
        }

    def test_dashboard_reads_only_defined_metrics(self) -> None:
        """Every ragstream_* metric on the dashboard is defined in the code (or pending)."""
        known = {**PENDING_METRICS, **defined_metrics()}
        assert unknown_metrics(dashboard_exprs(), known) == set()

    def test_alerts_read_only_defined_metrics(self) -> None:
        """Every ragstream_* metric in the alert rules is defined in the code (or pending)."""
        known = {**PENDING_METRICS, **defined_metrics()}
        assert unknown_metrics([rule["expr"] for rule in alert_rules()], known) == set()


# --- a real Prometheus --------------------------------------------------------------------------


@pytest.fixture
def private_prometheus(
    prometheus_tools: PrometheusTools, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The stack's Prometheus on a free port with state in a temp dir; stopped afterwards."""
    monkeypatch.setenv("RAGSTREAM_STACK_DIR", str(tmp_path / "stack"))
    monkeypatch.setenv("RAGSTREAM_PROMETHEUS_PORT", str(free_port()))
    result = ensure_prometheus()
    try:
        yield result.endpoint
    finally:
        stop_prometheus()


class TestLocalPrometheus:
    def test_starts_with_the_local_config_and_lists_the_services(
        self, private_prometheus: str
    ) -> None:
        """`ragstream up --with-prometheus`'s server starts, scrapes the five, loads the alerts."""
        expected = {(s.name, f"http://127.0.0.1:{s.port}/metrics") for s in SERVICES}
        # Ready comes before the first discovery sync: the targets follow within a few seconds.
        deadline = time.monotonic() + 15
        while True:
            targets = httpx.get(f"{private_prometheus}/api/v1/targets", timeout=5).json()
            active = targets["data"]["activeTargets"]
            scraped = {(t["labels"]["job"], t["scrapeUrl"]) for t in active}
            if scraped == expected or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert scraped == expected

        rules = httpx.get(f"{private_prometheus}/api/v1/rules", timeout=5).json()
        loaded = {r["name"] for g in rules["data"]["groups"] for r in g["rules"]}
        assert loaded == {rule["alert"] for rule in alert_rules()}

        row = prometheus_status_row()
        assert row is not None
        assert row[1] == "running"
        assert row[3] == private_prometheus
        assert os.path.basename(row[4]) == "prometheus.log"
