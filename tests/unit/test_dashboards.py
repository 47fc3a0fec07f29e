"""The Grafana dashboard and the Prometheus alert rules name only metrics the code exports.

The exported names come from the components' real metric factories (the registries their
``/metrics`` serves), so a renamed metric or label fails here instead of leaving an empty panel or
an alert that can never fire. With ``promtool`` on PATH every expression is also parsed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from dispatcher import RULES, Action
from pushline.ops._metrics import ConsumerLag, dispatcher_metrics, reconciler_metrics
from receipts._api import receipts_metrics
from receipts._fallback_metrics import fallback_metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "pushline.json"
RULES_FILE = ROOT / "deploy" / "prometheus" / "pushline-rules.yaml"
PROMETHEUS_RULE = ROOT / "deploy" / "k8s" / "base" / "prometheusrule.yaml"
PROMTOOL = shutil.which("promtool")

METRIC_NAME = re.compile(r"\bpushline_[a-z_]+")
#: ``metric{label="..", label=~".."}``: the label names of a selector
SELECTOR = re.compile(r"\b(pushline_[a-z_]+)\{([^}]*)\}")
MATCHER_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
#: Labels Prometheus adds to every scraped series (target labels of the ServiceMonitor) or
#: that a histogram's buckets carry.
TARGET_LABELS = {"namespace", "job", "instance", "pod", "service", "container", "endpoint"}


def _factories() -> list[Any]:
    return [
        dispatcher_metrics(process_metrics=False),
        reconciler_metrics(process_metrics=False),
        receipts_metrics(process_metrics=False),
        fallback_metrics(CollectorRegistry()),
    ]


def exported_series() -> dict[str, set[str]]:
    """Every series name the components export -> the label names it carries."""
    series: dict[str, set[str]] = {}
    for metrics in _factories():
        for value in vars(metrics).values():
            if isinstance(value, ConsumerLag):
                value = value.gauge
            if not isinstance(value, MetricWrapperBase):
                continue
            # The metric objects know their label names even before a child exists; a
            # collected family of a labelled metric has no samples yet.
            labels = set(value._labelnames)
            for family in value.describe():
                suffixes = {
                    "counter": ("_total", "_created"),
                    "histogram": ("_bucket", "_sum", "_count", "_created"),
                    "gauge": ("",),
                    "summary": ("", "_sum", "_count", "_created"),
                }[family.type]
                for suffix in suffixes:
                    names = labels | ({"le"} if suffix == "_bucket" else set())
                    series.setdefault(family.name + suffix, set()).update(names)
    return series


def _walk(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield key, value
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def dashboard_expressions() -> list[str]:
    """Every PromQL expression of the dashboard: panel targets and templating queries."""
    exprs = [v for k, v in _walk(dashboard()["panels"]) if k == "expr"]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            exprs.append(variable["definition"])
            exprs.append(variable["query"]["query"])
    return exprs


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def all_expressions() -> list[tuple[str, str]]:
    return [("dashboard", e) for e in dashboard_expressions()] + [
        (f"alert {r['alert']}", r["expr"]) for r in alert_rules()
    ]


def test_the_factories_export_the_metrics_the_panels_need() -> None:
    """The exported set is built right (else the next test would pass vacuously)."""
    series = exported_series()
    assert {
        "pushline_sends_total",
        "pushline_provider_latency_seconds_bucket",
        "pushline_provider_latency_seconds_count",
        "pushline_receipts_total",
        "pushline_invalid_tokens_total",
        "pushline_fallbacks_total",
        "pushline_fallbacks_requested_total",
        "pushline_retries_total",
        "pushline_dlq_total",
        "pushline_consumer_lag",
    } <= set(series)
    assert series["pushline_sends_total"] == {"app", "platform", "state", "reason"}
    assert "pushline_sends" not in series
    assert "pushline_consumer_lag_total" not in series


@pytest.mark.parametrize(("where", "expr"), all_expressions())
def test_every_metric_named_is_exported(where: str, expr: str) -> None:
    series = exported_series()
    names = set(METRIC_NAME.findall(expr))
    assert names, f"{where}: no pushline_ metric in {expr!r}"
    assert names <= set(series), f"{where}: not exported by the code: {names - set(series)}"


@pytest.mark.parametrize(("where", "expr"), all_expressions())
def test_every_label_matched_exists_on_the_metric(where: str, expr: str) -> None:
    series = exported_series()
    for metric, body in SELECTOR.findall(expr):
        labels = set(MATCHER_LABEL.findall(body))
        unknown = labels - series[metric] - TARGET_LABELS
        assert unknown == set(), f"{where}: {metric} has no label {unknown}"


def test_the_checks_catch_a_missing_metric_or_label() -> None:
    series = exported_series()
    expr = 'sum(rate(pushline_invalid_tokens_total{os_build="21A"}[5m])) + pushline_sent_total'
    assert set(METRIC_NAME.findall(expr)) - set(series) == {"pushline_sent_total"}
    ((metric, body),) = SELECTOR.findall(expr)
    assert set(MATCHER_LABEL.findall(body)) - series[metric] == {"os_build"}


def _panel_exprs() -> list[tuple[str, str]]:
    out = []
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    return out


@pytest.mark.parametrize(
    ("what", "pattern"),
    [
        (
            "sent per provider",
            r"sum by \(platform\) \(rate\(pushline_provider_latency_seconds_count",
        ),
        (
            "accepted per provider",
            r'sum by \(platform\) \(rate\(pushline_sends_total\{[^}]*state="ACCEPTED"',
        ),
        ("receipt rate", r'rate\(pushline_receipts_total\{[^}]*result="accepted"'),
        (
            "latency p50 per provider",
            r"histogram_quantile\(0\.5, sum by \(le, platform\) \(rate\("
            r"pushline_provider_latency_seconds_bucket",
        ),
        (
            "latency p99 per provider",
            r"histogram_quantile\(0\.99, sum by \(le, platform\) \(rate\("
            r"pushline_provider_latency_seconds_bucket",
        ),
        (
            "invalid tokens per platform",
            r"sum by \(platform[^)]*\) \(rate\(pushline_invalid_tokens_total",
        ),
        ("fallback rate", r"rate\(pushline_fallbacks_(requested_)?total"),
        ("retries", r"rate\(pushline_retries_total"),
        ("DLQ", r"rate\(pushline_dlq_total"),
        ("consumer lag", r"sum by \(topic\) \(pushline_consumer_lag"),
    ],
)
def test_the_dashboard_has_the_panels_operators_asked_for(what: str, pattern: str) -> None:
    assert any(re.search(pattern, expr) for _, expr in _panel_exprs()), what


def test_dashboard_is_importable() -> None:
    doc = dashboard()
    assert doc["uid"] and doc["title"] and isinstance(doc["schemaVersion"], int)
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in doc["panels"]:
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}"
            assert panel["targets"], panel["title"]
            assert all(t["refId"] for t in panel["targets"])
    variables = {v["name"] for v in doc["templating"]["list"]}
    for _, expr in _panel_exprs():
        for used in re.findall(r"\$(\w+)", expr):
            assert used in variables or used.startswith("__"), f"undefined variable ${used}"


def test_alerts_cover_lag_dlq_error_ratio_and_auth() -> None:
    rules = {r["alert"]: r for r in alert_rules()}
    assert {
        "PushlineConsumerLagGrowing",
        "PushlineDLQGrowing",
        "PushlineProviderErrorRatio",
        "PushlineProviderAuthFailure",
    } <= set(rules)
    assert "pushline_consumer_lag" in rules["PushlineConsumerLagGrowing"]["expr"]
    assert "deriv(" in rules["PushlineConsumerLagGrowing"]["expr"]
    assert "pushline_dlq_total" in rules["PushlineDLQGrowing"]["expr"]
    for rule in rules.values():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]


def _auth_reason_regex(expr: str) -> re.Pattern[str]:
    (regex,) = re.findall(r'reason=~"([^"]+)"', expr)
    return re.compile(regex)  # PromQL regexes are anchored: use fullmatch


def test_auth_alert_matches_every_credentials_reason_of_the_dispatcher() -> None:
    """Every reason the dispatcher classifies as our credentials' fault (CONFIG_ALERT, and the
    expired-token refresh when the retry fails too) fires the auth alert; others do not."""
    rules = {r["alert"]: r for r in alert_rules()}
    alert = _auth_reason_regex(rules["PushlineProviderAuthFailure"]["expr"])
    credentials = {
        str(r.reason) for r in RULES if r.action in (Action.CONFIG_ALERT, Action.REFRESH_AUTH)
    }
    assert {
        "InvalidProviderToken",
        "ExpiredProviderToken",
        "THIRD_PARTY_AUTH_ERROR",
        "AuthFailed",
    } <= credentials
    for reason in credentials:
        # the reason label: as scheduled for retry, and after the attempt budget is spent
        assert alert.fullmatch(reason), reason
        assert alert.fullmatch(f"AttemptsExhausted:{reason}"), reason
    others = {str(r.reason) for r in RULES} - credentials
    assert others, "no non-credential reasons to compare with"
    for reason in others:
        assert not alert.fullmatch(reason), f"{reason} is not a credentials problem"
    # the dashboard's auth panel uses the same selection
    panel = [e for t, e in _panel_exprs() if t == "Auth and configuration failures"]
    assert [_auth_reason_regex(e).pattern for e in panel] == [alert.pattern]


def test_prometheus_rule_resource_carries_the_same_rules() -> None:
    docs = list(yaml.safe_load_all(PROMETHEUS_RULE.read_text()))
    assert [d["kind"] for d in docs] == ["PrometheusRule"]
    assert docs[0]["spec"]["groups"] == yaml.safe_load(RULES_FILE.read_text())["groups"]


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not on PATH (Debian: prometheus)")
def test_promtool_accepts_the_rules_and_every_dashboard_expression(tmp_path: Path) -> None:
    assert PROMTOOL is not None
    proc = subprocess.run(
        [PROMTOOL, "check", "rules", str(RULES_FILE)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Grafana's variables replaced by what they expand to, each expression as a recording rule.
    rules = []
    for i, expr in enumerate(dashboard_expressions()):
        if expr.startswith("label_values("):
            continue  # a Grafana function, not PromQL
        promql = expr.replace("$__rate_interval", "5m").replace("$namespace", ".*")
        rules.append({"record": f"pushline:dashboard_expr_{i}", "expr": promql})
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = subprocess.run(
        [PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(rules)} rules found" in proc.stdout
