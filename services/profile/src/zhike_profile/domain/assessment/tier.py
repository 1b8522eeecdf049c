"""The bank-wide tier and the service entitlements that follow it.

The tier comes from the whole relationship, never from one branch: the monthly average of total
assets over the last few months (every account, every system), and any premium card, whichever
gives more. Nothing here reads a branch code, so every branch and channel that asks about the
same facts gets the same tier and the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from zhike_profile.domain.assessment.money import CONTEXT, cny, format_amount, to_minor
from zhike_profile.domain.facts import CardTier, MonthlyActivity, PartyFacts


@dataclass(frozen=True)
class Entitlement:
    code: str  # "priority_queue"
    description: str  # "Priority queue at every branch and in the call centre"


@dataclass(frozen=True)
class Tier:
    name: str  # "gold": what events, searches and rules use
    label: str  # "Gold": what people read
    rank: int  # 0 for the lowest tier
    min_average_assets_cny_minor: int
    entitlements: tuple[Entitlement, ...] = ()


@dataclass(frozen=True)
class TierPolicy:
    tiers: tuple[Tier, ...]  # lowest first; the first one's minimum is 0
    basis_months: int  # the months the asset average covers, the current month included
    card_floors: tuple[tuple[CardTier, str], ...] = ()  # a card of this tier → at least tier name

    def tier(self, name: str) -> Tier:
        return next(tier for tier in self.tiers if tier.name == name)

    def floor_for(self, card: CardTier) -> Tier | None:
        """The lowest bank tier a card of this tier gives (a better card gives at least as much)."""
        floors = [self.tier(name) for tier, name in self.card_floors if tier <= card]
        return max(floors, key=lambda tier: tier.rank, default=None)


@dataclass(frozen=True)
class TierResult:
    name: str
    label: str
    rank: int
    reason: str  # "Gold: average assets CNY 612,000.00 ≥ 500,000.00"
    reasons: tuple[str, ...]  # every rule that gives this tier, the reason first
    average_assets_cny_minor: int  # the asset figure the tier was judged on


def _month_index(year: int, month: int) -> int:
    return year * 12 + month - 1


def basis_months(facts: PartyFacts, months: int) -> tuple[MonthlyActivity, ...]:
    """The activity months in the window of `months` calendar months ending with as_of's."""
    last = _month_index(facts.as_of.year, facts.as_of.month)
    return tuple(
        month
        for month in facts.activity
        if last - months < _month_index(month.month.year, month.month.month) <= last
    )


def average_assets(
    facts: PartyFacts, months: int, current_assets_cny_minor: int
) -> tuple[int, bool]:
    """(CNY minor units, whether it is a monthly average). The average covers the months the
    profile has figures for within the window; with none yet (a new customer), today's total
    assets stand in, and the reason says so."""
    window = basis_months(facts, months)
    if not window:
        return current_assets_cny_minor, False
    total = sum(month.average_assets_cny_minor for month in window)
    return to_minor(CONTEXT.divide(total, len(window)), 0), True


def assess_tier(facts: PartyFacts, policy: TierPolicy, current_assets_cny_minor: int) -> TierResult:
    average, averaged = average_assets(facts, policy.basis_months, current_assets_cny_minor)
    by_assets = policy.tiers[0]
    for tier in policy.tiers:
        if average >= tier.min_average_assets_cny_minor:
            by_assets = tier
    figure = "average assets" if averaged else "assets today (no monthly average yet)"
    if by_assets.rank == 0 and len(policy.tiers) > 1:
        above = policy.tiers[1]
        assets_reason = (
            f"{by_assets.label}: {figure} {cny(average)} < "
            f"{format_amount(above.min_average_assets_cny_minor)}"
        )
    else:
        assets_reason = (
            f"{by_assets.label}: {figure} {cny(average)} ≥ "
            f"{format_amount(by_assets.min_average_assets_cny_minor)}"
        )
    candidates: list[tuple[Tier, str]] = [(by_assets, assets_reason)]
    cards = sorted(
        (
            holding
            for holding in facts.holdings
            if holding.is_open and holding.card_tier is not None
        ),
        # Best card first; then a stable order that ignores the branch, so the reason is the
        # same whichever branch's records come first.
        key=lambda holding: (-(holding.card_tier or 0), holding.source, holding.account_id),
    )
    for card in cards:
        assert card.card_tier is not None
        floor = policy.floor_for(card.card_tier)
        if floor is not None:
            system = card.source.source_system.replace("_", " ")
            reason = f"{floor.label}: holds a {card.card_tier.name.lower()} card ({system})"
            candidates.append((floor, reason))
    best = max(tier.rank for tier, _ in candidates)
    reasons = tuple(dict.fromkeys(reason for tier, reason in candidates if tier.rank == best))
    chosen = policy.tiers[best]
    return TierResult(
        name=chosen.name,
        label=chosen.label,
        rank=chosen.rank,
        reason=reasons[0],
        reasons=reasons,
        average_assets_cny_minor=average,
    )
