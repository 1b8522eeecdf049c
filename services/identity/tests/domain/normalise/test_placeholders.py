"""The generic placeholder test, and the fixed set of rejection reasons."""

from __future__ import annotations

import pytest

from zhike_identity.domain.normalise import REASONS, Unusable, is_placeholder


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "  ",
        "无",
        "不详",
        "未知",
        "null",
        "NULL",
        "None",
        "n/a",
        "N/A",
        "-",
        "--",
        "/",
        "0",
        "000",
        "test",
        "TEST",
        "测试",
        "？",
        "　",
        "nan",
    ],
)
def test_placeholders(raw: str) -> None:
    assert is_placeholder(raw)


@pytest.mark.parametrize("raw", ["刘建军", "13812345678", "1980-05-03", "男", "a@b.cn", "0755"])
def test_real_values_are_not_placeholders(raw: str) -> None:
    assert not is_placeholder(raw)


def test_unusable_carries_its_reason_and_detail() -> None:
    error = Unusable("bad_length", "10 digits")

    assert isinstance(error, ValueError)
    assert (error.reason, error.detail, str(error)) == (
        "bad_length",
        "10 digits",
        "bad_length: 10 digits",
    )
    assert str(Unusable("empty")) == "empty"


def test_an_undocumented_reason_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown Unusable reason"):
        Unusable("because")
    assert "empty" in REASONS
    assert "placeholder" in REASONS
