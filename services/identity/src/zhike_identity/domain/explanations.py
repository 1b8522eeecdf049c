"""Explaining a link: the model's weights for two stored records, as linking would score them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from zhike_identity.domain.matching.blocking import blocking_keys, counting_keys
from zhike_identity.domain.matching.comparison import FIELDS, Frequencies, compare, veto
from zhike_identity.domain.matching.features import RecordFeatures
from zhike_identity.domain.matching.model import MatchModel, match_probability
from zhike_identity.domain.matching.resolver import SHARED_VALUE_LIMIT, pair_weight
from zhike_identity.domain.model import LinkDecisionKind, SourceRecordKey
from zhike_identity.domain.parties import features_of, surviving_party
from zhike_identity.domain.ports import IdentityUnitOfWork
from zhike_identity.domain.term_frequencies import (
    StoreSize,
    frequency_counts,
    shared_value_keys,
    store_total,
)
from zhike_identity.domain.validation import validate_key
from zhike_runtime.errors import NotFound
from zhike_runtime.masking import mask_address, mask_email, mask_id_number, mask_phone
from zhike_runtime.validation import Violations


@dataclass(frozen=True)
class FieldExplanation:
    field: str
    value_a: str
    value_b: str
    level: str
    weight: float


@dataclass(frozen=True)
class Explanation:
    fields: tuple[FieldExplanation, ...]
    prior_weight: float
    total_weight: float
    match_probability: float
    link_weight: float
    review_weight: float
    decision: str
    guardrail: str | None
    model_version: str
    same_party_now: bool


class LinkExplanations:
    """ExplainLink: how the model weighs two stored records, field by field."""

    def __init__(self, unit_of_work: Callable[[], IdentityUnitOfWork], model: MatchModel) -> None:
        self._unit_of_work = unit_of_work
        self._model = model
        self._store_size = StoreSize()

    async def explain_link(self, a: SourceRecordKey, b: SourceRecordKey) -> Explanation:
        v = Violations()
        validate_key(v, "record_a", a)
        validate_key(v, "record_b", b)
        v.raise_if_any()
        async with self._unit_of_work() as uow:
            left = await uow.records.get(a)
            right = await uow.records.get(b)
            if left is None:
                raise NotFound("source_record", f"{a.source_system}/{a.source_record_id}")
            if right is None:
                raise NotFound("source_record", f"{b.source_system}/{b.source_record_id}")
            fa, fb = features_of(left), features_of(right)
            counts = await uow.records.key_counts(
                [*blocking_keys(fa), *counting_keys(fa)], by_party=shared_value_keys(fa)
            )
            # Record a is stored: its values are counted once, as when it was linked.
            frequencies = Frequencies(
                frequency_counts(fa, counts, fa),
                store_total(await self._store_size.read(uow), fa),
                SHARED_VALUE_LIMIT,
            )
            decisions = await uow.decisions.for_record(a)
            same_party = await surviving_party(uow, left.party_id) == await surviving_party(
                uow, right.party_id
            )
        model = self._model
        pattern = compare(fa, fb, frequencies)
        name_value = fa.name.full if fa.name is not None else None
        weights = model.weights(pattern, name_value, frequencies)
        total = pair_weight(model, fa, fb, pattern, frequencies)
        guardrail = veto(fa, fb)
        if decisions.get(b) is LinkDecisionKind.NEVER:
            guardrail = "steward_never_link"
        decision = "no_link" if guardrail else model.decide(total)
        if decisions.get(b) is LinkDecisionKind.ALWAYS:
            decision, guardrail = "link", "steward_always_link"
        fields = tuple(
            FieldExplanation(name, *_shown(name, fa, fb), level, weight)
            for name, level, weight in zip(FIELDS, pattern, weights, strict=True)
        )
        return Explanation(
            fields=fields,
            prior_weight=model.prior_weight,
            total_weight=total,
            match_probability=match_probability(total),
            link_weight=model.link_weight,
            review_weight=model.review_weight,
            decision=decision,
            guardrail=guardrail,
            model_version=model.version,
            same_party_now=same_party,
        )


def _shown(name: str, a: RecordFeatures, b: RecordFeatures) -> tuple[str, str]:
    def value(f: RecordFeatures) -> str:
        if name == "id":
            return mask_id_number(f.document.number) if f.document else ""
        if name == "name":
            return f.name.display if f.name else ""
        if name == "birth_date":
            return f.birth_date.isoformat() if f.birth_date else ""
        if name == "gender":
            return f.gender.name if f.gender else ""
        if name == "phone":
            return mask_phone(f.phone.e164) if f.phone else ""
        if name == "email":
            return mask_email(f.email) if f.email else ""
        # Masked as GetParty masks it without read_pii: explanations are always masked.
        return mask_address(f.address.text) if f.address else ""

    return value(a), value(b)
