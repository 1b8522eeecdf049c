"""What every benchmark shares: printing, percentiles, a latency line, a service as a process,
the CPU time of processes."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from zhike_runtime.testing.processes import NatsServer, PostgresCluster, free_port
from zhike_runtime.testing.services import process_environment


def say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def latency_line(label: str, millis: Sequence[float], width: int = 36) -> str:
    return (
        f"{label:<{width}} p50 {percentile(millis, 0.50):6.2f}  p90 {percentile(millis, 0.90):6.2f}"
        f"  p99 {percentile(millis, 0.99):6.2f}  max {max(millis):7.2f} ms  (n={len(millis)})"
    )


@contextmanager
def client_collector_paused() -> Iterator[None]:
    """The benchmark client's own garbage collector paused while a phase is timed, as timeit
    and pyperf do. The client stands in for the bank's channels, which run elsewhere; left on,
    a full collection of its ~120,000 objects (40-90 ms) stalls every call then due and the
    pause counted as the service's latency. The services keep their collectors: their pauses
    are part of what is measured."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def dsn(cluster: PostgresCluster, database: str = "postgres") -> str:
    """A plain libpq address of a throwaway cluster's database (for asyncpg)."""
    return f"postgresql://postgres@127.0.0.1:{cluster.port}/{database}"


def service_process(
    module: str, database_url: str, nats_url: str, extra: Mapping[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """A service as deployed: its own process (`python -m zhike_<service>`) on a free port, so
    the client's work is not on the service's event loop."""
    port = free_port()
    environment = (
        os.environ
        | {
            "ZHIKE_GRPC_HOST": "127.0.0.1",
            "ZHIKE_GRPC_PORT": str(port),
            "ZHIKE_DATABASE_URL": database_url,
            "ZHIKE_NATS_URL": nats_url,
            "ZHIKE_LOG_LEVEL": "WARNING",
        }
        | process_environment()
        | dict(extra or {})
    )
    return subprocess.Popen([sys.executable, "-m", module], env=environment), port


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its reaped children (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def postgres_pids(cluster: PostgresCluster) -> list[int]:
    """The postmaster and its children: the backends of the connections open now."""
    postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
    children = subprocess.run(
        ["pgrep", "-P", str(postmaster)], capture_output=True, text=True, check=False
    ).stdout.split()
    return [postmaster, *(int(pid) for pid in children)]


ProcessGroups = Mapping[str, Callable[[], Sequence[int]]]


def platform_processes(
    cluster: PostgresCluster, nats_server: NatsServer, **services: Callable[[], Sequence[int]]
) -> dict[str, Callable[[], Sequence[int]]]:
    """What a benchmark meters: this process (the client), the services, PostgreSQL and
    nats-server, each listed when asked (backends come and go with connections)."""
    return {
        "benchmark client": lambda: [os.getpid()],
        **services,
        "postgres": lambda: postgres_pids(cluster),
        "nats-server": lambda: [nats_server.pid] if nats_server.pid else [],
    }


class CpuMeter:
    """CPU seconds used by groups of processes since the meter was made. Each group's pids are
    listed again at the end, so processes started meanwhile (a database backend for a new
    connection) count whole, and those reaped meanwhile count through their parent."""

    def __init__(self, groups: ProcessGroups) -> None:
        self._groups = groups
        self._before = {pid: cpu_seconds(pid) for pids in groups.values() for pid in pids()}

    def seconds(self) -> dict[str, float]:
        return {
            name: sum(cpu_seconds(pid) - self._before.get(pid, 0.0) for pid in set(pids()))
            for name, pids in self._groups.items()
        }

    def line(self, count: int, elapsed: float, unit: str) -> str:
        """CPU ms per `unit` of each group, their total, and what two cores offer per unit in
        `elapsed` seconds (the total nears it as the machine saturates)."""
        used = self.seconds()
        return (
            f"  CPU ms per {unit}: "
            + ", ".join(f"{name} {1000 * sec / count:.2f}" for name, sec in used.items())
            + f"  (total {1000 * sum(used.values()) / count:.2f}; the 2 cores offer "
            + f"{2000 * elapsed / count:.2f})"
        )
