"""Exception text leaves the process without the personal data in it: real unique violations
from SQLite and PostgreSQL carrying a resident-ID number and a phone, described, logged as JSON
(traceback included) and rendered by SQLAlchemy itself, show none of the values."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError, StatementError

from zhike.testing.v1 import events_pb2
from zhike_runtime.app import Platform, ServiceDefinition, Wiring
from zhike_runtime.auth.permissions import MethodRule
from zhike_runtime.db import Database
from zhike_runtime.redaction import describe_error, format_exception, redact_text
from zhike_runtime.settings import ServiceSettings
from zhike_runtime.testing.logs import captured_json_logs
from zhike_runtime.testing.processes import NatsServer
from zhike_runtime.testing.services import authorised_channel, running_service

RESIDENT_ID = "11010519491231002X"
PHONE = "13671829305"
NAME = "刘晓燕"
EMAIL = "xiaoyan.liu@163.com"
VALUES = (RESIDENT_ID, PHONE, NAME, EMAIL, RESIDENT_ID.lower(), "136-7182-9305")

metadata = sa.MetaData()
customer = sa.Table(
    "customer",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id_number", sa.String(32), nullable=False, unique=True),
    sa.Column("phone", sa.String(32), nullable=False, unique=True),
    sa.Column("full_name", sa.String(64), nullable=False),
    sa.Column("age", sa.Integer, nullable=True),
)

log = logging.getLogger("zhike.tests.redaction")


def leaked(text: str) -> list[str]:
    return [value for value in VALUES if value in text]


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    async with database.engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    async with database.session() as session, session.begin():
        await session.execute(
            sa.insert(customer).values(id_number=RESIDENT_ID, phone=PHONE, full_name=NAME)
        )
    yield database
    await database.dispose()


async def violation(database: Database, **values: object) -> DBAPIError:
    row = {"id_number": RESIDENT_ID, "phone": PHONE, "full_name": NAME} | values
    with pytest.raises(DBAPIError) as raised:
        async with database.session() as session, session.begin():
            await session.execute(sa.insert(customer).values(**row))
    return raised.value


@pytest.mark.parametrize(
    "other", [{}, {"id_number": "440306198505120028"}], ids=["id_number", "phone"]
)
async def test_a_unique_violation_is_described_by_class_and_code_only(
    database: Database, other: dict[str, str]
) -> None:
    error = await violation(database, **other)
    assert isinstance(error, IntegrityError)
    described = describe_error(error)
    assert leaked(described) == []
    assert described.startswith("IntegrityError(")
    if database.is_postgres:
        # PostgreSQL's DETAIL is `Key (id_number)=(11010519491231002X) already exists.`
        assert "sqlstate=23505" in described
        assert "constraint=customer_" in described
        assert "table=customer" in described
    else:
        assert "SQLITE_CONSTRAINT_UNIQUE UNIQUE constraint failed: customer." in described


async def test_sqlalchemy_renders_no_bound_values_into_the_error(database: Database) -> None:
    error = await violation(database)
    assert leaked(str(error)) == []
    assert leaked(repr(error)) == []
    assert "parameters hidden" in str(error)


async def test_a_value_the_driver_refuses_is_not_quoted_back(database: Database) -> None:
    # asyncpg's DataError quotes the argument it could not encode; SQLite stores it (no types).
    if not database.is_postgres:
        pytest.skip("SQLite accepts any value in an INTEGER column")
    with pytest.raises(StatementError) as raised:
        async with database.session() as session, session.begin():
            await session.execute(
                sa.text(
                    "INSERT INTO customer (id_number, phone, full_name, age) "
                    "VALUES ('x', 'y', 'z', :age)"
                ),
                {"age": RESIDENT_ID},
            )
    assert RESIDENT_ID in str(raised.value.orig)  # the driver's own text does quote it
    assert leaked(describe_error(raised.value)) == []
    assert leaked(format_exception(raised.value)) == []


async def test_the_json_log_line_of_a_failed_write_holds_no_value(database: Database) -> None:
    error = await violation(database)
    with captured_json_logs() as lines:
        try:
            raise RuntimeError(f"could not store customer {RESIDENT_ID}") from error
        except RuntimeError as outer:
            log.exception("storing the customer failed")
            log.error("storing the customer failed: %s", outer)
            log.warning("storing the customer failed", extra={"error": outer})
    assert len(lines) == 3
    for line in lines:
        assert leaked(line) == []
    entry = json.loads(lines[0])
    # The traceback keeps its frames and the chain, with each exception's class.
    assert "test_redaction.py" in entry["exception"]
    assert "IntegrityError(" in entry["exception"]
    assert "RuntimeError: could not store customer ***" in entry["exception"]
    assert "direct cause" in entry["exception"]
    assert json.loads(lines[1])["message"].endswith("RuntimeError: could not store customer ***")
    assert json.loads(lines[2])["error"] == "RuntimeError: could not store customer ***"


@pytest.mark.parametrize(
    ("error", "kept"),
    [
        (KeyError(RESIDENT_ID), "KeyError"),
        (ValueError(f"no customer {NAME} with phone +86 136-7182-9305"), "no customer"),
        (ValueError(f"reply to {EMAIL} bounced"), "bounced"),
        (LookupError(f'party for "{NAME}" not found'), "not found"),
        (RuntimeError(f"id {RESIDENT_ID.lower()} rejected"), "rejected"),
        (
            RuntimeError(
                'duplicate key value violates unique constraint "customer_phone_key"\n'
                f"DETAIL:  Key (phone)=({PHONE}) already exists."
            ),
            "duplicate key value violates unique constraint",
        ),
    ],
)
def test_other_exceptions_keep_their_class_and_a_masked_message(
    error: Exception, kept: str
) -> None:
    described = describe_error(error)
    assert leaked(described) == []
    assert described.startswith(type(error).__name__)
    assert kept in described
    assert "\n" not in described


@pytest.mark.parametrize(
    "written",
    [
        "136/7182/9305",
        "136_7182_9305",
        "136\u20137182\u20139305",  # en dash
        "136\u20147182\u20149305",  # em dash
        "136\u22127182\u22129305",  # minus sign
        "136\uff0d7182\uff0d9305",  # full-width hyphen
        "136\u00a07182\u00a09305",  # no-break space
        "136\u30007182\u30009305",  # ideographic space
        "110105/19491231/002X",
    ],
)
def test_a_number_split_by_any_separator_people_write_is_masked_whole(written: str) -> None:
    redacted = redact_text(f"no customer with phone {written} found")
    assert redacted == "no customer with phone *** found"


def test_text_without_values_is_left_as_it_is() -> None:
    text = "at most 100 parties per merge; retry in 500 ms (attempt 3 of 5)"
    assert redact_text(text) == text


def test_a_described_error_is_one_bounded_line() -> None:
    described = describe_error(ValueError("x" * 10_000 + "\nsecond line"))
    assert len(described) < 400
    assert "\n" not in described


@pytest.mark.parametrize("opening", ["name '", 'name "', "Key (name)=("])
def test_a_value_quoted_across_the_point_where_a_long_text_is_cut_stays_masked(
    opening: str,
) -> None:
    # Only the start of a long first line is read; what a quote or key value opened before
    # that point holds must not show because its end lies beyond it.
    text = "x" * 250 + opening + "Wang Fang " * 200 + "' and more"
    redacted = redact_text(text)
    assert "Wang" not in redacted
    assert redacted.startswith("x" * 250)


def store_twice(platform: Platform[ServiceSettings]) -> Wiring:
    """A handler with a bug: it stores a customer the table already holds."""

    async def store(
        request: events_pb2.Ping, _ctx: grpc.aio.ServicerContext[Any, Any]
    ) -> events_pb2.Ping:
        async with platform.database.engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
        for _ in range(2):
            async with platform.database.session() as session, session.begin():
                await session.execute(
                    sa.insert(customer).values(id_number=request.key, phone=PHONE, full_name=NAME)
                )
        return request

    def register(server: grpc.aio.Server) -> None:
        handler = grpc.unary_unary_rpc_method_handler(
            store,
            request_deserializer=events_pb2.Ping.FromString,
            response_serializer=events_pb2.Ping.SerializeToString,
        )
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "zhike.testing.v1.Customers", {"Store": handler}
                ),
            )
        )

    return Wiring(grpc_registrations=[register])


CUSTOMERS = ServiceDefinition(
    name="customers",
    settings_type=ServiceSettings,
    grpc_service_names=("zhike.testing.v1.Customers",),
    migrations=None,
    stream=None,
    wire=store_twice,
    access_rules={"/zhike.testing.v1.Customers/Store": MethodRule("identity.record.write")},
)


async def test_an_unexpected_database_error_reaches_neither_the_caller_nor_the_log_with_values(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    with captured_json_logs() as lines:
        async with (
            running_service(
                CUSTOMERS,
                database_url=f"sqlite+aiosqlite:///{tmp_path / 'customers.db'}",
                nats_url=nats_server.url,
            ) as service,
            authorised_channel(f"127.0.0.1:{service.grpc_port}") as channel,
        ):
            store = channel.unary_unary(
                "/zhike.testing.v1.Customers/Store",
                request_serializer=events_pb2.Ping.SerializeToString,
                response_deserializer=events_pb2.Ping.FromString,
            )
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await store(events_pb2.Ping(key=RESIDENT_ID), timeout=10)
    assert raised.value.code() is grpc.StatusCode.INTERNAL
    assert leaked(raised.value.details() or "") == []
    assert leaked(str(raised.value.trailing_metadata())) == []
    [failed] = [json.loads(line) for line in lines if '"rpc failed"' in line]
    assert "IntegrityError(IntegrityError) SQLITE_CONSTRAINT_UNIQUE" in failed["exception"]
    assert [line for line in lines if leaked(line)] == []
