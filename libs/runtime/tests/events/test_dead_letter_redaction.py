"""A dead letter's headers and the consumer's log lines never carry the values that made the
event fail: a real unique violation (SQLite and PostgreSQL) on a customer's resident-ID number
and phone, and a value PostgreSQL's driver refuses and quotes back, each retried to the end and
parked."""

from __future__ import annotations

import asyncio
import json

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from zhike.testing.v1 import events_pb2
from zhike_runtime.events import headers as h
from zhike_runtime.events.consumer import ConsumerSpec, EventConsumer, EventContext, EventHandler
from zhike_runtime.events.dead_letters import list_dead_letters
from zhike_runtime.events.outbox import add_to_outbox
from zhike_runtime.events.relay import OutboxRelay
from zhike_runtime.testing.logs import captured_json_logs
from zhike_runtime.testing.services import eventually

from ..conftest import PING_SUBJECT, TEST_STREAM, Backbone, ping

RESIDENT_ID = "11010519491231002X"
PHONE = "13671829305"
NAME = "刘晓燕"
DURABLE = "tests-customers"

customers = sa.MetaData()
customer = sa.Table(
    "customer",
    customers,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id_number", sa.String(32), nullable=False, unique=True),
    sa.Column("phone", sa.String(32), nullable=False, unique=True),
    sa.Column("full_name", sa.String(64), nullable=False),
    sa.Column("age", sa.Integer, nullable=True),
)


async def store_customer(session: AsyncSession, event: events_pb2.Ping, _: EventContext) -> None:
    if event.poison:
        # A mapping bug: the ID number bound to an integer column. asyncpg refuses it with
        # "invalid input for query argument $1: '11010519491231002X' (...)".
        statement = (
            "INSERT INTO customer (id_number, phone, full_name, age) VALUES ('-', '-', '-', :age)"
        )
        await session.execute(sa.text(statement), {"age": event.key})
        return
    # The event names a customer the table already holds: a unique violation on every delivery.
    await session.execute(
        sa.insert(customer).values(id_number=event.key, phone=PHONE, full_name=NAME)
    )


SPEC = ConsumerSpec(
    durable=DURABLE,
    stream=TEST_STREAM.name,
    filter_subjects=(PING_SUBJECT,),
    handlers=(EventHandler(events_pb2.Ping, store_customer),),
)


@pytest.fixture
async def known_customer(backbone: Backbone) -> Backbone:
    async with backbone.database.engine.begin() as connection:
        await connection.run_sync(customers.create_all)
    async with backbone.database.session() as session, session.begin():
        await session.execute(
            sa.insert(customer).values(id_number=RESIDENT_ID, phone=PHONE, full_name=NAME)
        )
    return backbone


@pytest.mark.parametrize("refused_value", [False, True], ids=["unique_violation", "refused_value"])
async def test_a_dead_letter_and_the_logs_hold_no_value_of_the_failing_row(
    known_customer: Backbone, refused_value: bool
) -> None:
    backbone = known_customer
    if refused_value and not backbone.database.is_postgres:
        pytest.skip("SQLite stores any value in an INTEGER column")
    async with backbone.database.session() as session, session.begin():
        await add_to_outbox(session, [ping(RESIDENT_ID, poison=refused_value)])
    bus = backbone.bus("customers")
    consumer = EventConsumer(SPEC, backbone.database, bus, backbone.telemetry, backbone.settings)
    with captured_json_logs() as lines:
        await bus.run()
        relay = OutboxRelay(backbone.database, bus, backbone.telemetry)
        assert await relay.publish_batch() == 1
        task = asyncio.create_task(consumer.run())
        try:

            async def dead_lettered() -> bool:
                return consumer.dead_lettered == 1

            await eventually(dead_lettered, timeout=20)
            [letter] = await list_dead_letters(bus.js, DURABLE)
        finally:
            consumer.stop()
            await asyncio.wait_for(task, timeout=10)
            await bus.close()

    assert letter.deliveries == str(backbone.settings.consumer_max_deliver)
    if refused_value:
        assert letter.last_error.startswith("DBAPIError(Error) sqlstate=")
    else:
        assert letter.last_error.startswith("IntegrityError(")
        code = "sqlstate=23505" if backbone.database.is_postgres else "SQLITE_CONSTRAINT_UNIQUE"
        assert code in letter.last_error
    headers = "\n".join(f"{key}: {value}" for key, value in letter.headers.items())
    for value in (RESIDENT_ID, PHONE, NAME):
        assert value not in headers
        assert [line for line in lines if value in line] == []
    # The payload is the event itself, kept so a replay can apply it once fixed.
    assert events_pb2.Ping.FromString(letter.payload).key == RESIDENT_ID
    retries = [line for line in lines if "event failed; will retry" in line]
    assert len(retries) == backbone.settings.consumer_max_deliver - 1
    assert all(letter.last_error.split(" ")[0] in line for line in retries)
    [parked] = [json.loads(line) for line in lines if "event dead-lettered" in line]
    assert parked["error"] == letter.last_error == letter.headers[h.LAST_ERROR]
