"""One rule environment for the whole run: building it takes ~80 ms (compiling is cheap)."""

from __future__ import annotations

import pytest

from zhike_offers.catalogue import load_catalogue
from zhike_offers.domain.catalogue import Catalogue
from zhike_offers.domain.eligibility import RuleEnvironment

from .builders import shared_environment


@pytest.fixture(scope="session")
def environment() -> RuleEnvironment:
    return shared_environment()


@pytest.fixture(scope="session")
def default_catalogue(environment: RuleEnvironment) -> Catalogue:
    return load_catalogue(environment)
