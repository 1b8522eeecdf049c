"""A real scrape of running services: identity and profile as processes exporting Prometheus
metrics, driven through successful and failing calls, a linked record that profile consumes,
and a poison event that profile dead-letters. The alert-rule tests build their input series from
what this scrape shows, and the runbook test compares its metric names with it."""

from __future__ import annotations

import asyncio
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
import nats
import pytest
from prometheus_client.parser import text_string_to_metric_families

from zhike.identity.v1 import identity_service_pb2 as identity_pb
from zhike.identity.v1 import identity_service_pb2_grpc as identity_grpc
from zhike.identity.v1 import party_pb2
from zhike_runtime.events import headers as h
from zhike_runtime.testing.processes import NatsServer, free_port
from zhike_runtime.testing.services import authorised_channel, eventually

from .conftest import ServiceProcess
from .journeys import link, profile_or_none, source_record

Labels = dict[str, str]

# The poison event: a SourceRecordLinked whose payload is not one, dead-lettered at once.
POISON_EVENT_ID = "metrics-scrape-poison"


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Labels
    value: float


@dataclass(frozen=True)
class Scrape:
    """Every sample of one scrape of each service's /metrics."""

    samples: tuple[Sample, ...]

    def names(self) -> set[str]:
        return {sample.name for sample in self.samples}

    def find(self, name: str, **labels: str) -> list[Sample]:
        return [
            sample
            for sample in self.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        ]

    def labels_of(self, name: str, **labels: str) -> Labels:
        """The label set of the first sample of `name` with these label values; fails clearly
        when the scrape has none (a rule test must never invent a series the code lacks)."""
        found = self.find(name, **labels)
        if not found:
            shown = sorted(n for n in self.names() if n.startswith("zhike_"))
            raise AssertionError(f"the scrape has no {name} with {labels}; it has {shown}")
        return dict(found[0].labels)


def parse(text: str) -> list[Sample]:
    return [
        Sample(sample.name, dict(sample.labels), float(sample.value))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def fetch(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        body: bytes = response.read()
    return body.decode()


def metrics_environment(port: int) -> dict[str, str]:
    """What the chart sets with metrics.enabled (the ConfigMap's OTEL_* variables)."""
    return {
        "OTEL_METRICS_EXPORTER": "prometheus",
        "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1",
        "OTEL_EXPORTER_PROMETHEUS_PORT": str(port),
    }


async def _drive(identity: ServiceProcess, profile: ServiceProcess, nats_url: str) -> None:
    async with (
        authorised_channel(identity.address) as identity_channel,
        authorised_channel(profile.address) as profile_channel,
    ):
        linked = [
            await link(identity_channel, source_record("core_deposits", f"D-{i}")) for i in range(3)
        ]
        # Refused calls: bad input, a party that does not exist, a caller without a token.
        stub = identity_grpc.IdentityServiceStub(identity_channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.LinkSourceRecord(
                identity_pb.LinkSourceRecordRequest(source_record=party_pb2.SourceRecord()),
                timeout=10,
            )
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT, refused.value
        assert await profile_or_none(profile_channel, str(uuid.uuid4())) is None
        async with grpc.aio.insecure_channel(identity.address) as anonymous:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await identity_grpc.IdentityServiceStub(anonymous).LinkSourceRecord(
                    identity_pb.LinkSourceRecordRequest(source_record=source_record("x", "1")),
                    timeout=10,
                )
            assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED, refused.value

        async def profiles_exist() -> bool:
            found = [await profile_or_none(profile_channel, r.party_id) for r in linked]
            return all(p is not None for p in found)

        await eventually(profiles_exist, timeout=20)

    client = await nats.connect(nats_url)
    try:
        await client.jetstream().publish(
            "zhike.identity.v1.source_record_linked",
            b"\xff\xff not a protobuf message",
            headers={
                h.MSG_ID: POISON_EVENT_ID,
                h.EVENT_ID: POISON_EVENT_ID,
                h.EVENT_TYPE: "zhike.identity.v1.SourceRecordLinked",
            },
        )
    finally:
        await client.close()


def _scrape(ports: Mapping[str, int]) -> Scrape:
    return Scrape(tuple(sample for port in ports.values() for sample in parse(fetch(port))))


def _scrape_until_settled(ports: Mapping[str, int], timeout: float = 30.0) -> Scrape:
    """Scrapes until profile's consumer gauge (refreshed every few seconds) and the dead letter
    show, so the scrape holds every series the services export in steady state. On timeout the
    last scrape is returned: the tests then name the series it lacks."""
    deadline = time.monotonic() + timeout
    while True:
        scrape = _scrape(ports)
        settled = scrape.find("zhike_consumer_pending", consumer="profile-identity") and any(
            sample.value >= 1 for sample in scrape.find("zhike_events_dead_lettered_total")
        )
        if settled or time.monotonic() > deadline:
            return scrape
        time.sleep(0.5)


def scrape_running_services(directory: Path) -> Iterator[Scrape]:
    """Starts NATS, identity and profile (Prometheus exporter on), drives them, yields a scrape
    of both, and stops everything."""
    nats_server = NatsServer(directory / "nats")
    nats_server.start()
    ports = {"identity": free_port(), "profile": free_port()}
    processes = {
        name: ServiceProcess(name, directory, nats_server.url, extra_env=metrics_environment(port))
        for name, port in ports.items()
    }
    try:
        for process in processes.values():
            process.start()

        async def drive() -> None:
            for process in processes.values():
                await process.wait_serving()
            await _drive(processes["identity"], processes["profile"], nats_server.url)

        asyncio.run(drive())
        yield _scrape_until_settled(ports)
    finally:
        for process in processes.values():
            if process.process is not None and process.process.poll() is None:
                process.stop()
        nats_server.stop()
