"""The monitoring files in server-deployment-conf/: the Prometheus rules pass ``promtool check
rules`` and their unit tests (``promtool test rules``), which cover every alert both ways; the
Grafana dashboard is valid, every panel has a datasource and queries that promtool parses; and
every metric the rules and the dashboard name is one a live manager or worker serves.

promtool comes from Debian's ``prometheus`` package, which ``make test-tools`` installs: a
missing promtool fails these tests rather than skipping them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gdts.localstack import free_port
from tests.support import ADMIN_TOKEN, REPO_ROOT, Cluster, probe

CONF_DIR = REPO_ROOT / "server-deployment-conf"
RULES = CONF_DIR / "prometheus" / "gdts-rules.yml"
RULE_TESTS = CONF_DIR / "prometheus" / "gdts-rules.test.yml"
DASHBOARD = CONF_DIR / "grafana" / "gdts-dashboard.json"
PROMTOOL = shutil.which("promtool")
# Series Prometheus makes itself for every target.
PROMETHEUS_SERIES = frozenset(("up",))
# Grafana's variables, given values that make the queries plain PromQL.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$worker": ".*"}
# Words of PromQL that look like metric names; functions and aggregations are the identifiers
# followed by "(" and are dropped as such.
PROMQL_WORDS = frozenset(
    ("and", "or", "unless", "bool", "offset", "inf", "nan", "group_left", "group_right")
)


def promtool(*args: str, cwd: Path = CONF_DIR) -> subprocess.CompletedProcess[str]:
    # A failure, not a skip: `make test` installs it, and a skip would hide unchecked rules.
    assert PROMTOOL is not None, "promtool is missing: `make test-tools` installs `prometheus`"
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def rule_groups() -> list[dict[str, Any]]:
    return yaml.safe_load(RULES.read_text())["groups"]


def alerts() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"] if "alert" in rule]


def recorded() -> set[str]:
    return {
        rule["record"] for group in rule_groups() for rule in group["rules"] if "record" in rule
    }


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_queries() -> list[str]:
    """Every PromQL query of the dashboard, Grafana's variables replaced."""
    board = dashboard()
    queries = [target["expr"] for panel in board["panels"] for target in panel["targets"]]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            # label_values(<metric>, <label>) is Grafana's, around a selector.
            match = re.fullmatch(r"label_values\((.+),\s*\w+\)", variable["query"]["query"])
            assert match, variable
            queries.append(match.group(1))
    for name, value in GRAFANA_VARIABLES.items():
        queries = [query.replace(name, value) for query in queries]
    return queries


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads, found loosely: strings, label matchers, ranges,
    grouping clauses, durations and numbers removed, then every identifier that is not a
    function call or a PromQL word."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|`[^`]*`', '""', expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\b(?:\d+(?:ms|[smhdwy]))+\b", " ", expr)  # durations: offset 1h
    expr = re.sub(r"\b\d+(?:\.\d+)?(?:[eE][+-]?\d+)?\b", " ", expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        if expr[match.end() :].lstrip().startswith("(") or match.group() in PROMQL_WORDS:
            continue
        names.add(match.group())
    return names


def served_series(exposition: str) -> set[str]:
    """The names of the series a /metrics page serves, or will once a label set is used: a
    family without samples yet still has its HELP and TYPE lines."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    return {
        family.name + suffix
        for family in text_string_to_metric_families(exposition)
        for suffix in suffixes.get(family.type, ("",))
    }


def test_metric_names_are_found_loosely() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (job, le) (rate(a_bucket{instance=~"$w", le!="1"}[5m])))'
        " / on (job) group_left sum without (x) (b:c:rate5m offset 1h) > bool 1e3"
        ' or absent(up{job="gdts-worker"} == 1) unless count(d) and vector(0)'
    )
    assert metric_names(expr) == {"a_bucket", "b:c:rate5m", "up", "d"}


def test_make_test_installs_promtool_first() -> None:
    # Why a missing promtool fails rather than skips: `make test` runs test-tools first.
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert re.search(r"^test: .*\btest-tools\b", makefile, re.MULTILINE)
    tools = makefile.split("\ntest-tools:", 1)[1].split("\n\n", 1)[0]
    assert 'command -v promtool >/dev/null || missing="$$missing prometheus"' in tools


def test_the_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts()) + len(recorded())} rules found" in result.stdout


def test_the_rules_pass_their_promtool_unit_tests() -> None:
    result = promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_catch_a_broken_rule(tmp_path: Path) -> None:
    # The same tests against rules whose failure threshold moved must fail.
    broken = RULES.read_text().replace("ratio_rate15m > 0.2", "ratio_rate15m > 0.3")
    assert broken != RULES.read_text()
    (tmp_path / RULES.name).write_text(broken)
    shutil.copy(RULE_TESTS, tmp_path)
    result = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0 and "GdtsJobFailureRateHigh" in result.stdout + result.stderr


def test_every_alert_says_how_bad_how_long_and_what_to_do() -> None:
    for alert in alerts():
        name = alert["alert"]
        assert alert["labels"]["severity"] in ("warning", "critical"), name
        assert re.fullmatch(r"\d+[smh]", alert["for"]), name
        assert alert["annotations"]["summary"], name
        assert len(alert["annotations"]["description"]) > 80, name


def test_every_alert_has_a_unit_test_where_it_fires_and_one_where_it_stays_quiet() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fires, quiet = set(), set()
    for test in tests:
        for check in test.get("alert_rule_test", ()):
            (fires if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {alert["alert"] for alert in alerts()}
    assert names - fires == set(), "alerts never seen firing"
    assert names - quiet == set(), "alerts never seen quiet"
    checked = {
        name
        for test in tests
        for check in test.get("promql_expr_test", ())
        for name in metric_names(check["expr"])
    }
    assert checked & recorded(), "no recording rule checked"


def test_the_dashboard_is_valid_and_every_panel_queries_the_chosen_prometheus() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 39 and board["uid"] and board["title"]
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    worker = variables["worker"]
    assert worker["datasource"]["uid"] == "${datasource}"
    assert worker["multi"] and worker["includeAll"]
    source = {"type": "prometheus", "uid": "${datasource}"}
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        title = panel["title"]
        assert panel["datasource"] == source, title
        assert panel["targets"], title
        assert panel["description"], title
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), title
        for target in panel["targets"]:
            assert target["datasource"] == source and target["expr"], title
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"}, title
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, title


def test_the_dashboard_has_the_panels_operators_look_for() -> None:
    queries = {
        panel["title"]: " ".join(target["expr"] for target in panel["targets"])
        for panel in dashboard()["panels"]
    }
    wanted = {
        "Runs by status": "gdts_runs_total",
        "Fire lag p50 / p99": "gdts_fire_lag_seconds_bucket",
        "Claims by outcome": "gdts_claims_total",
        "Result buffer depth": "gdts_result_buffer_depth",
        "etcd errors": "gdts_etcd_errors_total",
        "MongoDB write failures": "gdts_mongodb_write_errors",
        "Workers alive": "gdts_lease_alive",
        "Runs per worker": "gdts_runs_total",
    }
    for title, metric in wanted.items():
        assert metric in queries[title], title
    assert "sum by (instance)" in queries["Runs per worker"]


def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    # Each query becomes a recording rule, the one PromQL check promtool offers for a file.
    rules = [
        {"record": f"dashboard:query:{i}", "expr": q} for i, q in enumerate(dashboard_queries())
    ]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.asyncio
async def test_every_metric_the_rules_and_dashboard_name_is_served(cluster: Cluster) -> None:
    port = free_port()
    await cluster.start_together(
        cluster.start_manager(),
        cluster.start_worker("w1", httpListen=f"127.0.0.1:{port}", jobLogBufferLimit=1234),
    )
    _, worker_metrics = await probe(port, "/metrics")
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with aiohttp.ClientSession() as session:
        async with session.get(cluster.api + "/metrics", headers=headers) as response:
            assert response.status == 200
            manager_metrics = await response.text()
    served = served_series(worker_metrics) | served_series(manager_metrics)
    assert "gdts_runs_total" in served and "gdts_http_request_seconds_bucket" in served
    assert "gdts_result_buffer_limit 1234.0" in worker_metrics.splitlines()

    named = {
        name
        for expr in [rule["expr"] for group in rule_groups() for rule in group["rules"]]
        + dashboard_queries()
        for name in metric_names(expr)
    }
    assert named - served - recorded() - PROMETHEUS_SERIES == set()
    # The check would see a name that is not served.
    assert metric_names("rate(gdts_no_such_metric_total[5m])") - served
