"""docs/operations.md says what the code does: the consumer table names every stream and durable
consumer the services declare (the allow-list, which tests/integration/test_nats_allow_list.py
holds to the services' declarations), and the shutdown section gives in-flight calls the share
of the grace that libs/runtime's shutdown really gives them."""

from __future__ import annotations

import math
import re

from zhike_runtime.events.nats_permissions import SERVICES as GRANTS
from zhike_runtime.settings import ServiceSettings

from .chart import CHART_DIR, REPO_ROOT, load_yaml_file

OPERATIONS = REPO_ROOT / "docs" / "operations.md"
APP = REPO_ROOT / "libs" / "runtime" / "src" / "zhike_runtime" / "app.py"


def _consumer_table() -> dict[str, tuple[set[str], set[tuple[str, str]]]]:
    """service -> (streams it owns, {(durable, stream)}), from the runbook's table."""
    text = OPERATIONS.read_text(encoding="utf-8")
    header = text.index("| service | stream it owns | durable consumers |")
    rows: dict[str, tuple[set[str], set[tuple[str, str]]]] = {}
    for line in text[header:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        service, owns, consumers = (cell.strip() for cell in line.strip("|").split("|"))
        streams = set(re.findall(r"`(ZHIKE_[A-Z_]+)`", owns))
        durables = set()
        # "`<durable>` (on `<stream>`…)", or "`<durable>`" on its producer's stream.
        for match in re.finditer(
            r"`([a-z]+-[a-z]+)`(?:\s*\(on [^`]*`(ZHIKE_[A-Z_]+)`)?", consumers
        ):
            durable, stream = match.group(1), match.group(2)
            producer = durable.split("-", 1)[1]
            durables.add((durable, stream or f"ZHIKE_{producer.upper()}"))
        rows[service] = (streams, durables)
    return rows


def test_the_consumer_table_names_every_stream_and_durable_consumer() -> None:
    expected = {
        grant.user: (
            {stream.name for stream in grant.owns},
            {(consumer.durable, consumer.stream) for consumer in grant.consumes},
        )
        for grant in GRANTS
    }
    assert _consumer_table() == expected


def _in_flight_share() -> float:
    """The share of ZHIKE_SHUTDOWN_GRACE_SECONDS the gRPC server's stop gives in-flight calls."""
    match = re.search(r"await self\.server\.stop\(grace \* ([0-9.]+)\)", APP.read_text("utf-8"))
    assert match is not None, "RunningService.stop no longer stops the server at a share of grace"
    return float(match.group(1))


def test_the_runbook_and_values_say_what_share_of_the_grace_in_flight_calls_get() -> None:
    share = _in_flight_share()
    percent = f"{share * 100:g} %"
    grace = load_yaml_file(CHART_DIR / "values.yaml")["config"]["shutdownGraceSeconds"]
    longest_call = ServiceSettings.model_fields["max_rpc_seconds"].default
    # The grace at which a call allowed the longest run time still finishes.
    enough = math.ceil(longest_call / share)
    runbook = " ".join(OPERATIONS.read_text(encoding="utf-8").split())
    assert f"{percent} of it ({grace * share:g} s" in runbook
    assert f"up to `ZHIKE_MAX_RPC_SECONDS` ({longest_call:g} s)" in runbook
    assert f"`config.shutdownGraceSeconds: {enough}`" in runbook
    assert "cancelled" in runbook
    # The old claim: every in-flight call finishes within the whole grace.
    assert "finishes in-flight RPCs and its current NATS message within" not in runbook
    comment = next(
        line
        for line in (CHART_DIR / "values.yaml").read_text(encoding="utf-8").splitlines()
        if "@param config.shutdownGraceSeconds" in line
    )
    assert percent in comment
    assert "cancelled" in comment
    assert f"{enough}" in comment
