"""Events and dead letters carry personal data, so every service creates its streams with a
bounded max age (ZHIKE_STREAM_MAX_AGE_SECONDS, from nats.streamMaxAgeSeconds): 30 days by
default, within the range the services accept, in every profile."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import pytest

from zhike_runtime.settings import ServiceSettings

from .chart import Manifest, render

THIRTY_DAYS = str(30 * 86400)


def _max_ages(objects: list[Manifest]) -> set[str]:
    return {m["data"]["ZHIKE_STREAM_MAX_AGE_SECONDS"] for m in objects if m["kind"] == "ConfigMap"}


def test_every_service_gets_a_thirty_day_stream_max_age_by_default(
    profile_objects: list[Manifest],
) -> None:
    assert _max_ages(profile_objects) == {THIRTY_DAYS}


def test_the_rendered_max_age_is_what_the_services_default_to() -> None:
    assert ServiceSettings.model_fields["stream_max_age_seconds"].default == int(THIRTY_DAYS)


def test_an_override_reaches_every_service_as_whole_seconds() -> None:
    assert _max_ages(render({"nats": {"streamMaxAgeSeconds": 7 * 86400}})) == {str(7 * 86400)}


@pytest.mark.parametrize("value", [0, 60, -1, 10**9, "30d", 86400.5])
def test_a_max_age_outside_what_the_services_accept_does_not_render(value: Any) -> None:
    with pytest.raises(helm.HelmValuesError):
        render({"nats": {"streamMaxAgeSeconds": value}})
