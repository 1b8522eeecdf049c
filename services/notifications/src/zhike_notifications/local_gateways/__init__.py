"""Local providers that are real servers: an HTTP SMS and push gateway and an SMTP server that
store what they receive under `<state dir>/gateways/`, once per out-id, and can be told to fail,
refuse or answer late. `make run` starts them; tests and benchmarks use the same
(`running_gateways` in-process, `testing.GatewayProcess` as a process)."""

from zhike_notifications.local_gateways.control import Fault, FaultMode
from zhike_notifications.local_gateways.server import LocalGateways, running_gateways
from zhike_notifications.local_gateways.store import (
    channel_directory,
    stored_emails,
    stored_records,
)

__all__ = [
    "Fault",
    "FaultMode",
    "LocalGateways",
    "channel_directory",
    "running_gateways",
    "stored_emails",
    "stored_records",
]
