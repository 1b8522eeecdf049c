"""A generated evaluation set of customers *without strong identifiers* (issue 14).

Pre-2000 passbook accounts, wealth-management prospects, call-centre contacts, overseas and Hong
Kong customers, records migrated from acquired banks: no ID number, no phone, no e-mail — only a
name, a birth date, sometimes a sex, and an address. One person holds 5–12 such records, typed by
different people at different times:

- **names**: Chinese names in Hanzi (sometimes in pinyin, sometimes with a homophone), and
  Latin-script names of Hong Kong and overseas customers, written in several orders and cases,
  with nicknames and short forms of the given name ("Art", "Artie" for "Arthur") and typos;
- **birth dates**: one-digit typos, day and month swapped, impossible dates (30 February, a month
  13 from a swap), some missing, in several formats;
- **addresses**: a street address with the town and the postcode in the format of its country
  (CN six digits, HK none, UK "SW1A 1AA", US ZIP, Canada "M5V 3L9", Australia and Germany digits,
  Singapore six digits), with typos, abbreviations, cases, a missing postcode, and a previous
  address for people who moved;
- **households** (same address, different people) and **twins** (same surname, birth date and
  address, different given names), which must stay apart.

Everything is drawn from one `random.Random(seed)`: the same arguments give the same files.

Command line: `python -m zhike_identity_evaluation.weak --persons N --seed S --out DIR`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import string
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pypinyin import lazy_pinyin

from zhike_identity_evaluation.dataset import InputRow, RecordKey, write_grouping, write_records
from zhike_identity_evaluation.generator import (
    _HOMOPHONE_EXTRA,
    GIVEN_CHARACTERS,
    POPULAR_GIVEN_NAMES,
    SURNAMES,
    GeneratedRecord,
)

DEFAULT_PERSONS = 5_000
DEFAULT_SEED = 20_241_114
REFERENCE_DATE = dt.date(2024, 6, 30)
RECORDS_PER_PERSON = (5, 12)  # inclusive
MEAN_RECORDS_PER_PERSON = 8.5

SOURCES = ("passbook_legacy", "wealth_prospects", "call_centre", "overseas_branch", "acquired_bank")

# Latin given names with the short forms and nicknames people write for them. The generator's
# own list: the resolver's name-variant table is a separate file, so this set tests it rather
# than echoing it.
GIVEN_VARIANTS: dict[str, dict[str, tuple[str, ...]]] = {
    "M": {
        "Arthur": ("Art", "Artie"), "William": ("Bill", "Will", "Billy"),
        "Robert": ("Bob", "Rob", "Bobby"), "Richard": ("Dick", "Rick", "Rich"),
        "James": ("Jim", "Jimmy"), "John": ("Jack", "Johnny"), "Michael": ("Mike", "Mick"),
        "Thomas": ("Tom", "Tommy"), "Charles": ("Charlie", "Chuck"), "Edward": ("Ed", "Ted"),
        "Anthony": ("Tony",), "Christopher": ("Chris",), "Daniel": ("Dan", "Danny"),
        "Matthew": ("Matt",), "Joseph": ("Joe", "Joey"), "David": ("Dave",),
        "Andrew": ("Andy", "Drew"), "Benjamin": ("Ben",), "Samuel": ("Sam",),
        "Nicholas": ("Nick",), "Alexander": ("Alex", "Sandy"), "Timothy": ("Tim",),
        "Stephen": ("Steve",), "Kenneth": ("Ken", "Kenny"), "Peter": ("Pete",),
        "Patrick": ("Pat",), "Lawrence": ("Larry",), "Raymond": ("Ray",), "Gerald": ("Gerry",),
        "Francis": ("Frank",), "Henry": ("Harry", "Hank"), "Frederick": ("Fred", "Freddie"),
        "Jonathan": ("Jon",), "Leonard": ("Leo", "Len"), "Vincent": ("Vince",),
        "Gregory": ("Greg",), "Philip": ("Phil",), "Ronald": ("Ron",), "Donald": ("Don",),
        "Douglas": ("Doug",), "Eugene": ("Gene",), "Albert": ("Al", "Bert"),
        "Kevin": (), "Brian": (), "Jason": (), "Eric": (), "Kelvin": (), "Wilson": (),
        "Dennis": (), "Simon": (),
    },
    "F": {
        "Elizabeth": ("Liz", "Beth", "Betty"), "Margaret": ("Maggie", "Peggy", "Meg"),
        "Katherine": ("Kate", "Kathy", "Katie"), "Jennifer": ("Jen", "Jenny"),
        "Patricia": ("Pat", "Patty", "Trish"), "Susan": ("Sue", "Susie"),
        "Deborah": ("Debbie", "Deb"), "Rebecca": ("Becky", "Becca"), "Christine": ("Chris",),
        "Victoria": ("Vicky", "Tori"), "Jessica": ("Jess", "Jessie"), "Samantha": ("Sam",),
        "Alexandra": ("Alex", "Sandra"), "Catherine": ("Cathy", "Kate"),
        "Dorothy": ("Dot", "Dottie"), "Barbara": ("Barb", "Babs"), "Judith": ("Judy",),
        "Pamela": ("Pam",), "Theresa": ("Tess", "Terry"), "Josephine": ("Jo", "Josie"),
        "Caroline": ("Carrie",), "Abigail": ("Abby",), "Stephanie": ("Steph",),
        "Cynthia": ("Cindy",), "Gwendolyn": ("Gwen",), "Florence": ("Flo",),
        "Amanda": ("Mandy",), "Melissa": ("Mel", "Missy"), "Kimberly": ("Kim",),
        "Angela": ("Angie",), "Mary": (), "Helen": (), "Karen": (), "Grace": (), "Emily": (),
        "Sarah": (), "Winnie": (), "Cecilia": ("Cissy",), "Vivian": (), "Joyce": (),
    },
}  # fmt: skip
WESTERN_SURNAMES = [
    "Smith",
    "Jones",
    "Williams",
    "Taylor",
    "Brown",
    "Davies",
    "Evans",
    "Wilson",
    "Thomas",
    "Johnson",
    "Roberts",
    "Robinson",
    "Thompson",
    "Wright",
    "Walker",
    "White",
    "Edwards",
    "Hughes",
    "Green",
    "Hall",
    "Lewis",
    "Harris",
    "Clarke",
    "Patel",
    "Jackson",
    "Wood",
    "Turner",
    "Martin",
    "Cooper",
    "Hill",
    "Ward",
    "Morris",
    "Moore",
    "Clark",
    "Lee",
    "King",
    "Baker",
    "Harrison",
    "Morgan",
    "Allen",
    "James",
    "Scott",
    "Phillips",
    "Watson",
    "Davis",
    "Parker",
    "Price",
    "Bennett",
    "Young",
    "Griffiths",
    "Mitchell",
    "Kelly",
    "Cook",
    "Carter",
    "Richardson",
    "Bailey",
    "Collins",
    "Bell",
    "Shaw",
    "Murphy",
    "Miller",
    "Cox",
    "Richards",
    "Khan",
    "Marshall",
    "Anderson",
    "Simpson",
    "Ellis",
    "Adams",
    "Singh",
    "Begum",
    "Wilkinson",
    "Foster",
    "Chapman",
    "Powell",
    "Webb",
    "Rogers",
    "Gray",
    "Mason",
    "Ali",
    "Hunt",
    "Hussain",
    "Campbell",
    "Matthews",
    "Owen",
    "Palmer",
    "Holmes",
    "Mills",
    "Barnes",
    "Knight",
    "Lloyd",
    "Butler",
    "Russell",
    "Barker",
    "Fisher",
    "Stevens",
    "Jenkins",
    "Murray",
    "Dixon",
    "Harvey",
    "Schmidt",
    "Mueller",
    "Fischer",
    "Weber",
    "Garcia",
]
HK_SURNAMES = [
    "Chan",
    "Wong",
    "Leung",
    "Cheung",
    "Lau",
    "Lee",
    "Ho",
    "Tsang",
    "Chow",
    "Ng",
    "Lam",
    "Yip",
    "Tang",
    "Kwok",
    "Lai",
    "Fung",
    "Mak",
    "Yeung",
    "Tse",
    "Choi",
    "Cheng",
    "Law",
    "Kwan",
    "Siu",
    "Yuen",
    "Chu",
    "Poon",
    "Hui",
    "Man",
    "Au",
]
HK_GIVEN_SYLLABLES = [
    "Tai",
    "Man",
    "Siu",
    "Ming",
    "Wai",
    "Kit",
    "Ka",
    "Yan",
    "Chi",
    "Hung",
    "Kin",
    "Wing",
    "Mei",
    "Ling",
    "Yuk",
    "Fong",
    "Kwok",
    "Keung",
    "Shing",
    "Fai",
    "Hoi",
    "Lok",
    "Sze",
    "Ying",
    "Pui",
    "Chun",
    "Kai",
    "Hin",
]


@dataclass(frozen=True, slots=True)
class Place:
    country: str
    streets: tuple[str, ...]
    towns: tuple[str, ...]


@dataclass(slots=True)
class WeakPerson:
    person_id: str
    kind: str  # "cn" (Chinese name), "hk" (Hong Kong, Latin), "west" (overseas, Latin)
    sex: str
    surname: str
    given: str  # Hanzi for "cn"; the formal Latin given name otherwise
    birth: dt.date
    addresses: list[str]  # the current address first, then a previous one for movers
    household: int | None = None
    twin_of: str | None = None


@dataclass(frozen=True)
class WeakSet:
    records: list[GeneratedRecord]
    persons: list[WeakPerson]
    applied: Counter[str]
    opportunities: Counter[str]
    seed: int

    @property
    def rows(self) -> list[InputRow]:
        return [record.row for record in self.records]

    @property
    def truth(self) -> dict[RecordKey, str]:
        return {record.row.key: record.person_id for record in self.records}

    def observed_rate(self, kind: str) -> float:
        seen = self.opportunities[kind]
        return self.applied[kind] / seen if seen else 0.0


@dataclass(frozen=True)
class WeakNoise:
    household: float = 0.20  # per unit: a household of 2–4 people at one address
    twins: float = 0.08  # per household with children
    moved: float = 0.12  # per unit: a previous address some records still hold
    old_address: float = 0.40  # per record of a mover
    nickname: float = 0.30  # per Latin record whose given name has short forms
    name_typo: float = 0.12  # per record: a letter (or a Hanzi for a homophone) mistyped
    name_pinyin: float = 0.10  # per record of a Chinese name: written in pinyin
    date_typo: float = 0.05  # per birth date: one digit changed
    date_swapped: float = 0.04  # per birth date: day and month swapped
    date_impossible: float = 0.02  # per birth date: a day the month does not have
    date_missing: float = 0.05  # per record
    address_typo: float = 0.12  # per record: a letter or character in a street name mistyped
    address_abbreviated: float = 0.25  # per Latin address record: Street → St, Road → Rd …
    address_case: float = 0.20  # per Latin address record: upper or lower case
    postcode_missing: float = 0.05  # per record whose address has a postcode


NOISE_KINDS = tuple(f.name for f in WeakNoise.__dataclass_fields__.values())

_CN_PLACES = (
    ("广东省深圳市南山区", "518057"), ("广东省广州市天河区", "510630"),
    ("北京市朝阳区", "100020"), ("北京市海淀区", "100080"), ("上海市浦东新区", "200120"),
    ("上海市徐汇区", "200030"), ("浙江省杭州市西湖区", "310012"), ("江苏省南京市鼓楼区", "210008"),
    ("四川省成都市武侯区", "610041"), ("湖北省武汉市江汉区", "430015"),
)  # fmt: skip
_CN_STREETS = [
    "科苑路",
    "深南大道",
    "建国路",
    "中关村大街",
    "世纪大道",
    "淮海中路",
    "文三路",
    "中山北路",
    "人民南路",
    "解放大道",
    "长江路",
    "和平街",
]
_PLACES = (
    Place("HK", ("Nathan Road", "Queen's Road", "King's Road", "Hennessy Road",
                 "Des Voeux Road", "Castle Peak Road", "Tai Po Road", "Waterloo Road"),
          ("Tsim Sha Tsui, Kowloon", "Mong Kok, Kowloon", "Causeway Bay", "Wan Chai",
           "North Point", "Sha Tin, New Territories", "Tsuen Wan, New Territories")),
    Place("UK", ("Baker Street", "High Street", "Church Road", "Station Road", "Victoria Road",
                 "Green Lane", "Manor Road", "Park Avenue", "Kingsway", "Albert Street"),
          ("London", "Manchester", "Birmingham", "Leeds", "Bristol", "Edinburgh", "Cambridge")),
    Place("US", ("Oak Avenue", "Main Street", "Maple Street", "Washington Avenue", "Park Road",
                 "Lincoln Street", "Sunset Boulevard", "Elm Street", "Lake Drive"),
          ("Springfield, IL", "San Francisco, CA", "Seattle, WA", "Austin, TX", "Boston, MA",
           "New York, NY", "Los Angeles, CA")),
    Place("CA", ("King Street", "Yonge Street", "Granville Street", "Bloor Street",
                 "Robson Street", "Dundas Street"),
          ("Toronto, ON", "Vancouver, BC", "Markham, ON", "Richmond, BC")),
    Place("AU", ("George Street", "Pitt Street", "Collins Street", "Queen Street",
                 "Chapel Street", "Beach Road"),
          ("Sydney NSW", "Melbourne VIC", "Brisbane QLD", "Perth WA")),
    Place("SG", ("Orchard Road", "Bukit Timah Road", "Tampines Avenue", "Clementi Avenue",
                 "Ang Mo Kio Avenue"), ("Singapore",)),
    Place("DE", ("Hauptstrasse", "Bahnhofstrasse", "Gartenweg", "Schillerstrasse",
                 "Goethestrasse"), ("Berlin", "Hamburg", "Muenchen", "Frankfurt")),
)  # fmt: skip
_ABBREVIATIONS = {"Street": "St", "Road": "Rd", "Avenue": "Ave", "Boulevard": "Blvd",
                  "Drive": "Dr", "Lane": "Ln"}  # fmt: skip


def persons_for(records: int) -> int:
    """How many persons give about `records` records."""
    return max(1, round(records / MEAN_RECORDS_PER_PERSON))


@dataclass
class _Builder:
    rng: random.Random
    rates: WeakNoise
    persons: list[WeakPerson] = field(default_factory=list)
    applied: Counter[str] = field(default_factory=Counter)
    opportunities: Counter[str] = field(default_factory=Counter)
    households: int = 0

    def __post_init__(self) -> None:
        self.surnames = [s for s, _, _ in SURNAMES]
        self.surname_weights = [w for _, _, w in SURNAMES]
        self.homophones: dict[str, list[str]] = defaultdict(list)
        pool = sorted(set(GIVEN_CHARACTERS["M"] + GIVEN_CHARACTERS["F"] + _HOMOPHONE_EXTRA))
        for char in pool:
            self.homophones[lazy_pinyin(char)[0]].append(char)

    def chance(self, kind: str) -> bool:
        self.opportunities[kind] += 1
        if self.rng.random() < getattr(self.rates, kind):
            self.applied[kind] += 1
            return True
        return False

    # ---- people -----------------------------------------------------------------------------

    def birth(self, low: int = 1940, high: int = 2000) -> dt.date:
        start = dt.date(low, 1, 1).toordinal()
        return dt.date.fromordinal(self.rng.randrange(start, dt.date(high, 12, 31).toordinal()))

    def given(self, kind: str, sex: str) -> str:
        rng = self.rng
        if kind == "cn":
            if rng.random() < 0.3:
                popular = POPULAR_GIVEN_NAMES[sex]
                return rng.choices([n for n, _ in popular], [w for _, w in popular])[0]
            return "".join(rng.choice(GIVEN_CHARACTERS[sex]) for _ in range(rng.choice((1, 2))))
        if kind == "hk" and rng.random() < 0.35:
            return " ".join(rng.sample(HK_GIVEN_SYLLABLES, 2))  # "Tai Man"
        formal = list(GIVEN_VARIANTS[sex])
        # Zipf-like: the first names of the table are the most common, so names repeat.
        return rng.choices(formal, [1.0 / (i + 1) ** 0.7 for i in range(len(formal))])[0]

    def surname(self, kind: str) -> str:
        if kind == "cn":
            return self.rng.choices(self.surnames, self.surname_weights)[0]
        pool = HK_SURNAMES if kind == "hk" else WESTERN_SURNAMES
        return self.rng.choices(pool, [1.0 / (i + 1) ** 0.8 for i in range(len(pool))])[0]

    def address(self, kind: str) -> str:
        rng = self.rng
        if kind == "cn":
            region, postcode = rng.choice(_CN_PLACES)
            return (
                f"{region}{rng.choice(_CN_STREETS)}{rng.randrange(1, 300)}号"
                f"{rng.randrange(1, 30)}栋{rng.randrange(1, 7)}单元{rng.randrange(1, 33)}0{rng.randrange(1, 5)}室"
                f"|{postcode}"
            )
        place = _PLACES[0] if kind == "hk" else rng.choice(_PLACES[1:])
        street, town, number = (
            rng.choice(place.streets),
            rng.choice(place.towns),
            rng.randrange(1, 400),
        )
        letters = string.ascii_uppercase
        match place.country:
            case "HK":
                return f"Flat {rng.randrange(1, 30)}{rng.choice('ABCDEFGH')}, {number} {street}, {town}|"
            case "UK":
                area = rng.choice(("SW", "NW", "E", "W", "M", "B", "LS", "BS", "EH", "CB"))
                district = f"{rng.randrange(1, 20)}{rng.choice(('', 'A'))}"
                inward = f"{rng.randrange(1, 10)}{rng.choice(letters)}{rng.choice(letters)}"
                return f"{number} {street}, {town}|{area}{district} {inward}"
            case "US":
                return f"{number} {street}, {town}|{rng.randrange(10000, 99999):05d}"
            case "CA":
                code = (
                    f"{rng.choice('KLMNV')}{rng.randrange(10)}{rng.choice(letters)} "
                    f"{rng.randrange(10)}{rng.choice(letters)}{rng.randrange(10)}"
                )
                return f"{number} {street}, {town}|{code}"
            case "AU":
                return f"{number} {street}, {town}|{rng.randrange(2000, 7000)}"
            case "SG":
                unit = f"#{rng.randrange(2, 30):02d}-{rng.randrange(1, 200):02d}"
                return f"Blk {number} {street} {unit}, {town}|{rng.randrange(100000, 829999)}"
            case _:
                return f"{street} {number}, {town}|{rng.randrange(10000, 99999):05d}"

    def person(self, kind: str, sex: str, surname: str, given: str, birth: dt.date,
               addresses: list[str], household: int | None) -> WeakPerson:  # fmt: skip
        person = WeakPerson(
            f"w{len(self.persons) + 1:07d}", kind, sex, surname, given, birth, addresses, household
        )
        self.persons.append(person)
        return person

    def unit(self) -> None:
        rng = self.rng
        kind = rng.choices(("cn", "hk", "west"), (0.45, 0.25, 0.30))[0]
        addresses = [self.address(kind)]
        if self.chance("moved"):
            addresses.append(self.address(kind))
        if not self.chance("household"):
            sex = rng.choice("MF")
            self.person(kind, sex, self.surname(kind), self.given(kind, sex), self.birth(),
                        addresses, None)  # fmt: skip
            return
        self.households += 1
        household = self.households
        # A household's members have different given names, by sound too (伟 and 薇 are both
        # "wei"): a child named after a parent would be told apart by birth date alone.
        taken: set[str] = set()

        def given(sex: str) -> str:
            while True:
                name = self.given(kind, sex)
                sound = "".join(lazy_pinyin(name)).lower().replace(" ", "")
                if sound not in taken:
                    taken.add(sound)
                    return name

        head_sex = rng.choice("MF")
        surname = self.surname(kind)
        head_birth = self.birth(1940, 1985)
        self.person(kind, head_sex, surname, given(head_sex), head_birth, addresses, household)
        size = rng.choice((2, 3, 4))
        sex = "F" if head_sex == "M" else "M"
        # Western spouses often take the head's surname; Chinese ones keep their own.
        spouse_surname = surname if kind != "cn" and rng.random() < 0.6 else self.surname(kind)
        year = min(max(head_birth.year + rng.randrange(-5, 6), 1940), 1990)
        self.person(kind, sex, spouse_surname, given(sex), self.birth(year, year), addresses,
                    household)  # fmt: skip
        children = size - 2
        if children <= 0:
            return
        first = min(head_birth.year + rng.randrange(22, 36), 2005)
        if self.chance("twins"):
            birth = self.birth(first, first)
            twins = [
                self.person(kind, sex, surname, given(sex), birth, addresses, household)
                for sex in (rng.choice("MF"), rng.choice("MF"))
            ]
            twins[0].twin_of, twins[1].twin_of = twins[1].person_id, twins[0].person_id
            return  # the twins are the household's children
        for n in range(children):
            sex = rng.choice("MF")
            year = min(first + 2 * n + rng.randrange(0, 2), 2006)
            self.person(
                kind, sex, surname, given(sex), self.birth(year, year), addresses, household
            )

    # ---- records ----------------------------------------------------------------------------

    def record(self, person: WeakPerson) -> tuple[InputRow, set[str]]:
        rng = self.rng
        noise: set[str] = set()
        address = person.addresses[0]
        if len(person.addresses) > 1 and self.chance("old_address"):
            address = person.addresses[1]
            noise.add("old_address")
        birth = ""
        if self.chance("date_missing"):
            noise.add("date_missing")
        else:
            birth = self.written_date(person.birth, noise)
        gender = ""
        if rng.random() < 0.5:
            gender = rng.choice(
                {"M": ("M", "男", "1", "Male"), "F": ("F", "女", "2", "Female")}[person.sex]
            )
        row = InputRow(
            source=rng.choice(SOURCES),
            source_id="",
            full_name=self.written_name(person, noise),
            birth_date=birth,
            gender=gender,
            address=self.written_address(address, noise),
        )
        return row, noise

    def written_name(self, person: WeakPerson, noise: set[str]) -> str:
        rng = self.rng
        if person.kind == "cn":
            given = person.given
            if self.chance("name_typo"):
                noise.add("name_typo")
                at = rng.randrange(len(given))
                options = [c for c in self.homophones[lazy_pinyin(given[at])[0]] if c != given[at]]
                given = (
                    given[:at]
                    + (rng.choice(options) if options else rng.choice(GIVEN_CHARACTERS[person.sex]))
                    + given[at + 1 :]
                )
            if self.chance("name_pinyin"):
                noise.add("name_pinyin")
                surname_pinyin = next(p for s, p, _ in SURNAMES if s == person.surname)
                given_pinyin = "".join(lazy_pinyin(given))
                return rng.choice(
                    (
                        f"{surname_pinyin.upper()} {given_pinyin.upper()}",
                        f"{given_pinyin.capitalize()} {surname_pinyin.capitalize()}",
                        f"{surname_pinyin.upper()},{given_pinyin.upper()}",
                    )
                )
            return person.surname + given
        given = person.given
        variants = GIVEN_VARIANTS[person.sex].get(given, ())
        if variants and self.chance("nickname"):
            noise.add("nickname")
            given = rng.choice(variants)
        surname = person.surname
        if self.chance("name_typo"):
            noise.add("name_typo")
            if rng.random() < 0.5 and len(given) >= 4:
                given = _typo(given, rng)
            else:
                surname = (
                    _typo(surname, rng) if len(surname) >= 4 else surname + rng.choice("aeiou")
                )
        style = rng.random()
        if style < 0.4:
            return f"{given} {surname}"
        if style < 0.6:
            return f"{surname.upper()} {given}"
        if style < 0.8:
            return f"{surname}, {given}"
        if style < 0.9:
            return f"{given} {surname}".upper()
        return f"{given} {surname}".lower()

    def written_date(self, date: dt.date, noise: set[str]) -> str:
        rng = self.rng
        year, month, day = date.year, date.month, date.day
        if self.chance("date_impossible"):
            noise.add("date_impossible")
            month, day = rng.choice(
                ((2, 30), (2, 31), (4, 31), (6, 31), (9, 31), (11, 31), (13, day))
            )
        elif self.chance("date_swapped"):
            noise.add("date_swapped")
            month, day = day, month  # a day above 12 makes an impossible month
        elif self.chance("date_typo"):
            noise.add("date_typo")
            digits = list(f"{year:04d}{month:02d}{day:02d}")
            while True:
                at = rng.choice((2, 3, 5, 6, 7))
                changed = digits.copy()
                changed[at] = rng.choice([d for d in "0123456789" if d != digits[at]])
                text = "".join(changed)
                if _valid(int(text[:4]), int(text[4:6]), int(text[6:])):
                    year, month, day = int(text[:4]), int(text[4:6]), int(text[6:])
                    break
        style = rng.random()
        if style < 0.6:
            return f"{year:04d}-{month:02d}-{day:02d}"
        if style < 0.75:
            return f"{year:04d}/{month}/{day}"
        if style < 0.9:
            return f"{year:04d}{month:02d}{day:02d}"
        return f"{year}年{month}月{day}日"

    def written_address(self, address: str, noise: set[str]) -> str:
        rng = self.rng
        street, _, postcode = address.partition("|")
        han = not street.isascii()
        if self.chance("address_typo"):
            noise.add("address_typo")
            street = _han_typo(street, rng) if han else _word_typo(street, rng)
        if not han:
            if self.chance("address_abbreviated"):
                noise.add("address_abbreviated")
                for long, short in _ABBREVIATIONS.items():
                    street = street.replace(long, short)
            if self.chance("address_case"):
                noise.add("address_case")
                street = street.upper() if rng.random() < 0.5 else street.lower()
        if postcode and self.chance("postcode_missing"):
            noise.add("postcode_missing")
            postcode = ""
        if han:
            if rng.random() < 0.3:
                street = street.split("区", 1)[-1] if "区" in street else street
            if not postcode:
                return street
            return rng.choice((f"{street} {postcode}", f"{street}（邮编{postcode}）"))
        return f"{street} {postcode}".strip() if postcode else street


def _valid(year: int, month: int, day: int) -> bool:
    try:
        date = dt.date(year, month, day)
    except ValueError:
        return False
    return dt.date(1900, 1, 2) <= date < REFERENCE_DATE


def _typo(word: str, rng: random.Random) -> str:
    at = rng.randrange(1, len(word))  # the first letter is rarely the one mistyped
    match rng.randrange(4):
        case 0:
            return word[:at] + rng.choice(string.ascii_lowercase) + word[at + 1 :]
        case 1:
            return word[:at] + word[at + 1 :]
        case 2:
            return word[:at] + rng.choice(string.ascii_lowercase) + word[at:]
        case _:
            if at + 1 < len(word):
                return word[:at] + word[at + 1] + word[at] + word[at + 2 :]
            return word[:at] + word[at - 1] + word[at:]  # a doubled letter


def _word_typo(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    long = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
    if not long:
        return text
    at = rng.choice(long)
    words[at] = _typo(words[at], rng)
    return " ".join(words)


def _han_typo(text: str, rng: random.Random) -> str:
    positions = [i for i, char in enumerate(text) if char in "".join(_CN_STREETS)]
    if not positions:
        return text
    at = rng.choice(positions)
    return text[:at] + rng.choice("华新东西南北中和平安") + text[at + 1 :]


def build(persons: int = DEFAULT_PERSONS, seed: int = DEFAULT_SEED,
          rates: WeakNoise | None = None) -> WeakSet:  # fmt: skip
    builder = _Builder(random.Random(seed), rates or WeakNoise())
    while len(builder.persons) < persons:
        builder.unit()
    del builder.persons[persons:]
    drafts: list[tuple[InputRow, str, frozenset[str]]] = []
    low, high = RECORDS_PER_PERSON
    for person in builder.persons:
        for _ in range(builder.rng.randint(low, high)):
            row, applied = builder.record(person)
            drafts.append((row, person.person_id, frozenset(applied)))
    builder.rng.shuffle(drafts)
    records = []
    serial: Counter[str] = Counter()
    for row, person_id, noise in drafts:
        serial[row.source] += 1
        keyed = InputRow(
            source=row.source,
            source_id=f"{row.source[:2].upper()}{serial[row.source]:08d}",
            full_name=row.full_name,
            birth_date=row.birth_date,
            gender=row.gender,
            address=row.address,
        )
        records.append(GeneratedRecord(keyed, person_id, noise))
    return WeakSet(records, builder.persons, builder.applied, builder.opportunities, seed)


def generate(persons: int = DEFAULT_PERSONS,
             seed: int = DEFAULT_SEED) -> tuple[list[InputRow], dict[RecordKey, str]]:  # fmt: skip
    weak = build(persons, seed)
    return weak.rows, weak.truth


def write_csv(directory: Path, persons: int = DEFAULT_PERSONS, seed: int = DEFAULT_SEED) -> WeakSet:
    """Write `directory/records.csv` and `directory/truth.csv`; returns the set written."""
    directory.mkdir(parents=True, exist_ok=True)
    weak = build(persons, seed)
    write_records(directory / "records.csv", weak.rows)
    write_grouping(directory / "truth.csv", weak.truth, "person_id")
    return weak


def summary(weak: WeakSet) -> str:
    lines = [
        f"{len(weak.records)} records of {len(weak.persons)} persons (seed {weak.seed}), "
        f"{sum(1 for p in weak.persons if p.household)} in households, "
        f"{sum(1 for p in weak.persons if p.twin_of)} twins",
        "noise kind                  applied / opportunities   observed",
    ]
    for kind in NOISE_KINDS:
        lines.append(
            f"  {kind:<24} {weak.applied[kind]:>7} / {weak.opportunities[kind]:<7}"
            f"        {weak.observed_rate(kind):7.4f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m zhike_identity_evaluation.weak",
        description="Write a weak-identifier evaluation set: records.csv and truth.csv.",
    )
    parser.add_argument("--persons", type=int, default=DEFAULT_PERSONS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out", type=Path, required=True, help="directory to write into")
    args = parser.parse_args(argv)
    weak = write_csv(args.out, args.persons, args.seed)
    sys.stdout.write(summary(weak) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
