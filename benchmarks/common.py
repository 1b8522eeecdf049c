"""What every benchmark shares: printing, percentiles, a latency line, a service as a process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence

from zhike_runtime.testing.processes import PostgresCluster, free_port
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
