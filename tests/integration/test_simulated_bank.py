"""`zhike simulate` against identity and profile as real processes: a small simulated bank goes
in through the real doors (LinkSourceRecord, IngestSourceEvents), and every profile then shows
the holdings, balances and totals per currency the simulator says it sent."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from zhike.identity.v1 import party_pb2
from zhike.profile.v1 import profile_pb2
from zhike.profile.v1 import profile_service_pb2 as pb
from zhike.profile.v1 import profile_service_pb2_grpc as pb_grpc
from zhike_runtime.testing.services import (
    TEST_ISSUER,
    answer_or_none,
    authorised_channel,
    eventually,
)

from .conftest import ServiceProcess, serving

CUSTOMERS = 20
DAYS = 30

Key = tuple[str, str]


def run_simulate(*options: str) -> subprocess.CompletedProcess[str]:
    zhike = Path(sys.executable).with_name("zhike")
    return subprocess.run(
        [str(zhike), "simulate", "--no-progress", *options],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def expected_by_record(summary: dict[str, Any]) -> dict[Key, dict[tuple[str, str], Any]]:
    """Per source record: (account id, currency) → the holding the simulator ended with."""
    found: dict[Key, dict[tuple[str, str], Any]] = defaultdict(dict)
    for holding in summary["holdings"]:
        key = (holding["source_system"], holding["source_record_id"])
        found[key][(holding["account_id"], holding["currency"])] = holding
    return found


async def test_a_simulated_bank_fills_every_profile_with_the_holdings_it_sent(
    tmp_path: Path, services: dict[str, ServiceProcess]
) -> None:
    identity, profile = services["identity"], services["profile"]
    await serving(identity, profile)

    token = TEST_ISSUER.mint(["source_system"], subject="simulator")
    summary_file = tmp_path / "summary.json"
    # Today in Shanghai, fixed for both runs (the default would move at midnight).
    until = dt.datetime.now(ZoneInfo("Asia/Shanghai")).date()
    bank = (
        f"--customers={CUSTOMERS}",
        f"--days={DAYS}",
        "--seed=9",  # its records include ID numbers with a mistyped check character
        f"--until={until}",
        f"--identity-target={identity.address}",
        f"--profile-target={profile.address}",
        f"--token={token}",
        "--rate=0",
    )
    result = run_simulate(*bank, f"--summary={summary_file}")
    assert result.returncode == 0, result.stderr
    # The same run again, at once (within the stream's duplicate window): the same records and
    # event ids, so every event is answered as one the stream already holds.
    again = run_simulate(*bank, f"--summary={tmp_path / 'again.json'}")
    assert again.returncode == 0, again.stderr
    summary = json.loads(summary_file.read_text())
    total = sum(summary["events"]["by_fact"].values())
    assert summary["events"]["sent"] == total > 200
    # Identity refused the mistyped ID numbers; the records were linked without them.
    assert {r["field"] for r in summary["refused_fields"]} == {"id_number"}
    assert all(record["party_id"] for record in summary["records"])
    again_sent = json.loads((tmp_path / "again.json").read_text())["events"]
    assert again_sent["duplicates"] == again_sent["sent"] == total
    expected = expected_by_record(summary)

    async with authorised_channel(profile.address) as channel:  # may read account ids
        stub = pb_grpc.ProfileServiceStub(channel)

        async def profile_of(key: Key) -> profile_pb2.Profile:
            response: pb.GetProfileResponse = await stub.GetProfile(
                pb.GetProfileRequest(
                    source_record=party_pb2.SourceRecordKey(
                        source_system=key[0], source_record_id=key[1]
                    )
                ),
                timeout=10,
            )
            return response.profile

        last_difference = ""

        async def every_profile_shows_what_was_sent() -> bool:
            nonlocal last_difference
            profiles: dict[Key, profile_pb2.Profile] = {}
            for key, holdings in expected.items():
                shown = await answer_or_none(profile_of(key))
                if shown is None:
                    last_difference = f"{key}: no profile"
                    return False
                balances = {
                    (h.account_id, h.balance.currency_code): h.balance.minor_units
                    for h in shown.holdings
                    if (h.source_record.source_system, h.source_record.source_record_id) == key
                }
                wanted = {k: h["balance_minor_units"] for k, h in holdings.items()}
                if balances != wanted:
                    last_difference = f"{key}: shows {balances}, sent {wanted}"
                    return False
                profiles[key] = shown
            # Each party's totals per currency: the sums over its records' open holdings,
            # assets from deposits and investments, liabilities what is owed on loans and cards.
            sums: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
            for key, holdings in expected.items():
                for holding in holdings.values():
                    if holding["closed"]:
                        continue
                    balance = holding["balance_minor_units"]
                    owed = balance if holding["liability"] else -balance
                    pair = sums[profiles[key].party_id][holding["currency"]]
                    pair[0] += max(-owed, 0)
                    pair[1] += max(owed, 0)
            for key, shown in profiles.items():
                want = {c: tuple(v) for c, v in sums[shown.party_id].items() if any(v)}
                got = {
                    b.currency_code: (b.assets_minor_units, b.liabilities_minor_units)
                    for b in shown.balances
                    if b.assets_minor_units or b.liabilities_minor_units
                }
                if got != want:
                    last_difference = f"party of {key}: balances {got}, sent {want}"
                    return False
            return True

        try:
            await eventually(every_profile_shows_what_was_sent, timeout=90, interval=0.5)
        except AssertionError as error:
            raise AssertionError(last_difference) from error
