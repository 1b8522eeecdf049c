"""Fixtures for the chart tests: the chart rendered once per profile (production defaults
and the kind values), shared by every test module in tests/deploy.

The production profile is the chart's defaults with the tests' INSTALLATION_VALUES (the
defaults alone refuse to render); the kind profile is deploy/kind/zhike-values.yaml alone over
the defaults, exactly what `make deploy` installs."""

from __future__ import annotations

from typing import Any

import pytest

from .chart import KIND_VALUES, Manifest, load_yaml_file, render

PROFILES = ("default", "kind")


@pytest.fixture(scope="session")
def kind_values() -> dict[str, Any]:
    return load_yaml_file(KIND_VALUES)


@pytest.fixture(scope="session")
def default_objects() -> list[Manifest]:
    return render()


@pytest.fixture(scope="session")
def kind_objects(kind_values: dict[str, Any]) -> list[Manifest]:
    return render(kind_values, installation_values=False)


@pytest.fixture(scope="session", params=PROFILES)
def profile_objects(
    request: pytest.FixtureRequest,
    default_objects: list[Manifest],
    kind_objects: list[Manifest],
) -> list[Manifest]:
    """The rendered objects of each profile in turn."""
    return default_objects if request.param == "default" else kind_objects
