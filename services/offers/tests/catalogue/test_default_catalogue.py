"""The shipped catalogue compiles, holds the offers the stories need, and a bad file stops
loading with the file, the offer, the field and the position named."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from zhike_offers.catalogue import DEFAULT_DIRECTORY, load_catalogue
from zhike_offers.domain.catalogue import CatalogueError, Category, facts_affecting
from zhike_offers.domain.eligibility import RuleEnvironment
from zhike_offers.domain.facts import FactKind


@pytest.fixture(scope="module")
def environment() -> RuleEnvironment:
    return RuleEnvironment()


def test_the_default_catalogue_has_the_offers_the_stories_need(
    environment: RuleEnvironment,
) -> None:
    catalogue = load_catalogue(environment)
    offers = {offer.offer_id: offer for offer in catalogue.offers}
    assert 6 <= len(offers) <= 10
    fx = offers["usd_fx_wealth"]
    assert fx.names["en"] == "USD 5,000 wealth product"
    assert [clause.text for clause in fx.eligibility] == ['assets["USD"] >= 5000.0']
    assert (fx.product_risk, fx.outbound, fx.channels) == (2, True, ("mobile_app", "sms"))
    assert fx.depends_on == {FactKind.ASSETS, FactKind.RISK, FactKind.CONSENT}
    assert FactKind.HOLDINGS in facts_affecting(fx)  # its applicability reads products
    assert any(offer.category is Category.SERVICE for offer in offers.values())
    assert any(not offer.personalised for offer in offers.values())
    assert any(offer.product_risk == 4 for offer in offers.values())
    equity = offers["balanced_equity_fund"]
    assert [clause.text for clause in equity.eligibility][1] == "age >= 18"
    assert equity.depends_on == {FactKind.ASSETS, FactKind.RISK, FactKind.AGE}
    assert offers["mortgage_refinance"].levers == Decimal("0.8")
    assert "platinum_card_upgrade" in offers


def test_the_version_is_stable_across_loads(environment: RuleEnvironment) -> None:
    assert load_catalogue(environment).version == load_catalogue(environment).version


def test_a_bad_file_names_the_file_the_offer_the_field_and_the_position(
    environment: RuleEnvironment, tmp_path: Path
) -> None:
    good = (DEFAULT_DIRECTORY / "usd_fx_wealth.yaml").read_text(encoding="utf-8")
    (tmp_path / "usd_fx_wealth.yaml").write_text(
        good.replace('assets["USD"] >= 5000.0', 'assets["USD"] >= 5000'), encoding="utf-8"
    )
    (tmp_path / "other.yaml").write_text(
        good.replace("offer_id: usd_fx_wealth", "offer_id: moved"), encoding="utf-8"
    )
    (tmp_path / "broken.yaml").write_text("offer_id: [unclosed\n", encoding="utf-8")
    with pytest.raises(CatalogueError) as raised:
        load_catalogue(environment, tmp_path)
    found = {
        (Path(p.source).name, p.offer_id, p.field, p.line, p.column) for p in raised.value.problems
    }
    assert found == {
        ("broken.yaml", "", "(file)", None, None),
        ("other.yaml", "moved", "offer_id", None, None),
        ("usd_fx_wealth.yaml", "usd_fx_wealth", "eligibility[0]", 1, 15),
    }


def test_a_missing_directory_is_named(environment: RuleEnvironment, tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="not a directory"):
        load_catalogue(environment, tmp_path / "nowhere")


def test_a_file_with_more_than_50_context_boosts_is_refused_naming_the_field(
    environment: RuleEnvironment, tmp_path: Path
) -> None:
    good = (DEFAULT_DIRECTORY / "usd_fx_wealth.yaml").read_text(encoding="utf-8")
    boosts = "".join(f'  "journey=step_{index}": "1.5"\n' for index in range(51))
    (tmp_path / "usd_fx_wealth.yaml").write_text(
        f"{good}context_boosts:\n{boosts}", encoding="utf-8"
    )
    with pytest.raises(CatalogueError) as raised:
        load_catalogue(environment, tmp_path)
    found = [(Path(p.source).name, p.field) for p in raised.value.problems]
    assert found == [("usd_fx_wealth.yaml", "context_boosts")]
