"""The domain does no I/O: importing every module of it, in a fresh interpreter, loads no gRPC,
database, NATS, HTTP, SMTP, YAML or generated protobuf code."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = (
    "grpc",
    "sqlalchemy",
    "nats",
    "aiosmtplib",
    "aiosmtpd",
    "httpx",
    "fastapi",
    "yaml",
    "google",
    "zhike",
)

PROBE = """
import importlib, json, pkgutil, sys
import zhike_notifications.domain as domain
for module in pkgutil.iter_modules(domain.__path__):
    importlib.import_module(f"zhike_notifications.domain.{module.name}")
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def test_importing_the_domain_loads_no_io_library() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = set(json.loads(result.stdout))
    assert "zhike_notifications" in loaded
    assert loaded.isdisjoint(FORBIDDEN), sorted(loaded & set(FORBIDDEN))
