"""Small builders for the domain tests: offers as documents, parties as facts, events."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from zhike_offers.domain.catalogue import Catalogue, Offer, compile_offer
from zhike_offers.domain.contact_policy import ContactEvent, ContactKind
from zhike_offers.domain.eligibility import RuleEnvironment
from zhike_offers.domain.facts import Holding, OfferFacts

# Tuesday 1 December 2026, 10:00 UTC (18:00 in Shanghai).
NOW = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)
TODAY = dt.date(2026, 12, 1)
VALID_RISK_UNTIL = dt.date(2027, 6, 30)


@functools.cache
def shared_environment() -> RuleEnvironment:
    return RuleEnvironment()


def document(offer_id: str = "test_offer", **fields: Any) -> dict[str, Any]:
    """A valid marketing offer on the app, eligible for everyone, with `fields` replaced."""
    base: dict[str, Any] = {
        "offer_id": offer_id,
        "version": 1,
        "names": {"zh-CN": "测试优惠", "en": "Test offer"},
        "product_code": offer_id.upper(),
        "category": "marketing",
        "channels": ["mobile_app"],
        "value": "100",
    }
    base.update(fields)
    return base


def offer(offer_id: str = "test_offer", **fields: Any) -> Offer:
    return compile_offer(document(offer_id, **fields), shared_environment())


def catalogue(*offers: Offer) -> Catalogue:
    return Catalogue(offers, shared_environment())


def facts(**fields: Any) -> OfferFacts:
    """A C3 party with a valid assessment who consents to marketing by SMS, email and push."""
    base: dict[str, Any] = {
        "party_id": "party-1",
        "profile_version": 7,
        "customer_risk": 3,
        "risk_expires_on": VALID_RISK_UNTIL,
        "consents": {
            ("sms", "marketing"): True,
            ("email", "marketing"): True,
            ("push", "marketing"): True,
        },
    }
    base.update(fields)
    return OfferFacts(**base)


def holding(product_line: str, product_code: str, currency: str = "CNY") -> Holding:
    return Holding(product_line, product_code, currency)


def event(
    kind: ContactKind,
    at: dt.datetime,
    offer_id: str = "test_offer",
    channel: str = "sms",
    *,
    marketing: bool = True,
) -> ContactEvent:
    return ContactEvent(at=at, offer_id=offer_id, channel=channel, kind=kind, marketing=marketing)


def days(n: float) -> dt.timedelta:
    return dt.timedelta(days=n)
