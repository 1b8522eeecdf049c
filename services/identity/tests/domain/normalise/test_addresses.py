"""Addresses: province and city prefixes, full-width digits, spacing and postcodes."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from zhike_identity.domain.normalise import Address, Unusable, normalise_address


@pytest.mark.parametrize(
    "raw",
    [
        "北京市朝阳区建国路88号",
        "北京朝阳区建国路88号",
        "朝阳区建国路88号",
        "北京市 朝阳区 建国路 88 号",
        "北京市朝阳区建国路８８号",
        "北京市北京市朝阳区建国路88号",
        "北京市市辖区朝阳区建国路88号",
        "100020 北京市朝阳区建国路88号",
        "北京市朝阳区建国路88号（邮编：100020）",
    ],
)
def test_beijing_prefixes_digits_and_spacing_fold_away(raw: str) -> None:
    address = normalise_address(raw)

    assert address.text == "朝阳区建国路88号"
    assert address.tokens[:3] == ("朝阳", "阳区", "区建")


@pytest.mark.parametrize(
    ("raw", "province", "city"),
    [
        ("广东省深圳市南山区科苑路15号", "广东", "深圳"),
        ("广东深圳南山区科苑路15号", "广东", "深圳"),
        ("深圳市南山区科苑路15号", "广东", "深圳"),  # province filled in from the city
        ("深圳南山区科苑路15号", "广东", "深圳"),
        ("南山区科苑路15号", None, None),
    ],
)
def test_province_and_city_are_taken_off_and_kept(
    raw: str, province: str | None, city: str | None
) -> None:
    address = normalise_address(raw)

    assert address.text == "南山区科苑路15号"
    assert (address.province, address.city) == (province, city)


def test_postcode_is_taken_from_the_start_the_end_or_a_label() -> None:
    assert normalise_address("518057 深圳市南山区科苑路15号").postcode == "518057"
    assert normalise_address("深圳市南山区科苑路15号 518057").postcode == "518057"
    assert normalise_address("深圳市南山区科苑路15号(邮编518057)").postcode == "518057"
    assert normalise_address("深圳市南山区科苑路15号").postcode is None
    # A house number in the middle is not a postcode.
    assert normalise_address("南山区科苑路518057号大厦").postcode is None


def test_an_address_abroad_ends_in_its_postcode() -> None:
    address = normalise_address("12 Pinkerton Circuit, Richlands VIC 4560")
    assert address.postcode == "4560"
    assert address.text == "12pinkertoncircuitrichlandsvic"
    assert normalise_address("Unter den Linden 5, Berlin 10117").postcode == "10117"
    # A house number first is not a postcode, nor are four digits in a Chinese address.
    assert normalise_address("1600 Amphitheatre Parkway Mountain View").postcode is None
    assert normalise_address("深圳市南山区科苑路1501").postcode is None


def test_traditional_hanzi_fold_to_simplified() -> None:
    assert (
        normalise_address("臺北市中正區重慶南路一段122號").text
        == normalise_address("台北市中正区重庆南路一段122号").text
        == "中正区重庆南路一段122号"
    )


def test_hanzi_fold_through_a_chain_of_mappings_to_its_end() -> None:
    # OpenCC maps 薴 to 苧 and 苧 to 苎: all three spellings meet, and folding stops there.
    assert (
        normalise_address("广州市越秀区薴麻街5号").text
        == normalise_address("广州市越秀区苧麻街5号").text
        == normalise_address("广州市越秀区苎麻街5号").text
        == "广州市越秀区苎麻街5号"
    )


@pytest.mark.parametrize(
    ("raw", "province", "city", "text"),
    [
        ("吉林省吉林市船营区解放路1号", "吉林", "吉林", "船营区解放路1号"),
        ("吉林市船营区解放路1号", None, "吉林", "船营区解放路1号"),  # a city, not the province
        ("上海市黄浦区南京东路1号", "上海", "上海", "黄浦区南京东路1号"),
        ("新疆维吾尔自治区乌鲁木齐市天山区1号", "新疆", "乌鲁木齐", "天山区1号"),
        ("广西壮族自治区南宁市青秀区1号", "广西", "南宁", "青秀区1号"),
        ("内蒙古呼和浩特市新城区1号", "内蒙古", "呼和浩特", "新城区1号"),
        ("香港特别行政区九龙弥敦道1号", "香港", "香港", "九龙弥敦道1号"),
        # Streets named after places are not provinces or cities.
        ("北京西路100号", None, None, "北京西路100号"),
        ("山西路1号", None, None, "山西路1号"),
        ("中山路1号", None, None, "中山路1号"),
        ("高新区市民中心1号", None, None, "高新区市民中心1号"),
    ],
)
def test_provinces_cities_and_look_alikes(
    raw: str, province: str | None, city: str | None, text: str
) -> None:
    address = normalise_address(raw)

    assert (address.province, address.city, address.text) == (province, city, text)


def test_latin_addresses_compare_as_words() -> None:
    address = normalise_address("Room 501, 3 Jianguo Rd., Chaoyang District, Beijing 100020")

    assert address == Address(
        text="room5013jianguordchaoyangdistrictbeijing",
        province=None,
        city=None,
        postcode="100020",
        tokens=("room", "501", "3", "jianguo", "rd", "chaoyang", "district", "beijing"),
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("无", "placeholder"),
        ("不详", "placeholder"),
        ("地址不详", "placeholder"),
        ("同上", "placeholder"),
        ("--", "placeholder"),
        ("北京市", "too_short"),
        ("广东省深圳市", "too_short"),
        ("a", "too_short"),
        ("路" * 501, "too_long"),
        ("北京\x07朝阳区", "bad_characters"),
    ],
)
def test_unusable_addresses(raw: str, reason: str) -> None:
    with pytest.raises(Unusable) as caught:
        normalise_address(raw)

    assert caught.value.reason == reason


@given(st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5), min_size=2, max_size=30))
@example("一薴")  # found by this test: 薴 folded to 苧 once, and 苧 to 苎 on a second pass
def test_tokens_are_the_bigrams_of_the_text(raw: str) -> None:
    try:
        address = normalise_address(raw)
    except Unusable as error:
        reason = error.reason
    else:
        reason = ""
    if reason:
        assert reason in {"placeholder", "too_short"}
        return
    text = address.text
    assert address.tokens == (tuple(text[i : i + 2] for i in range(len(text) - 1)) or (text,))
    assert normalise_address(text).text == text  # the comparison form is a fixed point
