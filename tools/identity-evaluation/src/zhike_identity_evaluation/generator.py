"""A seeded generator of Chinese retail-bank customer records with known truth.

`generate(persons, seed)` invents `persons` people and the records the bank's source systems hold
about them; it returns the records in the `resolve-csv` input format and the truth (which person
each record belongs to). Everything random comes from one `random.Random(seed)`: the same
arguments always give the same output, byte for byte, and nothing global is touched.

People. Surnames follow their real frequencies (王 李 张 刘 陈 …, with compound surnames such as
欧阳 and surnames with special readings such as 曾 and 单); given names have one or two characters,
and a share of people get one of the most popular given names, so that 王伟, 张伟 and 李娜 occur many
times over different people. Each person has a valid 18-digit resident ID (a real region code, the
birth date, a sequence whose parity is the sex, the GB 11643 check character) — or, for a few, a
Hong Kong/Macau or Taiwan permit — a mobile, an e-mail and an address (province, city, district,
street, number, building, unit, room). About half of the people live in households: a couple with
their own surnames, children and sometimes a parent with the household's surname, all at one
address and sharing a landline; some children give a parent's mobile; some households have twins
(same surname, birth date, birth region and address; different given names and ID numbers).

Records. A person has 1–5 records, each in a different source system, and each system holds its
own subset of fields (see `SOURCES`): the call centre has a name and the number the customer called
from; the FX/passport desk has the Latin name, a passport, the birth date and the sex; cards have
name, ID, phone and e-mail; and so on.

Noise. Every kind of noise has a rate in `NoiseRates` and a name in `NOISE_KINDS`; each record's
`GeneratedRecord.noise` names the kinds applied to it, and `EvaluationSet` counts, per kind, how
often it was applied and how often it could have been (its opportunities), so tests can check
each rate. The kinds are documented in `NOISE_KINDS` and in docs/identity-evaluation.md.

Command line: `python -m zhike_identity_evaluation.generator --persons N --seed S --out DIR`
writes `DIR/records.csv` and `DIR/truth.csv`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from opencc import OpenCC  # type: ignore[import-untyped]
from pypinyin import Style, lazy_pinyin

from zhike_identity.domain.resident_id import check_character
from zhike_identity_evaluation.dataset import InputRow, RecordKey, write_grouping, write_records

DEFAULT_PERSONS = 4_500
"""At the default rates this gives about 11,000 records."""
DEFAULT_SEED = 20_240_630
REFERENCE_DATE = dt.date(2024, 6, 30)
"""Ages are computed against this fixed day, never today, so output does not drift."""

# --------------------------------------------------------------------------------------------
# Reference data
# --------------------------------------------------------------------------------------------

# (surname, passport pinyin, share of the population in per cent — approximately the published
# frequencies of the 2020 census; the tail is scaled down a little).
SURNAMES: tuple[tuple[str, str, float], ...] = (
    ("王", "wang", 7.1), ("李", "li", 7.0), ("张", "zhang", 6.8), ("刘", "liu", 5.4),
    ("陈", "chen", 4.6), ("杨", "yang", 3.1), ("黄", "huang", 2.2), ("赵", "zhao", 2.0),
    ("吴", "wu", 2.0), ("周", "zhou", 1.9), ("徐", "xu", 1.5), ("孙", "sun", 1.5),
    ("马", "ma", 1.4), ("朱", "zhu", 1.3), ("胡", "hu", 1.3), ("郭", "guo", 1.2),
    ("何", "he", 1.1), ("林", "lin", 1.1), ("高", "gao", 1.1), ("罗", "luo", 1.0),
    ("郑", "zheng", 0.9), ("梁", "liang", 0.9), ("谢", "xie", 0.8), ("宋", "song", 0.8),
    ("唐", "tang", 0.8), ("许", "xu", 0.7), ("韩", "han", 0.7), ("冯", "feng", 0.7),
    ("邓", "deng", 0.7), ("曹", "cao", 0.7), ("彭", "peng", 0.6), ("曾", "zeng", 0.6),
    ("肖", "xiao", 0.6), ("田", "tian", 0.5), ("董", "dong", 0.5), ("袁", "yuan", 0.5),
    ("潘", "pan", 0.5), ("于", "yu", 0.5), ("蒋", "jiang", 0.5), ("蔡", "cai", 0.5),
    ("余", "yu", 0.5), ("杜", "du", 0.4), ("叶", "ye", 0.4), ("程", "cheng", 0.4),
    ("苏", "su", 0.4), ("魏", "wei", 0.4), ("吕", "lyu", 0.4), ("丁", "ding", 0.4),
    ("任", "ren", 0.4), ("沈", "shen", 0.4), ("姚", "yao", 0.3), ("卢", "lu", 0.3),
    ("姜", "jiang", 0.3), ("崔", "cui", 0.3), ("钟", "zhong", 0.3), ("谭", "tan", 0.3),
    ("陆", "lu", 0.3), ("汪", "wang", 0.3), ("范", "fan", 0.3), ("金", "jin", 0.3),
    ("石", "shi", 0.3), ("廖", "liao", 0.3), ("贾", "jia", 0.3), ("夏", "xia", 0.2),
    ("韦", "wei", 0.2), ("付", "fu", 0.2), ("方", "fang", 0.2), ("白", "bai", 0.2),
    ("邹", "zou", 0.2), ("孟", "meng", 0.2), ("熊", "xiong", 0.2), ("秦", "qin", 0.2),
    ("邱", "qiu", 0.2), ("江", "jiang", 0.2), ("尹", "yin", 0.2), ("薛", "xue", 0.2),
    ("闫", "yan", 0.2), ("段", "duan", 0.2), ("雷", "lei", 0.2), ("侯", "hou", 0.2),
    ("龙", "long", 0.2), ("史", "shi", 0.2), ("陶", "tao", 0.1), ("黎", "li", 0.1),
    ("贺", "he", 0.1), ("顾", "gu", 0.1), ("毛", "mao", 0.1), ("郝", "hao", 0.1),
    ("龚", "gong", 0.1), ("邵", "shao", 0.1), ("万", "wan", 0.1), ("钱", "qian", 0.1),
    ("严", "yan", 0.1), ("覃", "qin", 0.1), ("武", "wu", 0.1), ("戴", "dai", 0.1),
    ("单", "shan", 0.05), ("解", "xie", 0.03), ("查", "zha", 0.03), ("仇", "qiu", 0.03),
    ("区", "ou", 0.02), ("欧阳", "ouyang", 0.05), ("司马", "sima", 0.01),
    ("诸葛", "zhuge", 0.01), ("上官", "shangguan", 0.01),
)  # fmt: skip

# The most popular full given names by sex, with rough relative weights.
POPULAR_GIVEN_NAMES: dict[str, tuple[tuple[str, float], ...]] = {
    "M": (
        ("伟", 10), ("强", 5), ("磊", 5), ("军", 5), ("洋", 4), ("勇", 4), ("杰", 4),
        ("涛", 3), ("明", 3), ("超", 3), ("刚", 3), ("平", 3), ("辉", 3), ("鹏", 2),
        ("建华", 2), ("建国", 2), ("建军", 2), ("志强", 2), ("海燕", 1), ("浩然", 1),
        ("子轩", 1), ("宇轩", 1),
    ),
    "F": (
        ("芳", 8), ("娜", 8), ("敏", 6), ("静", 6), ("丽", 5), ("艳", 4), ("秀英", 4),
        ("娟", 3), ("霞", 3), ("秀兰", 3), ("桂英", 3), ("玉兰", 2), ("丹", 2), ("萍", 2),
        ("玲", 2), ("婷", 2), ("雪", 2), ("慧", 2), ("欣怡", 1), ("梓涵", 1),
    ),
}  # fmt: skip

GIVEN_CHARACTERS: dict[str, str] = {
    "M": "伟刚勇毅俊峰强军平东文辉力明永健志兴良海山波宁福龙国胜学祥飞斌杰涛成康光天达安林博诚"
    "磊民浩亮鹏泽晨宇轩睿华建德雄航鸿帆凯晖",
    "F": "秀娟英慧巧美娜静淑惠玉萍红玲芬芳燕彩春菊兰凤洁梅琳云莲雪荣霞香月媛艳佳嘉琼珍莉桂晶妍"
    "茜秋珊倩婷婉颖露瑶怡丹蓉琴蕊薇梦岚馨悦冰欣晓欢菲雯萱雨紫涵琪",
}
# More characters that are common in names, so every given-name character above has at least
# one homophone (same pinyin, tone ignored — what a pinyin input method offers next).
_HOMOPHONE_EXTRA = (
    "玮炜维君均钧菁京丽俐铭鸣闽方坊纳娅亚蕾雷洋阳扬捷峻骏韬滔蔷桦骅名茗婧靖钢纲冬栋智致星亥凝柠富"
    "甫隆珑果圣晟盛彬宾滨慷广田甜大庵昊皓朋彭澎择辰臣得熊杭凡樊恺楷绣鹃涓乔侨书舒灵铃伶分纷采淳局"
    "桔芸允连廉夏侠园圆元源穷真贞臻贵邱庭亭廷宛万鹭遥谣姚旦勤芹秦孟蒙兵炳小笑焕环子梓姿含寒韩奇棋"
    "旗祺"
)


@dataclass(frozen=True, slots=True)
class District:
    code: str  # GB/T 2260 county-level code, the first 6 digits of a resident ID
    province: str
    city: str  # empty for the four municipalities
    district: str
    area_code: str  # landline area code


DISTRICTS: tuple[District, ...] = (
    District("110101", "北京市", "", "东城区", "010"),
    District("110105", "北京市", "", "朝阳区", "010"),
    District("110108", "北京市", "", "海淀区", "010"),
    District("120101", "天津市", "", "和平区", "022"),
    District("310101", "上海市", "", "黄浦区", "021"),
    District("310104", "上海市", "", "徐汇区", "021"),
    District("310115", "上海市", "", "浦东新区", "021"),
    District("500103", "重庆市", "", "渝中区", "023"),
    District("440103", "广东省", "广州市", "荔湾区", "020"),
    District("440106", "广东省", "广州市", "天河区", "020"),
    District("440304", "广东省", "深圳市", "福田区", "0755"),
    District("440305", "广东省", "深圳市", "南山区", "0755"),
    District("330102", "浙江省", "杭州市", "上城区", "0571"),
    District("330106", "浙江省", "杭州市", "西湖区", "0571"),
    District("320102", "江苏省", "南京市", "玄武区", "025"),
    District("320505", "江苏省", "苏州市", "虎丘区", "0512"),
    District("510104", "四川省", "成都市", "锦江区", "028"),
    District("510107", "四川省", "成都市", "武侯区", "028"),
    District("420102", "湖北省", "武汉市", "江岸区", "027"),
    District("420106", "湖北省", "武汉市", "武昌区", "027"),
    District("610103", "陕西省", "西安市", "碑林区", "029"),
    District("370102", "山东省", "济南市", "历下区", "0531"),
    District("370202", "山东省", "青岛市", "市南区", "0532"),
    District("430102", "湖南省", "长沙市", "芙蓉区", "0731"),
    District("210102", "辽宁省", "沈阳市", "和平区", "024"),
    District("350102", "福建省", "福州市", "鼓楼区", "0591"),
    District("410105", "河南省", "郑州市", "金水区", "0371"),
    District("340104", "安徽省", "合肥市", "蜀山区", "0551"),
)

STREETS = (
    "人民路", "中山路", "解放路", "建设路", "和平路", "长江路", "新华路", "文化路", "胜利路",
    "青年路", "朝阳路", "光明路", "友谊路", "幸福路", "黄河路", "东风路", "北京路", "民主路",
    "学府路", "花园路", "建国路", "复兴路", "金融街", "科技路", "滨江大道", "南京西路",
)  # fmt: skip

MOBILE_PREFIXES = (
    "130", "131", "132", "133", "134", "135", "136", "137", "138", "139", "150", "151", "152",
    "153", "155", "156", "157", "158", "159", "166", "177", "180", "181", "182", "183", "185",
    "186", "187", "188", "189", "198", "199",
)  # fmt: skip

EMAIL_DOMAINS = (
    ("qq.com", 30), ("163.com", 25), ("126.com", 10), ("sina.com", 6), ("foxmail.com", 5),
    ("139.com", 5), ("hotmail.com", 4), ("gmail.com", 4), ("yahoo.com.cn", 1),
)  # fmt: skip

JUNK_VALUES: dict[str, tuple[str, ...]] = {
    "phone": ("00000000000", "13800138000", "11111111111", "无"),
    "email": ("test@test.com", "无", "none@none.com", "a@a.com"),
    "address": ("无", "不详", "-"),
}
"""Placeholders that clerks type when a system insists on a value; shared by many people."""

GENDER_CODES: dict[str, dict[str, str]] = {
    "MF": {"M": "M", "F": "F"},
    "CN": {"M": "男", "F": "女"},
    "GB": {"M": "1", "F": "2"},  # GB/T 2261.1
}

# --------------------------------------------------------------------------------------------
# Source systems
# --------------------------------------------------------------------------------------------

NAME, ID, PHONE, EMAIL, BIRTH, GENDER, ADDRESS = (
    "name", "id", "phone", "email", "birth_date", "gender", "address"
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class SourceProfile:
    """What one source system holds about a customer."""

    name: str
    weight: float  # relative chance that a person has a record here
    fields: frozenset[str]
    id_prefix: str  # of its source_id
    gender_code: str = "GB"  # its own gender convention (a key of GENDER_CODES)
    latin_name: bool = False  # holds the name as in a passport (LIU JIANJUN)
    passport: bool = False  # holds a passport instead of a resident ID


SOURCES: tuple[SourceProfile, ...] = (
    SourceProfile(
        "core_deposits", 0.9, frozenset({NAME, ID, PHONE, BIRTH, GENDER, ADDRESS}), "CIF", "GB"
    ),
    SourceProfile("cards", 0.5, frozenset({NAME, ID, PHONE, EMAIL}), "CRD", "MF"),
    SourceProfile(
        "loans", 0.25, frozenset({NAME, ID, PHONE, EMAIL, BIRTH, GENDER, ADDRESS}), "LN", "MF"
    ),
    SourceProfile("call_centre", 0.35, frozenset({NAME, PHONE}), "CC", "CN"),
    SourceProfile("mobile_banking", 0.6, frozenset({NAME, ID, PHONE, EMAIL}), "MB", "GB"),
    SourceProfile(
        "wealth_branch",
        0.2,
        frozenset({NAME, ID, PHONE, EMAIL, BIRTH, GENDER, ADDRESS}),
        "WB",
        "CN",
    ),
    SourceProfile(
        "fx_passport",
        0.1,
        frozenset({NAME, ID, PHONE, EMAIL, BIRTH, GENDER}),
        "FX",
        "MF",
        latin_name=True,
        passport=True,
    ),
)
SOURCE_NAMES = tuple(source.name for source in SOURCES)

RECORDS_PER_PERSON = (1, 2, 3, 4, 5)
RECORDS_PER_PERSON_WEIGHTS = (0.25, 0.30, 0.25, 0.12, 0.08)
MEAN_RECORDS_PER_PERSON = sum(
    k * w for k, w in zip(RECORDS_PER_PERSON, RECORDS_PER_PERSON_WEIGHTS, strict=True)
)


def persons_for(records: int) -> int:
    """How many persons give about `records` records (within about 1% at large sizes)."""
    return max(1, round(records / MEAN_RECORDS_PER_PERSON))


# --------------------------------------------------------------------------------------------
# Noise
# --------------------------------------------------------------------------------------------

NOISE_KINDS: dict[str, str] = {
    # person level (opportunities: people, households or phone numbers as stated)
    "common_given_name": "the given name is one of the most popular (伟, 芳, 娜 …); per person",
    "household": "a household of 2–6 (couple, children, a parent) shares address and landline; "
    "per household-or-single unit",
    "twins": "a household has twins: same surname, birth date, birth region and address, "
    "different given names (often sharing a character) and IDs; per household",
    "household_shared_mobile": "a child gives a parent's mobile as their own; per child",
    "moved": "the household moved: some records keep the previous address; per unit",
    "changed_phone": "the person changed mobile: some records keep the old number; per person "
    "with their own mobile",
    "recycled_phone": "an old number was later reissued to an unrelated person; per changed number",
    # record level (opportunity: a record where the noise is possible and would change the value)
    "old_address": "this record holds the previous address of a person who moved",
    "old_phone": "this record holds the old number of a person who changed mobile",
    "landline": "this record holds the household landline instead of the mobile",
    "name_latin": "the name in a Latin form: LIU JIANJUN, Jianjun Liu, LIU,JIANJUN, …",
    "name_traditional": "the name in traditional characters (劉建軍)",
    "name_homophone": "a given-name character replaced by another with the same pinyin",
    "id_legacy_15": "a resident ID in its legacy 15-digit form (born before 2000)",
    "id_mistyped": "one digit of a resident ID mistyped, breaking its check character",
    "id_spaced": "an ID number with spaces, or a lower-case x",
    "phone_formatted": "+86, 0086, hyphens or spaces in a phone number",
    "date_formatted": "a birth date as 19800503, 1980/5/3, 1980年5月3日 or 1980.05.03 "
    "instead of 1980-05-03",
    "gender_recoded": "a gender code from another convention than the source's own "
    "(M/F, 男/女, 1/2)",
    "email_formatted": "an e-mail in capitals or with surrounding spaces",
    "address_formatted": "an address without its province prefix, or with full-width digits",
    "junk_value": "a placeholder (00000000000, 13800138000, test@test.com, 无, 不详) instead of a "
    "phone, e-mail or address; per field",
    "missing_field": "an optional field left empty; per field",
}


@dataclass(frozen=True, slots=True)
class NoiseRates:
    """The rate of every kind of noise; see `NOISE_KINDS` for what each one means."""

    common_given_name: float = 0.30
    household: float = 0.20
    twins: float = 0.08
    household_shared_mobile: float = 0.30
    moved: float = 0.12
    changed_phone: float = 0.12
    recycled_phone: float = 0.30
    old_address: float = 0.50
    old_phone: float = 0.50
    landline: float = 0.25
    name_latin: float = 0.04
    name_traditional: float = 0.05
    name_homophone: float = 0.02
    id_legacy_15: float = 0.05
    id_mistyped: float = 0.02
    id_spaced: float = 0.03
    phone_formatted: float = 0.15
    date_formatted: float = 0.20
    gender_recoded: float = 0.20
    email_formatted: float = 0.05
    address_formatted: float = 0.10
    junk_value: float = 0.015
    missing_field: float = 0.05
    permit_holder: float = 0.01
    """Share of people holding a Hong Kong/Macau or Taiwan permit instead of a resident ID."""


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Person:
    """One real customer, as the generator invented them."""

    person_id: str
    surname: str
    surname_pinyin: str
    given_name: str
    sex: str  # "M" or "F"
    birth_date: dt.date
    birth_region: District
    id_type: str  # RESIDENT_ID, HK_MACAO_PERMIT or TAIWAN_PERMIT
    id_number: str
    mobile: str
    email: str
    address: str
    home: District
    old_mobile: str = ""
    old_address: str = ""
    landline: str = ""
    household_id: str = ""
    twin_of: str = ""
    mobile_from: str = ""  # person_id of the parent whose mobile this child gives
    recycled_from: str = ""  # person_id of the earlier holder of this person's mobile
    passport: str = ""

    @property
    def full_name(self) -> str:
        return self.surname + self.given_name


@dataclass(frozen=True, slots=True)
class GeneratedRecord:
    row: InputRow
    person_id: str
    noise: frozenset[str]


@dataclass(frozen=True)
class EvaluationSet:
    records: list[GeneratedRecord]
    persons: list[Person]
    applied: Counter[str]
    """How many times each noise kind was applied."""
    opportunities: Counter[str]
    """How many times each noise kind could have been applied (the denominator of its rate)."""
    seed: int
    rates: NoiseRates

    @property
    def rows(self) -> list[InputRow]:
        return [record.row for record in self.records]

    @property
    def truth(self) -> dict[RecordKey, str]:
        return {record.row.key: record.person_id for record in self.records}

    def observed_rate(self, kind: str) -> float:
        seen = self.opportunities[kind]
        return self.applied[kind] / seen if seen else 0.0


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------


@dataclass
class _Builder:
    rng: random.Random
    rates: NoiseRates
    persons: list[Person] = field(default_factory=list)
    applied: Counter[str] = field(default_factory=Counter)
    opportunities: Counter[str] = field(default_factory=Counter)
    used_ids: set[str] = field(default_factory=set)
    used_phones: set[str] = field(default_factory=set)
    used_emails: set[str] = field(default_factory=set)
    used_passports: set[str] = field(default_factory=set)
    households: int = 0
    recycled_donors: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        self.surnames = [s for s, _, _ in SURNAMES]
        self.surname_weights = [w for _, _, w in SURNAMES]
        self.surname_pinyin = {s: p for s, p, _ in SURNAMES}
        self.to_traditional = OpenCC("s2t")
        self.homophones: dict[str, list[str]] = defaultdict(list)
        pool = sorted(set(GIVEN_CHARACTERS["M"] + GIVEN_CHARACTERS["F"] + _HOMOPHONE_EXTRA))
        for char in pool:
            self.homophones[_pinyin(char)].append(char)

    def chance(self, kind: str, rate: float) -> bool:
        """One opportunity for `kind`; True (and counted) with probability `rate`."""
        self.opportunities[kind] += 1
        if self.rng.random() < rate:
            self.applied[kind] += 1
            return True
        return False

    # ---- identifiers ------------------------------------------------------------------------

    def resident_id(self, region: District, birth: dt.date, sex: str) -> str:
        while True:
            sequence = self.rng.randrange(0, 1000)
            if (sequence % 2 == 1) != (sex == "M"):
                sequence = (sequence + 1) % 1000
            first17 = f"{region.code}{birth:%Y%m%d}{sequence:03d}"
            number = first17 + check_character(first17)
            if number not in self.used_ids:
                self.used_ids.add(number)
                return number

    def permit(self) -> tuple[str, str]:
        while True:
            if self.rng.random() < 0.6:
                id_type = "HK_MACAO_PERMIT"
                number = self.rng.choice("HM") + f"{self.rng.randrange(10**8):08d}"
            else:
                id_type = "TAIWAN_PERMIT"
                number = f"{self.rng.randrange(10**8):08d}"
            if number not in self.used_ids:
                self.used_ids.add(number)
                return id_type, number

    def passport(self) -> str:
        while True:
            number = "E" + f"{self.rng.randrange(10**8):08d}"
            if number not in self.used_passports:
                self.used_passports.add(number)
                return number

    def mobile(self) -> str:
        while True:
            number = self.rng.choice(MOBILE_PREFIXES) + f"{self.rng.randrange(10**8):08d}"
            if number not in self.used_phones:
                self.used_phones.add(number)
                return number

    def landline(self, home: District) -> str:
        while True:
            digits = 8 if len(home.area_code) == 3 else self.rng.choice((7, 8))
            local = str(self.rng.randrange(2, 9)) + "".join(
                str(self.rng.randrange(10)) for _ in range(digits - 1)
            )
            number = f"{home.area_code}-{local}"
            if number not in self.used_phones:
                self.used_phones.add(number)
                return number

    def email(self, surname: str, given: str, birth: dt.date) -> str:
        while True:
            domain = self.rng.choices([d for d, _ in EMAIL_DOMAINS], [w for _, w in EMAIL_DOMAINS])[
                0
            ]
            style = self.rng.random()
            given_py = "".join(_pinyin(c) for c in given)
            if domain == "qq.com" and style < 0.7:
                local = str(self.rng.randrange(10**5, 10**10))
            elif style < 0.35:
                local = f"{self.surname_pinyin[surname]}{given_py}"
            elif style < 0.7:
                local = f"{self.surname_pinyin[surname]}{given_py}{birth.year % 100:02d}"
            else:
                local = f"{given_py}.{self.surname_pinyin[surname]}{self.rng.randrange(1, 1000)}"
            address = f"{local}@{domain}"
            if address not in self.used_emails:
                self.used_emails.add(address)
                return address

    def address(self, home: District) -> str:
        rng = self.rng
        floor = rng.randrange(1, 34)
        return (
            f"{home.province}{home.city}{home.district}{rng.choice(STREETS)}"
            f"{rng.randrange(1, 1000)}号{rng.randrange(1, 31)}栋{rng.randrange(1, 7)}单元"
            f"{floor}{rng.randrange(1, 5):02d}室"
        )

    # ---- people -------------------------------------------------------------------------------

    def given_name(self, sex: str) -> str:
        if self.chance("common_given_name", self.rates.common_given_name):
            names = POPULAR_GIVEN_NAMES[sex]
            return self.rng.choices([n for n, _ in names], [w for _, w in names])[0]
        pool = GIVEN_CHARACTERS[sex]
        length = 1 if self.rng.random() < 0.3 else 2
        return "".join(self.rng.choice(pool) for _ in range(length))

    def birth_date(self, earliest: dt.date, latest: dt.date) -> dt.date:
        span = (latest - earliest).days
        return earliest + dt.timedelta(days=self.rng.randrange(span + 1))

    def person(
        self,
        *,
        sex: str,
        birth: dt.date,
        home: District,
        address: str,
        surname: str | None = None,
        given: str | None = None,
        birth_region: District | None = None,
    ) -> Person:
        surname = surname or self.rng.choices(self.surnames, self.surname_weights)[0]
        given = given or self.given_name(sex)
        region = birth_region or (home if self.rng.random() < 0.6 else self.rng.choice(DISTRICTS))
        if self.rng.random() < self.rates.permit_holder:
            id_type, id_number = self.permit()
        else:
            id_type, id_number = "RESIDENT_ID", self.resident_id(region, birth, sex)
        person = Person(
            person_id=f"P{len(self.persons) + 1:06d}",
            surname=surname,
            surname_pinyin=self.surname_pinyin[surname],
            given_name=given,
            sex=sex,
            birth_date=birth,
            birth_region=region,
            id_type=id_type,
            id_number=id_number,
            mobile=self.mobile(),
            email=self.email(surname, given, birth),
            address=address,
            home=home,
        )
        self.persons.append(person)
        return person

    def single(self) -> list[Person]:
        home = self.rng.choice(DISTRICTS)
        latest = REFERENCE_DATE.replace(year=REFERENCE_DATE.year - 18)
        birth = self.birth_date(dt.date(1940, 1, 1), latest)
        person = self.person(
            sex=self.rng.choice("MF"), birth=birth, home=home, address=self.address(home)
        )
        if self.rng.random() < 0.15:
            person.landline = self.landline(home)
        return [person]

    def household(self, room: int) -> list[Person]:
        """A couple, their children and perhaps a parent: at most `room` people (at least 2)."""
        rng = self.rng
        self.households += 1
        household_id = f"H{self.households:05d}"
        home = rng.choice(DISTRICTS)
        address = self.address(home)
        landline = self.landline(home) if rng.random() < 0.8 else ""
        head_sex = rng.choice("MF")
        head_birth = self.birth_date(dt.date(1950, 1, 1), dt.date(1992, 12, 31))
        head = self.person(sex=head_sex, birth=head_birth, home=home, address=address)
        members = [head]
        if rng.random() < 0.85 and len(members) < room:
            spouse_birth = self.birth_date(
                head_birth - dt.timedelta(days=5 * 365), head_birth + dt.timedelta(days=5 * 365)
            )
            members.append(
                self.person(
                    sex="F" if head_sex == "M" else "M",
                    birth=spouse_birth,
                    home=home,
                    address=address,
                )
            )
        # Children carry the head's surname; twins share birth date and birth region.
        latest_child = REFERENCE_DATE - dt.timedelta(days=365)
        child_earliest = head_birth + dt.timedelta(days=22 * 365)
        child_latest = min(head_birth + dt.timedelta(days=38 * 365), latest_child)
        children: list[Person] = []
        twins = False
        if child_earliest < child_latest:
            count = rng.choice((1, 1, 2, 2, 3))
            twins = self.chance("twins", self.rates.twins)
            births = [self.birth_date(child_earliest, child_latest) for _ in range(count)]
            for index, birth in enumerate(births):
                if len(members) >= room:
                    break
                children.append(
                    self.person(
                        sex=rng.choice("MF"),
                        birth=birth,
                        home=home,
                        address=address,
                        surname=head.surname,
                    )
                )
                members.append(children[-1])
                if twins and index == 0 and len(members) < room:
                    members.append(self.twin(children[-1]))
                    children.append(members[-1])
            if twins and len(children) < 2:
                self.applied["twins"] -= 1  # no room left for the second twin
        if rng.random() < 0.25 and len(members) < room:
            earliest = max(head_birth - dt.timedelta(days=35 * 365), dt.date(1925, 1, 1))
            parent_birth = self.birth_date(earliest, head_birth - dt.timedelta(days=20 * 365))
            members.append(
                self.person(
                    sex=rng.choice("MF"),
                    birth=parent_birth,
                    home=home,
                    address=address,
                    surname=head.surname,
                )
            )
        for member in members:
            member.household_id = household_id
            member.landline = landline
        for child in children:
            if self.chance("household_shared_mobile", self.rates.household_shared_mobile):
                child.mobile = head.mobile
                child.mobile_from = head.person_id
        return members

    def twin(self, sibling: Person) -> Person:
        sex = self.rng.choice("MF")
        given = self.given_name(sex)
        if len(sibling.given_name) == 2 and self.rng.random() < 0.5:
            # Twins often share the first character of their given names (子涵, 子轩).
            given = sibling.given_name[0] + self.rng.choice(GIVEN_CHARACTERS[sex])
        while given == sibling.given_name:
            given = self.given_name(sex)
        twin = self.person(
            sex=sex,
            birth=sibling.birth_date,
            home=sibling.home,
            address=sibling.address,
            surname=sibling.surname,
            given=given,
            birth_region=sibling.birth_region,
        )
        twin.twin_of = sibling.person_id
        sibling.twin_of = twin.person_id
        return twin

    def life_events(self, units: list[list[Person]]) -> None:
        """Moves, changed mobiles and numbers recycled to unrelated people."""
        for unit in units:
            if self.chance("moved", self.rates.moved):
                previous_home = self.rng.choice(DISTRICTS)
                previous = self.address(previous_home)
                for member in unit:
                    member.old_address = previous
        donors: list[Person] = []
        children_by_parent: dict[str, list[Person]] = defaultdict(list)
        for person in self.persons:
            if person.mobile_from:
                children_by_parent[person.mobile_from].append(person)
        for person in self.persons:
            if person.mobile_from:
                continue
            if self.chance("changed_phone", self.rates.changed_phone):
                person.old_mobile = person.mobile
                person.mobile = self.mobile()
                for child in children_by_parent.get(person.person_id, ()):
                    child.mobile = person.mobile  # a child's number follows the parent's
                donors.append(person)
        candidates = [
            p
            for p in self.persons
            if not p.household_id and not p.old_mobile and not p.recycled_from
        ]
        self.rng.shuffle(candidates)
        for donor in donors:
            if not candidates:
                break
            if self.chance("recycled_phone", self.rates.recycled_phone):
                recipient = candidates.pop()
                recipient.mobile = donor.old_mobile
                recipient.recycled_from = donor.person_id

    # ---- records -----------------------------------------------------------------------------

    def records(self, person: Person) -> list[tuple[SourceProfile, InputRow, set[str]]]:
        rng = self.rng
        count = rng.choices(RECORDS_PER_PERSON, RECORDS_PER_PERSON_WEIGHTS)[0]
        available = list(SOURCES)
        chosen: list[SourceProfile] = []
        for _ in range(count):
            pick = rng.choices(available, [s.weight for s in available])[0]
            available.remove(pick)
            chosen.append(pick)
        # The call centre records the number a customer called from, which is one the bank
        # already knows when it has other records: generate it last so it can pick one of those.
        chosen.sort(key=lambda source: source.name == "call_centre")
        drafts: list[tuple[SourceProfile, dict[str, str], set[str]]] = []
        for source in chosen:
            values, noise = self.clean_values(person, source, drafts)
            drafts.append((source, values, noise))
        self.ensure_shared_phones_show(person, drafts)
        out = []
        for source, values, noise in drafts:
            self.add_noise(person, source, values, noise)
            row = InputRow(source=source.name, source_id="", **values)
            out.append((source, row, noise))
        return out

    def clean_values(
        self,
        person: Person,
        source: SourceProfile,
        earlier: list[tuple[SourceProfile, dict[str, str], set[str]]],
    ) -> tuple[dict[str, str], set[str]]:
        rng = self.rng
        noise: set[str] = set()
        values = dict.fromkeys(
            ("full_name", "id_type", "id_number", "phone", "email", "birth_date", "gender"), ""
        )
        values["address"] = ""
        values["full_name"] = (
            _latin_name(person, "passport") if source.latin_name else person.full_name
        )
        if ID in source.fields:
            if source.passport:
                person.passport = person.passport or self.passport()
                values["id_type"], values["id_number"] = "PASSPORT", person.passport
            else:
                values["id_type"], values["id_number"] = person.id_type, person.id_number
        if PHONE in source.fields:
            known = [v["phone"] for s, v, _ in earlier if v["phone"]]
            if source.name == "call_centre" and known:
                values["phone"] = rng.choice(known)
                noise |= {k for s, v, n in earlier if v["phone"] == values["phone"] for k in n}
                noise &= {"old_phone", "landline"}
            elif person.landline and self.chance("landline", self.rates.landline):
                values["phone"] = person.landline
                noise.add("landline")
            elif person.old_mobile and self.chance("old_phone", self.rates.old_phone):
                values["phone"] = person.old_mobile
                noise.add("old_phone")
            else:
                values["phone"] = person.mobile
        if EMAIL in source.fields:
            values["email"] = person.email
        if BIRTH in source.fields:
            values["birth_date"] = person.birth_date.isoformat()
        if GENDER in source.fields:
            values["gender"] = GENDER_CODES[source.gender_code][person.sex]
        if ADDRESS in source.fields:
            if person.old_address and self.chance("old_address", self.rates.old_address):
                values["address"] = person.old_address
                noise.add("old_address")
            else:
                values["address"] = person.address
        return values, noise

    def ensure_shared_phones_show(
        self, person: Person, drafts: list[tuple[SourceProfile, dict[str, str], set[str]]]
    ) -> None:
        """A recycled number must show on both people: on one of the donor's records, and on one
        of the recipient's (who holds it now; landline records could otherwise hide it)."""
        phones = [values for _, values, _ in drafts if values["phone"]]
        if not phones:
            return
        if person.person_id in self.recycled_donors and not any(
            v["phone"] == person.old_mobile for v in phones
        ):
            phones[0]["phone"] = person.old_mobile
            for _, values, noise in drafts:
                if values is phones[0]:
                    noise.discard("landline")
                    noise.add("old_phone")
        if person.recycled_from and not any(v["phone"] == person.mobile for v in phones):
            phones[0]["phone"] = person.mobile
            for _, values, noise in drafts:
                if values is phones[0]:
                    noise.discard("landline")

    # ---- noise -------------------------------------------------------------------------------

    def add_noise(
        self, person: Person, source: SourceProfile, values: dict[str, str], noise: set[str]
    ) -> None:
        rates = self.rates
        rng = self.rng
        # Names.
        if not source.latin_name:
            name = values["full_name"]
            homophone = self.homophone(person)
            if homophone and self.chance("name_homophone", rates.name_homophone):
                name = person.surname + homophone
                noise.add("name_homophone")
            traditional = self.to_traditional.convert(name)
            if traditional != name and self.chance("name_traditional", rates.name_traditional):
                name = traditional
                noise.add("name_traditional")
            if self.chance("name_latin", rates.name_latin):
                name = _latin_name(person, rng.choice(LATIN_STYLES))
                noise -= {"name_traditional", "name_homophone"}
                noise.add("name_latin")
            values["full_name"] = name
        elif rng.random() < 0.2:
            values["full_name"] = _latin_name(person, "comma")
        # Identity numbers.
        if values["id_type"] == "RESIDENT_ID":
            number = values["id_number"]
            if person.birth_date.year < 2000 and self.chance("id_legacy_15", rates.id_legacy_15):
                number = number[:6] + number[8:17]
                noise.add("id_legacy_15")
            elif self.chance("id_mistyped", rates.id_mistyped):
                position = rng.randrange(1, 17)
                wrong = rng.choice([d for d in "0123456789" if d != number[position]])
                number = number[:position] + wrong + number[position + 1 :]
                noise.add("id_mistyped")
            if self.chance("id_spaced", rates.id_spaced):
                number = _spaced_id(number, rng)
                noise.add("id_spaced")
            values["id_number"] = number
        # Formats.
        if values["phone"] and self.chance("phone_formatted", rates.phone_formatted):
            values["phone"] = _formatted_phone(values["phone"], rng)
            noise.add("phone_formatted")
        if values["birth_date"] and self.chance("date_formatted", rates.date_formatted):
            values["birth_date"] = _formatted_date(person.birth_date, rng)
            noise.add("date_formatted")
        if values["gender"] and self.chance("gender_recoded", rates.gender_recoded):
            other = rng.choice([code for code in GENDER_CODES if code != source.gender_code])
            values["gender"] = GENDER_CODES[other][person.sex]
            noise.add("gender_recoded")
        if values["email"] and self.chance("email_formatted", rates.email_formatted):
            email = values["email"]
            values["email"] = email.upper() if rng.random() < 0.5 else f" {email} "
            noise.add("email_formatted")
        if values["address"] and self.chance("address_formatted", rates.address_formatted):
            values["address"] = _formatted_address(values["address"], rng)
            noise.add("address_formatted")
        # Placeholders and gaps. The call centre always has the calling number.
        for column in ("phone", "email", "address"):
            if not values[column] or (column == "phone" and source.name == "call_centre"):
                continue
            if self.chance("junk_value", rates.junk_value):
                values[column] = rng.choice(JUNK_VALUES[column])
                noise.add("junk_value")
        for column in ("id_number", "phone", "email", "birth_date", "gender", "address"):
            if not values[column] or (column == "phone" and source.name == "call_centre"):
                continue
            if self.chance("missing_field", rates.missing_field):
                values[column] = ""
                if column == "id_number":
                    values["id_type"] = ""
                noise.add("missing_field")

    def homophone(self, person: Person) -> str:
        """The given name with one character replaced by a homophone, or "" if none exists."""
        given = person.given_name
        positions = [
            i for i, char in enumerate(given) if len(self.homophones.get(_pinyin(char), ())) > 1
        ]
        if not positions:
            return ""
        position = self.rng.choice(positions)
        char = given[position]
        replacement = self.rng.choice([c for c in self.homophones[_pinyin(char)] if c != char])
        return given[:position] + replacement + given[position + 1 :]


LATIN_STYLES = ("passport", "western", "comma", "title", "lower")


def _pinyin(text: str) -> str:
    return "".join(lazy_pinyin(text, style=Style.NORMAL)).replace("v", "yu")


def _latin_name(person: Person, style: str) -> str:
    surname = person.surname_pinyin
    given = "".join(_pinyin(char) for char in person.given_name)
    if style == "passport":
        return f"{surname} {given}".upper()
    if style == "western":
        return f"{given.title()} {surname.title()}"
    if style == "comma":
        return f"{surname},{given}".upper()
    if style == "title":
        return f"{surname.title()} {given.title()}"
    return f"{surname} {given}"


def _spaced_id(number: str, rng: random.Random) -> str:
    if number.endswith("X") and rng.random() < 0.5:
        return number[:-1] + "x"
    if len(number) == 18 and rng.random() < 0.5:
        return f"{number[:6]} {number[6:14]} {number[14:]}"
    return " ".join(number[i : i + 4] for i in range(0, len(number), 4))


def _formatted_phone(phone: str, rng: random.Random) -> str:
    if "-" in phone:  # a landline, 010-62345678
        area, local = phone.split("-")
        style = rng.randrange(3)
        if style == 0:
            return f"({area}){local}"
        if style == 1:
            return f"{area}{local}"
        return f"+86 {area[1:]} {local}"
    style = rng.randrange(6)
    if style == 0:
        return f"+86 {phone[:3]} {phone[3:7]} {phone[7:]}"
    if style == 1:
        return f"+86{phone}"
    if style == 2:
        return f"{phone[:3]}-{phone[3:7]}-{phone[7:]}"
    if style == 3:
        return f"{phone[:3]} {phone[3:7]} {phone[7:]}"
    if style == 4:
        return f"86-{phone}"
    return f"0086 {phone}"


def _formatted_date(date: dt.date, rng: random.Random) -> str:
    style = rng.randrange(4)
    if style == 0:
        return f"{date:%Y%m%d}"
    if style == 1:
        return f"{date.year}/{date.month}/{date.day}"
    if style == 2:
        return f"{date.year}年{date.month}月{date.day}日"
    return f"{date:%Y.%m.%d}"


_FULL_WIDTH_DIGITS = str.maketrans("0123456789", "０１２３４５６７８９")


def _formatted_address(address: str, rng: random.Random) -> str:
    if rng.random() < 0.5:
        return address.translate(_FULL_WIDTH_DIGITS)
    for district in DISTRICTS:
        prefix = district.province + district.city
        if address.startswith(prefix):
            # 北京市朝阳区… → 朝阳区…; 广东省广州市天河区… → 广州市天河区…
            return address[len(district.province) :] if district.city else address[len(prefix) :]
    return address


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def build(
    persons: int = DEFAULT_PERSONS, seed: int = DEFAULT_SEED, rates: NoiseRates | None = None
) -> EvaluationSet:
    """Invent `persons` people and their records; everything is determined by `seed`."""
    if persons < 1:
        raise ValueError(f"persons must be at least 1, got {persons}")
    rates = rates or NoiseRates()
    builder = _Builder(random.Random(seed), rates)
    units: list[list[Person]] = []
    while len(builder.persons) < persons:
        room = persons - len(builder.persons)
        if room >= 2 and builder.chance("household", rates.household):
            units.append(builder.household(min(room, 6)))
        else:
            units.append(builder.single())
    builder.life_events(units)
    builder.recycled_donors = frozenset(p.recycled_from for p in builder.persons if p.recycled_from)

    drafted: list[tuple[SourceProfile, InputRow, Person, set[str]]] = []
    for person in builder.persons:
        for source, row, noise in builder.records(person):
            drafted.append((source, row, person, noise))
    # Source ids are issued after shuffling, so neither the order of rows nor the ids say which
    # records belong together.
    builder.rng.shuffle(drafted)
    next_id: Counter[str] = Counter()
    records = []
    for source, row, person, noise in drafted:
        next_id[source.name] += 1
        source_id = f"{source.id_prefix}{next_id[source.name]:08d}"
        records.append(
            GeneratedRecord(
                row=InputRow(
                    source=row.source,
                    source_id=source_id,
                    full_name=row.full_name,
                    id_type=row.id_type,
                    id_number=row.id_number,
                    phone=row.phone,
                    email=row.email,
                    birth_date=row.birth_date,
                    gender=row.gender,
                    address=row.address,
                ),
                person_id=person.person_id,
                noise=frozenset(noise),
            )
        )
    return EvaluationSet(
        records=records,
        persons=builder.persons,
        applied=builder.applied,
        opportunities=builder.opportunities,
        seed=seed,
        rates=rates,
    )


def generate(
    persons: int = DEFAULT_PERSONS, seed: int = DEFAULT_SEED, rates: NoiseRates | None = None
) -> tuple[list[InputRow], dict[RecordKey, str]]:
    """The records (in `resolve-csv` input form) and the truth: `(source, source_id) → person`."""
    evaluation_set = build(persons, seed, rates)
    return evaluation_set.rows, evaluation_set.truth


def write_csv(
    directory: Path,
    persons: int = DEFAULT_PERSONS,
    seed: int = DEFAULT_SEED,
    rates: NoiseRates | None = None,
) -> EvaluationSet:
    """Write `directory/records.csv` and `directory/truth.csv`; returns the set written."""
    directory.mkdir(parents=True, exist_ok=True)
    evaluation_set = build(persons, seed, rates)
    write_records(directory / "records.csv", evaluation_set.rows)
    write_grouping(directory / "truth.csv", evaluation_set.truth, "person_id")
    return evaluation_set


def summary(evaluation_set: EvaluationSet) -> str:
    """Records per source and, per noise kind, applied / opportunities and the observed rate."""
    by_source = Counter(record.row.source for record in evaluation_set.records)
    lines = [
        f"{len(evaluation_set.records)} records of {len(evaluation_set.persons)} persons "
        f"(seed {evaluation_set.seed})",
        *(f"  {source:<16} {by_source[source]:>7}" for source in SOURCE_NAMES),
        "noise kind                  applied / opportunities   observed   configured",
    ]
    for kind in NOISE_KINDS:
        configured: float = getattr(evaluation_set.rates, kind)
        lines.append(
            f"  {kind:<24} {evaluation_set.applied[kind]:>7} / {evaluation_set.opportunities[kind]:<7}"
            f"        {evaluation_set.observed_rate(kind):7.4f}   {configured:7.4f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m zhike_identity_evaluation.generator",
        description="Write a generated evaluation set: records.csv and truth.csv.",
    )
    parser.add_argument("--persons", type=int, default=DEFAULT_PERSONS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out", type=Path, required=True, help="directory to write into")
    args = parser.parse_args(argv)
    evaluation_set = write_csv(args.out, args.persons, args.seed)
    sys.stdout.write(summary(evaluation_set) + "\n")
    sys.stdout.write(f"wrote {args.out / 'records.csv'} and {args.out / 'truth.csv'}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
