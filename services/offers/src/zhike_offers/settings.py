from __future__ import annotations

import re
from zoneinfo import ZoneInfo

from pydantic import DirectoryPath, Field, field_validator, model_validator

from zhike_offers.domain.contact_policy import BudgetWindow, ContactPolicy
from zhike_offers.domain.decision import MAX_OFFERS, DecisionConfig
from zhike_offers.domain.propensity import Estimator
from zhike_runtime.settings import ServiceSettings, known_time_zone

_WINDOW = re.compile(r"(\d{1,3})d:(\d{1,3})")


def parse_budget(text: str) -> tuple[BudgetWindow, ...]:
    """ "7d:2,30d:6" → at most 2 marketing contacts in any 7 days and 6 in any 30 (rolling)."""
    windows = []
    for part in text.split(","):
        found = _WINDOW.fullmatch(part.strip())
        if found is None:
            raise ValueError(f"{part.strip()!r}: each window is <days>d:<limit>, e.g. 7d:2,30d:6")
        days, limit = int(found.group(1)), int(found.group(2))
        if not 1 <= days <= 366:
            raise ValueError(f"{part.strip()!r}: days must be from 1 to 366")
        windows.append(BudgetWindow(days, limit))
    if len({window.days for window in windows}) != len(windows):
        raise ValueError("a window's days are listed twice")
    return tuple(sorted(windows, key=lambda window: window.days))


class OffersSettings(ServiceSettings):
    grpc_port: int = Field(default=50053, ge=0, le=65535)
    database_url: str = "sqlite+aiosqlite:///.zhike/offers.db"
    # The marketing-contact budget per customer across all channels, rolling windows:
    # "<days>d:<limit>,…" (ZHIKE_CONTACT_BUDGET).
    contact_budget: str = "7d:2,30d:6"
    # Ignored impressions of an offer (with no click or accept between) that suppress it, the
    # days they must fall within, and for how many days they suppress it.
    ignore_limit: int = Field(default=3, ge=1, le=100)
    ignore_window_days: int = Field(default=30, ge=1, le=366)
    ignore_suppression_days: int = Field(default=60, ge=0, le=366)
    # After a decline, days the offer stays away unless the offer sets its own cool-down.
    decline_cool_down_days: int = Field(default=30, ge=0, le=366)
    # Propensity: the posterior mean, or a Thompson draw (seeded by the arbitration id).
    propensity_estimator: Estimator = Estimator.MEAN
    # A directory of offer files (.yaml, .yml, .json) that replaces the shipped default
    # catalogue: stored at start-up for each offer id not stored yet, never over an admin's.
    catalogue_dir: DirectoryPath | None = None
    # How long the decision log keeps an arbitration (and withdrawn outbound decisions).
    decision_log_retention_days: int = Field(default=180, ge=1, le=3650)
    retention_check_seconds: float = Field(default=3600.0, gt=0, le=86400)
    # How often each replica withdraws the outbound decisions of offers past their valid_until
    # (a message deferred to a later day must not go out once its offer has closed).
    expiry_check_seconds: float = Field(default=30.0, gt=0, le=3600)
    # How often each replica looks for outbound offers gone live (new, changed, or opening at
    # their valid_from), and how many parties a chunk of the sweep that follows decides again
    # in one transaction (each chunk holds their locks while it decides).
    sweep_check_seconds: float = Field(default=60.0, gt=0, le=3600)
    sweep_chunk: int = Field(default=50, ge=1, le=1000)
    # How often each replica looks for a changed catalogue (another replica's save) and reads
    # the propensity counts again; decisions never wait for either.
    catalogue_refresh_seconds: float = Field(default=5.0, gt=0, le=3600)
    propensity_refresh_seconds: float = Field(default=30.0, gt=0, le=3600)
    # DecideOffers with max_offers 0.
    default_max_offers: int = Field(default=1, ge=1, le=MAX_OFFERS)
    # SimulateOffer: parties sampled with sample_size 0, and the most one may ask for.
    simulation_sample_size: int = Field(default=1000, ge=1, le=100_000)
    simulation_max_sample_size: int = Field(default=10_000, ge=1, le=100_000)
    # The bank's time zone (IANA): the day a risk assessment expires in.
    business_time_zone: str = "Asia/Shanghai"

    @field_validator("contact_budget")
    @classmethod
    def _budget(cls, value: str) -> str:
        parse_budget(value)
        return value

    @field_validator("business_time_zone")
    @classmethod
    def _known_time_zone(cls, value: str) -> str:
        return known_time_zone(value)

    @model_validator(mode="after")
    def _sample_sizes(self) -> OffersSettings:
        if self.simulation_sample_size > self.simulation_max_sample_size:
            raise ValueError("simulation_sample_size must not be above simulation_max_sample_size")
        return self

    def decision_config(self) -> DecisionConfig:
        return DecisionConfig(
            policy=ContactPolicy(
                budget=parse_budget(self.contact_budget),
                ignore_limit=self.ignore_limit,
                ignore_window_days=self.ignore_window_days,
                ignore_suppression_days=self.ignore_suppression_days,
                decline_cool_down_days=self.decline_cool_down_days,
            ),
            estimator=self.propensity_estimator,
            time_zone=ZoneInfo(self.business_time_zone),
        )
