"""Identity's use cases over a test's store, built as app.wire builds them (the relay's notify and
the clock are the test's)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from zhike_identity.domain.explanations import LinkExplanations
from zhike_identity.domain.linking import Linking
from zhike_identity.domain.matching.model import default_model
from zhike_identity.domain.queries import PartyQueries
from zhike_identity.domain.stewardship import Stewardship
from zhike_identity.storage.protection import RecordProtection
from zhike_identity.storage.repository import SqlIdentityUnitOfWork
from zhike_identity.transport import codec
from zhike_runtime.db import Database
from zhike_runtime.ids import new_id


@dataclass(frozen=True)
class UseCases:
    linking: Linking
    queries: PartyQueries
    explanations: LinkExplanations
    stewardship: Stewardship


# The service's default (IdentitySettings.business_time_zone).
BANK_ZONE = ZoneInfo("Asia/Shanghai")


def use_cases(
    database: Database,
    protection: RecordProtection,
    *,
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    on_commit: Callable[[], None] = lambda: None,
    zone: dt.tzinfo = BANK_ZONE,
) -> UseCases:
    def unit_of_work() -> SqlIdentityUnitOfWork:
        return SqlIdentityUnitOfWork(database, codec.outgoing_event, on_commit, protection)

    model = default_model()
    return UseCases(
        linking=Linking(unit_of_work, new_id, clock, model, zone=zone),
        queries=PartyQueries(unit_of_work, clock, zone=zone),
        explanations=LinkExplanations(unit_of_work, model),
        stewardship=Stewardship(unit_of_work, new_id, clock),
    )
