"""The inputs digest of a decision (pure): SHA-256 of its canonical inputs — the party's facts,
the request, the contact history and the model version — so the decision log can prove what a
decision saw without keeping the facts themselves. The same digest with the same catalogue and
model versions, time and seed gives the same ranking."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from zhike_offers.domain.contact_policy import ContactHistory
from zhike_offers.domain.decision import DecisionRequest
from zhike_offers.domain.facts import OfferFacts


def inputs_digest(
    facts: OfferFacts,
    request: DecisionRequest,
    history: ContactHistory,
    model_version: str,
    seed: int | None,
) -> str:
    content: dict[str, Any] = {
        "facts": {
            "party_id": facts.party_id,
            "profile_version": facts.profile_version,
            "assets": dict(sorted(facts.assets.items())),
            "liabilities": dict(sorted(facts.liabilities.items())),
            "holdings": sorted(
                [h.product_line, h.product_code, h.currency] for h in facts.holdings
            ),
            "tier": facts.tier,
            "value_band": facts.value_band,
            "segments": sorted(facts.segments),
            "risk": [
                facts.customer_risk,
                None if facts.risk_expires_on is None else facts.risk_expires_on.isoformat(),
            ],
            "consents": sorted([c, p, g] for (c, p), g in facts.consents.items()),
            "age": facts.age,
            "do_not_contact": facts.do_not_contact,
            "personalised_offers": facts.personalised_offers,
            # Only when set: the digests of decisions made before opt-outs existed still match.
            **(
                {"opted_out_channels": sorted(facts.opted_out_channels)}
                if facts.opted_out_channels
                else {}
            ),
        },
        "request": {
            "channel": request.channel,
            "placement": request.placement,
            "max_offers": request.max_offers,
            "context": dict(sorted(request.context.items())),
            "outbound": request.outbound,
        },
        # ContactHistory keeps its events in a canonical order already.
        "history": [
            [e.at.isoformat(), e.offer_id, e.channel, e.kind.value, e.marketing]
            for e in history.events
        ],
        "model_version": model_version,
        "seed": seed,
    }
    canonical = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
