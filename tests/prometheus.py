"""A real Prometheus for tests, and what the files of `monitoring/` ask of it.

The `prometheus` and `promtool` binaries come from the Debian package `prometheus`
(`.ci/run` installs it). A test marked `prometheus` skips without them locally
and fails in CI (see `tests/conftest.py`).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parent.parent
MONITORING = REPO / "monitoring"
PROMETHEUS_CONFIG = MONITORING / "prometheus" / "prometheus.yml"
PROMETHEUS_HOST_CONFIG = MONITORING / "prometheus" / "prometheus.host.yml"
SHIPPED_CONFIGS = [PROMETHEUS_CONFIG, PROMETHEUS_HOST_CONFIG]
ALERT_RULES = MONITORING / "prometheus" / "alerts.yml"
ALERT_TESTS = MONITORING / "prometheus" / "alerts.test.yml"
DASHBOARDS = sorted((MONITORING / "grafana" / "dashboards").glob("*.json"))
DATASOURCES = MONITORING / "grafana" / "provisioning" / "datasources"

BINARIES = ("prometheus", "promtool")

# Grafana's variables, as a dashboard shows them for "All" over the last hour.
GRAFANA_VARIABLES = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
    "job": ".*",
    "instance": ".*",
}


def binaries_missing() -> str | None:
    """None when both binaries are on PATH, else why the test cannot run."""
    missing = [name for name in BINARIES if shutil.which(name) is None]
    if missing:
        return (
            f"{' and '.join(missing)} not found on PATH "
            "(install the Debian package: apt-get install prometheus)"
        )
    return None


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *map(str, args)], capture_output=True, text=True, timeout=60)


# -- dashboards ----------------------------------------------------------------------


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    expr: str

    @property
    def id(self) -> str:
        return f"{self.dashboard}: {self.panel}"


def load_dashboard(path: Path) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(path.read_text())
    return dashboard


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside rows included."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def panel_queries(path: Path) -> list[PanelQuery]:
    dashboard = load_dashboard(path)
    return [
        PanelQuery(dashboard["title"], panel["title"], target["expr"])
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
        if not target.get("hide")
    ]


def variable_queries(path: Path) -> list[PanelQuery]:
    dashboard = load_dashboard(path)
    found = []
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        if match := re.fullmatch(r"label_values\((.+),\s*\w+\)", text.strip()):
            found.append(PanelQuery(dashboard["title"], f"${variable['name']}", match[1]))
    return found


def substitute(expr: str, values: dict[str, str] = GRAFANA_VARIABLES) -> str:
    """The expression with Grafana's `$name` and `${name}` replaced by concrete values."""

    def value(match: re.Match[str]) -> str:
        name = match[1] or match[2]
        if name not in values:
            raise KeyError(f"no test value for the Grafana variable ${name} in {expr!r}")
        return values[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, expr)


def metric_names(expr: str) -> set[str]:
    """The `devteam_` and process metric names an expression reads (base names of histograms)."""
    names = set(re.findall(r"\b((?:devteam|process)_[a-z0-9_]+)", expr))
    return {re.sub(r"_(bucket|count|sum)$", "", name) for name in names}


# -- alert rules ---------------------------------------------------------------------


def alert_rules(path: Path = ALERT_RULES) -> list[dict[str, Any]]:
    document = yaml.safe_load(path.read_text())
    return [rule for group in document["groups"] for rule in group["rules"] if "alert" in rule]


# -- a Prometheus of the test's own --------------------------------------------------


def pointed_at(
    targets: dict[str, list[str]],
    *,
    credentials_file: Path,
    rule_files: list[Path],
    shipped: Path = PROMETHEUS_CONFIG,
    interval: str = "1s",
) -> dict[str, Any]:
    """The shipped Prometheus config, pointed at the test's processes.

    Job names, metrics paths and the authorization scheme stay as shipped; only
    the discovery (static loopback targets), the token file, the rule files and
    the intervals change.
    """
    config: dict[str, Any] = yaml.safe_load(shipped.read_text())
    config["global"] = {
        **config.get("global", {}),
        "scrape_interval": interval,
        "scrape_timeout": interval,
        "evaluation_interval": interval,
    }
    config["rule_files"] = [str(path) for path in rule_files]
    config.pop("alerting", None)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    missing = set(targets) - set(jobs)
    assert not missing, f"the shipped config has no scrape job {sorted(missing)}"
    for name, job in jobs.items():
        for key in [k for k in job if k.endswith("_sd_configs")]:
            del job[key]
        job.pop("scrape_interval", None)
        job.pop("scrape_timeout", None)
        job["static_configs"] = [{"targets": targets.get(name, [])}]
        if "authorization" in job:
            job["authorization"]["credentials_file"] = str(credentials_file)
    return config


class Prometheus:
    """A Prometheus server on loopback with its own storage, until `stop()`."""

    def __init__(self, config: dict[str, Any], workdir: Path, port: int) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_file = workdir / "prometheus.yml"
        self.config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        self.url = f"http://127.0.0.1:{port}"
        self.log = workdir / "prometheus.log"
        self._output = self.log.open("wb")
        self.process = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={self.config_file}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=self._output,
            stderr=subprocess.STDOUT,
        )
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"prometheus exited:\n{self.log.read_text()}"
            try:
                if self.client.get("/-/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)  # a subprocess offers no readiness event to await
        raise AssertionError(f"prometheus did not start:\n{self.log.read_text()}")

    def api(self, path: str, **params: Any) -> Any:
        """The `data` of a successful answer of Prometheus's HTTP API."""
        response = self.client.get(f"/api/v1/{path}", params=params)
        body = response.json()
        assert body.get("status") == "success", f"{path} {params}: {body}"
        return body["data"]

    def query(self, expr: str) -> dict[str, Any]:
        """The answer to an instant query, whatever its status (for checking errors)."""
        body: dict[str, Any] = self.client.get("/api/v1/query", params={"query": expr}).json()
        return body

    def query_range(self, expr: str, start: float, end: float, step: str = "1s") -> dict[str, Any]:
        body: dict[str, Any] = self.client.get(
            "/api/v1/query_range",
            params={"query": expr, "start": start, "end": end, "step": step},
        ).json()
        return body

    def stop(self) -> None:
        self.client.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        finally:
            self._output.close()


@contextmanager
def running_prometheus(config: dict[str, Any], workdir: Path, port: int) -> Iterator[Prometheus]:
    server = Prometheus(config, workdir, port)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
