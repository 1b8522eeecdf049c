"""Propensity: a documented prior for new offers, Beta–Binomial updates, bounded estimates,
and Thompson draws that replay with their seed."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zhike_offers.domain.contact_policy import ContactKind
from zhike_offers.domain.propensity import BetaPrior, Counts, PropensityModel


def test_a_new_offer_gets_the_prior_mean() -> None:
    assert PropensityModel().estimate("new_offer", "all") == pytest.approx(0.1)


def test_responses_update_the_counts_click_as_half_a_success() -> None:
    model = PropensityModel()
    for kind in (ContactKind.ACCEPT, ContactKind.CLICK, ContactKind.DECLINE, ContactKind.IGNORE):
        model = model.update("fx", "usd_holder", kind)
    assert model.counts[("fx", "usd_holder")] == Counts(successes=1.5, failures=2.0)
    assert model.posterior("fx", "usd_holder") == (2.5, 11.0)
    assert model.estimate("fx", "usd_holder") == pytest.approx(2.5 / 13.5)
    assert model.estimate("fx", "other_segment") == pytest.approx(0.1)


@pytest.mark.parametrize(
    "kind", [ContactKind.IMPRESSION, ContactKind.DELIVERED, ContactKind.DECIDED_OUTBOUND]
)
def test_contacts_without_an_outcome_teach_nothing(kind: ContactKind) -> None:
    model = PropensityModel()
    assert model.update("fx", "all", kind) == model


def test_update_returns_a_new_model_and_leaves_the_old_one_alone() -> None:
    before = PropensityModel()
    after = before.update("fx", "all", ContactKind.ACCEPT)
    assert before.counts == {}
    assert after.estimate("fx", "all") > before.estimate("fx", "all")


def test_the_estimate_stays_within_its_bounds() -> None:
    losing = PropensityModel(counts={("fx", "all"): Counts(0, 10_000)})
    winning = PropensityModel(counts={("fx", "all"): Counts(10_000, 0)})
    assert losing.estimate("fx", "all") == 0.02
    assert winning.estimate("fx", "all") == 0.98


@given(
    successes=st.floats(0, 1e6),
    failures=st.floats(0, 1e6),
    seed=st.integers(0, 2**32),
)
def test_thompson_draws_stay_within_the_bounds(
    successes: float, failures: float, seed: int
) -> None:
    model = PropensityModel(counts={("fx", "all"): Counts(successes, failures)})
    assert 0.02 <= model.estimate("fx", "all", rng=random.Random(seed)) <= 0.98


def test_thompson_sampling_with_the_same_seed_gives_the_same_draw() -> None:
    model = PropensityModel(counts={("fx", "all"): Counts(3, 20)})
    first = model.estimate("fx", "all", rng=random.Random(42))
    assert model.estimate("fx", "all", rng=random.Random(42)) == first
    draws = {model.estimate("fx", "all", rng=random.Random(seed)) for seed in range(20)}
    assert len(draws) > 1  # it does sample


def test_bad_priors_and_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="alpha"):
        BetaPrior(alpha=0)
    with pytest.raises(ValueError, match="bounds"):
        PropensityModel(floor=0.5, ceiling=0.4)
