"""The operator files are valid and agree with the code: compose, Prometheus, systemd.

There is no Docker engine here: ``docker/compose.yaml`` is checked against the Compose
Specification's JSON schema (``tests/fixtures/compose_spec.json``, the schema file shipped in
the ``docker-compose`` 1.29.2 wheel on PyPI) and with ``docker compose config`` where that
command exists. The units are checked with ``systemd-analyze verify`` where it exists, and
always for the settings an operator relies on (restart policy, environment file, journald).
"""

from __future__ import annotations

import configparser
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml  # type: ignore[import-untyped]

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker" / "compose.yaml"
UNITS = sorted((REPO / "deploy" / "systemd").glob("*.service"))


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def test_compose_file_follows_the_compose_specification() -> None:
    schema = json.loads((REPO / "tests" / "fixtures" / "compose_spec.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(compose()), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]


def test_compose_wires_metrics_state_and_models_the_way_the_nodes_read_them() -> None:
    services = compose()["services"]
    declared = set(compose()["volumes"])
    scrape = yaml.safe_load((REPO / "docker" / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"][0] for job in scrape["scrape_configs"]
    }
    dockerfile = (REPO / "docker" / "Dockerfile.gpu").read_text()
    for name in ("miner", "validator"):
        svc = services[name]
        cmd = svc["command"]
        port = re.search(r"--metrics-port (\d+)", cmd)
        assert port, f"{name}: no --metrics-port"
        assert "--metrics-host 0.0.0.0" in cmd  # reachable by Prometheus inside the network
        assert targets[name] == f"{name}:{port.group(1)}"
        assert port.group(1) in [str(p) for p in svc.get("expose", [])]
        assert not any(port.group(1) in str(p) for p in svc.get("ports", []))  # not published
        state = re.search(r"--state-dir (\S+)", cmd)
        assert state, f"{name}: no --state-dir"
        mounts = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
        assert mounts.get(state.group(1)) in declared  # the named volume is what it reads
        assert state.group(1) in dockerfile  # created (and chowned) in the image
        assert "/wallets:ro" in " ".join(svc["volumes"])
    assert "--model-roots /models/committed" in services["validator"]["command"]
    assert "/models/committed" in " ".join(services["validator"]["volumes"])
    assert {"prometheus", "grafana"} <= set(services)


@pytest.mark.skipif(
    subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0
    if shutil.which("docker")
    else True,
    reason="no `docker compose` here (checked against the Compose schema instead)",
)
def test_docker_compose_config_accepts_it() -> None:
    env = {"NETUID": "1", "EXTERNAL_IP": "203.0.113.7", "TEACHER_DIR": "/t", "STUDENT_DIR": "/s"}
    env |= {"MODEL_ROOTS": "/m", "GRAFANA_PASSWORD": "x", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr


def _unit(path: Path) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string(path.read_text())
    return cp


@pytest.mark.parametrize("path", UNITS, ids=[p.name for p in UNITS])
def test_unit_restarts_reads_its_environment_file_and_logs_to_journald(path: Path) -> None:
    svc = _unit(path)["Service"]
    node = path.stem.removeprefix("subnet-")
    assert svc["Restart"] == "always" and svc["EnvironmentFile"].endswith(f"{node}.env")
    assert f"subnet {node} " in svc["ExecStart"] and "--state-dir" in svc["ExecStart"]
    assert svc["StandardOutput"] == svc["StandardError"] == "journal"
    assert svc["KillSignal"] == "SIGTERM" and svc["User"] == "subnet"
    example = path.parent / f"{node}.env.example"
    keys = {ln.split("=")[0] for ln in example.read_text().splitlines() if "=" in ln}
    used = set(re.findall(r"\$\{(\w+)\}", svc["ExecStart"]))
    assert used <= keys, used - keys  # every variable the unit uses is in the example


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
@pytest.mark.parametrize("path", UNITS, ids=[p.name for p in UNITS])
def test_unit_passes_systemd_analyze_verify(path: Path, tmp_path: Path) -> None:
    """The installed paths (venv, environment file) do not exist here: they are pointed at
    stand-ins, everything else is verified as written."""
    node = path.stem.removeprefix("subnet-")
    env = tmp_path / f"{node}.env"
    shutil.copy(path.parent / f"{node}.env.example", env)
    text = path.read_text().replace("/opt/distill-subnet/.venv/bin/subnet", "/bin/true")
    text = re.sub(r"EnvironmentFile=.*", f"EnvironmentFile={env}", text)
    unit = tmp_path / path.name
    unit.write_text(text)
    out = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr
