"""`zhike identity resolve-csv --target`: a file streamed through a running identity service
(a real grpc.aio server, a real nats-server, SQLite), in two arrival orders."""

from __future__ import annotations

import asyncio
import csv
import os
import random
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

from zhike.identity.v1 import identity_service_pb2 as pb
from zhike.identity.v1 import identity_service_pb2_grpc
from zhike_identity.app import DEFINITION
from zhike_identity_evaluation import generator
from zhike_identity_evaluation.dataset import RecordKey, read_grouping
from zhike_identity_evaluation.metrics import pairwise_scores
from zhike_runtime.testing.processes import NatsServer
from zhike_runtime.testing.services import (
    TEST_ISSUER,
    authorised_channel,
    running_service,
    wait_serving,
)


def partition(grouping: dict[RecordKey, str]) -> set[frozenset[RecordKey]]:
    groups: dict[str, set[RecordKey]] = {}
    for key, label in grouping.items():
        groups.setdefault(label, set()).add(key)
    return {frozenset(members) for members in groups.values()}


def shuffled_copy(source: Path, target: Path, seed: int) -> None:
    with source.open(encoding="utf-8") as handle:
        header, *rows = list(csv.reader(handle))
    random.Random(seed).shuffle(rows)
    with target.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([header, *rows])


async def resolve_through_a_fresh_service(
    nats: NatsServer, database: Path, source: Path, output: Path
) -> tuple[dict[RecordKey, str], int, str]:
    """The output's grouping, how many parties the service retired by merging, and what the
    command wrote on stderr."""
    async with running_service(
        DEFINITION, database_url=f"sqlite+aiosqlite:///{database}", nats_url=nats.url
    ) as service:
        await wait_serving(service.grpc_port)
        zhike = Path(sys.executable).parent / "zhike"
        # The service answers on this event loop: the command must not block it.
        process = await asyncio.create_subprocess_exec(
            str(zhike),
            "identity",
            "resolve-csv",
            str(source),
            str(output),
            "--target",
            f"127.0.0.1:{service.grpc_port}",
            "--no-progress",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=os.environ | {"ZHIKE_TOKEN": BULK_LOADER_TOKEN},
        )
        _, stderr = await process.communicate()
        assert process.returncode == 0, stderr.decode()
        grouping = read_grouping(output, "party_id")
        async with authorised_channel(f"127.0.0.1:{service.grpc_port}") as channel:
            stub = identity_service_pb2_grpc.IdentityServiceStub(channel)
            for party_id in set(grouping.values()) - {""}:
                # Each row names its record's party as it stands at the end, not a party
                # that a later record's bridge retired.
                answer = await stub.GetParty(pb.GetPartyRequest(party_id=party_id), timeout=5)
                assert answer.party.party_id == party_id
    with closing(sqlite3.connect(database)) as db:
        query = "SELECT count(*) FROM party WHERE retired_into IS NOT NULL"
        (retired,) = db.execute(query).fetchone()
    return grouping, retired, stderr.decode()


# What a bank would give its bulk-loading job: write records, read the parties they formed.
BULK_LOADER_TOKEN = TEST_ISSUER.mint(["source_system", "call_centre_agent"], subject="bulk-loader")


def test_streaming_without_a_token_stops_with_a_clear_message(tmp_path: Path) -> None:
    zhike = Path(sys.executable).parent / "zhike"
    (tmp_path / "in.csv").write_text("source,source_id,full_name\ncore,1,刘建军\n")
    environment = {k: v for k, v in os.environ.items() if k != "ZHIKE_TOKEN"}
    result = subprocess.run(
        [
            *(str(zhike), "identity", "resolve-csv"),
            *(str(tmp_path / "in.csv"), str(tmp_path / "o")),
            *("--target", "127.0.0.1:1"),
        ],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == "--target needs a bearer token: --token or ZHIKE_TOKEN\n"
    assert not (tmp_path / "o").exists()


async def test_streaming_through_the_service_in_any_order_gives_one_grouping(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    evaluation = generator.write_csv(tmp_path, persons=300, seed=11)
    groupings = []
    for seed in (1, 2):
        source = tmp_path / f"shuffled-{seed}.csv"
        shuffled_copy(tmp_path / "records.csv", source, seed)
        grouping, retired, _ = await resolve_through_a_fresh_service(
            nats_server, tmp_path / f"identity-{seed}.db", source, tmp_path / f"out-{seed}.csv"
        )
        assert retired > 0  # records bridged parties: the check of survivors above had work
        groupings.append(grouping)

    # Party ids are new UUIDs in each store: the groups themselves must agree.
    assert partition(groupings[0]) == partition(groupings[1])
    assert set(groupings[0]) == set(evaluation.truth)  # one row per input row
    scores = pairwise_scores(evaluation.truth, groupings[0])
    assert scores.precision >= 0.995, scores
    assert scores.recall >= 0.97, scores


async def test_refused_values_are_resent_without_and_reported_by_line(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    source = tmp_path / "in.csv"
    source.write_text(
        "source,source_id,full_name,id_type,id_number,phone,birth_date\n"
        "core,1,刘建军,RESIDENT_ID,110105194912310021,13812345678,1949-12-31\n"
        # A bad check character: sent again without the ID number.
        "cards,2,劉建軍,RESIDENT_ID,110105194912310022,13812345678,1949-12-31\n"
        f"crm,{'x' * 200},刘建军,,,,\n",  # a source key the service cannot store
        encoding="utf-8",
    )
    grouping, _, stderr = await resolve_through_a_fresh_service(
        nats_server, tmp_path / "identity.db", source, tmp_path / "out.csv"
    )

    assert grouping[("core", "1")] == grouping[("cards", "2")] != ""
    assert grouping[("crm", "x" * 200)] == ""  # one row per input row, even this one
    assert f"{source}:3: id_number: refused by the service" in stderr
    assert f"{source}:4: not linked: the service refused the record" in stderr


async def test_refusals_name_the_line_their_record_starts_on_past_blank_lines_and_multiline_fields(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    source = tmp_path / "in.csv"
    source.write_text(
        "source,source_id,full_name,id_type,id_number,address\n"
        'core,1,刘建军,RESIDENT_ID,11010519491231002X,"北京市朝阳区\n建国路 1 号"\n'  # lines 2-3
        "\n"
        "cards,2,劉建軍,RESIDENT_ID,110105194912310022,\n",  # line 5: a bad check character
        encoding="utf-8",
    )

    _, _, stderr = await resolve_through_a_fresh_service(
        nats_server, tmp_path / "identity.db", source, tmp_path / "out.csv"
    )

    assert [line for line in stderr.splitlines() if line.startswith(f"{source}:")] == [
        f"{source}:2: address: refused by the service",  # the service takes no line break
        f"{source}:5: id_number: refused by the service",
    ]


async def test_keep_last_sends_the_service_only_the_last_row_of_a_repeated_key(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    source = tmp_path / "in.csv"
    source.write_text(
        "source,source_id,full_name,phone,birth_date\n"
        "core,1,张三,13812345678,1949-12-31\n"
        "branch,5,张三,13812345678,1949-12-31\n"
        "cards,9,李四,13987654321,1980-01-01\n"
        "core,1,李四,13987654321,1980-01-01\n",
        encoding="utf-8",
    )
    database = tmp_path / "identity.db"
    async with running_service(
        DEFINITION, database_url=f"sqlite+aiosqlite:///{database}", nats_url=nats_server.url
    ) as service:
        await wait_serving(service.grpc_port)
        process = await asyncio.create_subprocess_exec(
            *(str(Path(sys.executable).parent / "zhike"), "identity", "resolve-csv"),
            *(str(source), str(tmp_path / "out.csv"), "--no-progress"),
            *(f"--target=127.0.0.1:{service.grpc_port}", "--repeated-keys=keep-last"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=os.environ | {"ZHIKE_TOKEN": BULK_LOADER_TOKEN},
        )
        _, stderr = await process.communicate()
        assert process.returncode == 0, stderr.decode()

    # Stored once, as its last row says, and never updated: its first row was never sent.
    with closing(sqlite3.connect(database)) as db:
        query = (
            "SELECT full_name, created_at = updated_at FROM source_record "
            "WHERE source_system = 'core' AND source_record_id = '1'"
        )
        assert db.execute(query).fetchall() == [("李四", 1)]
