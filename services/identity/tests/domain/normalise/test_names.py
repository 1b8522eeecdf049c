"""Person names: every spelling of one name meets on `.full`; junk is rejected with a reason."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from zhike_identity.domain.normalise import (
    PersonName,
    Unusable,
    name_pinyin_initials,
    normalise_name,
)

HANZI = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5)


@pytest.mark.parametrize(
    "raw",
    [
        "刘建军",
        "劉建軍",
        "LIU JIANJUN",
        "Liu Jianjun",
        "Jianjun Liu",
        "LIU,JIANJUN",
        "Liu, Jian Jun",
        "ＬＩＵ　ＪＩＡＮＪＵＮ",
        "Liu Jian-Jun",
        "Jian-Jun Liu",
        "  liu   jianjun ",
        "Jianjun LIU",
        "LIUJIANJUN",
        "Liú Jiànjūn",
        "刘 建军",
    ],
)
def test_every_spelling_of_liu_jianjun_has_the_same_full_key(raw: str) -> None:
    name = normalise_name(raw)

    assert name.full == "liujianjun"
    assert name.surname == "liu"
    assert name.given == "jianjun"
    assert name.syllables == ("liu", "jian", "jun")
    assert name_pinyin_initials(name) == "ljj"


def test_hanzi_names_keep_simplified_hanzi_and_latin_names_have_none() -> None:
    assert normalise_name("劉建軍").hanzi == "刘建军"
    assert normalise_name("刘 建军").hanzi == "刘建军"
    assert normalise_name("LIU JIANJUN").hanzi is None


def test_display_is_the_cleaned_original() -> None:
    assert normalise_name("  ＬＩＵ　ＪＩＡＮＪＵＮ ").display == "LIU JIANJUN"
    assert normalise_name("劉建軍").display == "劉建軍"


def test_homophones_share_the_full_key_but_not_the_hanzi() -> None:
    a, b = normalise_name("刘建军"), normalise_name("刘健君")

    assert a.full == b.full
    assert a.hanzi != b.hanzi


@pytest.mark.parametrize("raw", ["欧阳修", "歐陽修", "Ouyang Xiu", "OUYANG XIU", "Xiu Ouyang"])
def test_compound_surname_ouyang_in_hanzi_and_pinyin(raw: str) -> None:
    name = normalise_name(raw)

    assert name.surname == "ouyang"
    assert name.given == "xiu"
    assert name.full == "ouyangxiu"
    assert name.syllables == ("ou", "yang", "xiu")


@pytest.mark.parametrize(
    ("raw", "surname"),
    [
        ("司马光", "sima"),
        ("诸葛亮", "zhuge"),
        ("上官婉儿", "shangguan"),
        ("皇甫嵩", "huangfu"),
        ("令狐冲", "linghu"),
        ("东方朔", "dongfang"),
        ("慕容复", "murong"),
        ("司徒雷登", "situ"),
        ("夏侯惇", "xiahou"),
        ("尉迟恭", "yuchi"),
        ("长孙无忌", "zhangsun"),
        ("公孙胜", "gongsun"),
        ("宇文泰", "yuwen"),
        ("澹台明", "tantai"),
        ("端木赐", "duanmu"),
        ("轩辕明", "xuanyuan"),
        ("呼延灼", "huyan"),
        ("南宫适", "nangong"),
        ("西门庆", "ximen"),
        ("Sima Guang", "sima"),
        ("ZHUGE LIANG", "zhuge"),
        ("Liang Zhuge", "zhuge"),
        ("Ou Yang Xiu", "ouyang"),
    ],
)
def test_compound_surnames(raw: str, surname: str) -> None:
    assert normalise_name(raw).surname == surname


def test_a_two_character_name_starting_like_a_compound_is_surname_and_given_name() -> None:
    # 欧阳 alone is more likely 欧 + 阳 than a surname with no given name; either way the key holds.
    name = normalise_name("欧阳")

    assert (name.surname, name.given) == ("ou", "yang")
    assert name.full == normalise_name("Ouyang").full


@pytest.mark.parametrize(
    ("surname", "reading"),
    [
        ("单", "shan"),
        ("曾", "zeng"),
        ("解", "xie"),
        ("区", "ou"),
        ("仇", "qiu"),
        ("朴", "piao"),
        ("查", "zha"),
        ("盖", "ge"),
        ("乐", "yue"),
        ("覃", "qin"),
        ("员", "yun"),
        ("繁", "po"),
        ("缪", "miao"),
        ("翟", "zhai"),
        ("种", "chong"),
        ("秘", "bi"),
        ("召", "shao"),
        ("宓", "fu"),
        ("逄", "pang"),
        ("相", "xiang"),
        ("沈", "shen"),
        ("重", "chong"),
        ("折", "she"),
        ("黑", "he"),
        ("华", "hua"),
        ("華", "hua"),
        ("樂", "yue"),
        ("長", "chang"),
    ],
)
def test_surnames_take_their_reading_as_surnames(surname: str, reading: str) -> None:
    name = normalise_name(surname + "小明")

    assert name.surname == reading
    assert name.given == "xiaoming"


def test_special_readings_apply_only_to_the_surname() -> None:
    # 单 as the first given-name character keeps its ordinary reading.
    assert normalise_name("王单").given == "dan"
    assert normalise_name("单单").full == "shandan"


def test_shan_xiongxin_and_zeng_guofan() -> None:
    assert normalise_name("单雄信").full == "shanxiongxin"
    assert normalise_name("曾国藩").full == "zengguofan"
    assert normalise_name("Zeng Guofan").full == "zengguofan"


def test_given_name_is_read_as_a_phrase() -> None:
    # 朝阳 as a given name is "zhao yang"; read character by character it would be "chao yang".
    assert normalise_name("李朝阳").given == "zhaoyang"


@pytest.mark.parametrize(
    ("raw", "surname", "given"),
    [
        ("Jianjun Liu", "liu", "jianjun"),  # liu is a surname, jianjun is not
        ("Liu Jianjun", "liu", "jianjun"),
        ("Wang Fang", "wang", "fang"),  # both are surnames: surname first
        ("Xiao Ming", "xiao", "ming"),
        ("Abc Def", "abc", "def"),  # neither: surname first
        ("Wei ZHANG", "zhang", "wei"),  # capitals mark the surname
        ("ZHANG Wei", "zhang", "wei"),
        ("Siu Ming Chan", "chan", "siuming"),  # Cantonese spelling of a surname
        ("Mr Liu Jianjun", "liu", "jianjun"),  # titles are dropped
    ],
)
def test_latin_name_order(raw: str, surname: str, given: str) -> None:
    name = normalise_name(raw)

    assert (name.surname, name.given) == (surname, given)


def test_comma_form_puts_the_surname_before_the_comma() -> None:
    assert normalise_name("JIANJUN,LIU").surname == "jianjun"  # the comma is taken at its word
    assert normalise_name("Liu , Jian Jun").full == "liujianjun"
    assert normalise_name(",Liu Jianjun").full == "liujianjun"  # a stray comma is ignored


def test_a_space_in_a_hanzi_name_marks_the_surname() -> None:
    assert normalise_name("欧 阳修").surname == "ou"
    assert normalise_name("欧阳 修").surname == "ouyang"
    assert normalise_name("张三 丰").surname == "zhang"  # a space after two characters is noise
    assert normalise_name("张三 丰").full == normalise_name("张三丰").full


def test_a_comma_in_a_hanzi_name_marks_the_surname() -> None:
    name = normalise_name("欧阳,修")

    assert (name.hanzi, name.surname, name.given) == ("欧阳修", "ouyang", "xiu")


def test_apostrophes_and_hyphens_split_syllables_but_not_the_key() -> None:
    name = normalise_name("Li Xi'an")

    assert name.given == "xian"
    assert name.syllables == ("li", "xi", "an")
    assert normalise_name("Li Xi’an") == PersonName("Li Xi’an", None, "li", "xian", name.syllables)


@pytest.mark.parametrize(
    ("raw", "syllables"),
    [
        ("Wang Lina", ("wang", "li", "na")),  # 丽娜, not lin + a
        ("Li Pingan", ("li", "ping", "an")),  # 平安, not pin + gan
        ("Li Xian", ("li", "xian")),  # one syllable unless an apostrophe says otherwise
        ("Zhang Xiaoming", ("zhang", "xiao", "ming")),
    ],
)
def test_latin_words_split_into_the_likeliest_syllables(
    raw: str, syllables: tuple[str, ...]
) -> None:
    assert normalise_name(raw).syllables == syllables


def test_unsplittable_latin_words_are_kept_whole() -> None:
    name = normalise_name("John Smith")

    assert name.full == "johnsmith"
    assert name.syllables == ("john", "smith")
    assert name_pinyin_initials(name) == "js"


def test_u_umlaut_is_written_v_as_pypinyin_does() -> None:
    expected = normalise_name("吕小明").full

    assert expected == "lvxiaoming"
    assert normalise_name("Lü Xiaoming").full == expected
    assert normalise_name("LYU XIAOMING").full == expected  # passports since 2012
    assert normalise_name("LV XIAOMING").full == expected
    assert normalise_name("NYU,XIAOMING").surname == "nv"
    assert normalise_name("Wang Jianyu").given == "jianyu"  # n + yu inside a word stays


def test_honorifics_leave_the_surname() -> None:
    name = normalise_name("刘先生")

    assert (name.surname, name.given, name.hanzi) == ("liu", "", "刘")
    assert normalise_name("欧阳女士").surname == "ou"  # two characters: 欧 + 阳, not 欧阳 alone


def test_minority_names_with_a_middle_dot_keep_their_order() -> None:
    name = normalise_name("阿依古丽·买买提")

    assert name.hanzi == "阿依古丽·买买提"
    assert name.surname == ""
    assert name.full == "ayigulimaimaiti"
    assert normalise_name("阿依古丽.买买提").full == name.full
    assert normalise_name("Ayiguli Maimaiti").full == name.full


def test_a_name_mixing_scripts_is_read_in_pinyin() -> None:
    assert normalise_name("刘 Jianjun").full == "liujianjun"


def test_a_surname_alone_is_a_name() -> None:
    assert normalise_name("刘").full == "liu"
    assert normalise_name("LIU").full == "liu"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("刘建军2", "bad_characters"),
        ("Liu Jianjun 3", "bad_characters"),
        ("12345", "bad_characters"),
        ("---", "not_a_name"),
        ("...", "not_a_name"),
        ("无", "placeholder"),
        ("不详", "placeholder"),
        ("某某", "placeholder"),
        ("测试", "placeholder"),
        ("TEST", "placeholder"),
        ("N/A", "placeholder"),
        ("null", "placeholder"),
        ("客户", "placeholder"),
        ("x" * 101, "too_long"),
        ("刘\x00建军", "bad_characters"),
        ("刘建军!", "bad_characters"),
        ("Иван Петров", "bad_characters"),
        ("Mr.", "not_a_name"),
    ],
)
def test_unusable_names(raw: str, reason: str) -> None:
    with pytest.raises(Unusable) as caught:
        normalise_name(raw)

    assert caught.value.reason == reason


def usable_name(raw: str) -> PersonName:
    """Random Hanzi sometimes spell a placeholder (测试, 某某); those are not what is tested."""
    try:
        return normalise_name(raw)
    except Unusable as error:
        reason = error.reason
    assert reason == "placeholder"
    assume(False)
    raise AssertionError("unreachable: assume(False) ends the example")


def full_width(text: str) -> str:
    return "".join("\u3000" if char == " " else chr(ord(char) + 0xFEE0) for char in text)


@given(st.text(HANZI, min_size=1, max_size=4))
def test_simplified_hanzi_is_a_fixed_point(raw: str) -> None:
    name = usable_name(raw)

    assert name.hanzi is not None
    assert normalise_name(name.hanzi) == PersonName(
        name.hanzi, name.hanzi, name.surname, name.given, name.syllables
    )
    assert name.full == name.surname + name.given
    assert name.full.isascii()
    assert name.full.isalnum()
    assert name.full == name.full.lower()


@given(st.text(HANZI, min_size=1, max_size=4))
def test_a_hanzi_name_written_in_its_own_pinyin_has_the_same_key(raw: str) -> None:
    name = usable_name(raw)
    # Characters pypinyin cannot read get a u+code-point stand-in, which no Latin record holds.
    assume(all(syllable.isalpha() for syllable in name.syllables))
    # As a machine-readable passport zone writes it: SURNAME, then the given name.
    latin = f"{name.surname.upper()},{name.given.upper()}"

    # The full key always agrees; syllables may not, as "XIAN" may be 西安 or 先.
    assert normalise_name(latin).full == name.full


@given(
    st.sampled_from(["liu", "wang", "zhang", "ouyang", "chen"]),
    st.lists(
        st.sampled_from(["jian", "jun", "xiao", "ming", "hua", "fang"]), min_size=1, max_size=2
    ),
)
def test_order_comma_case_and_width_do_not_change_the_key(surname: str, given: list[str]) -> None:
    given_name = "".join(given)
    expected = surname + given_name

    assert normalise_name(f"{surname} {given_name}").full == expected
    assert normalise_name(f"{surname.upper()},{given_name.upper()}").full == expected
    assert normalise_name(f"{given_name.title()} {surname.upper()}").full == expected
    assert normalise_name(f"{surname.title()} {'-'.join(given).title()}").full == expected
    assert normalise_name(full_width(f"{surname} {given_name}".upper())).full == expected
