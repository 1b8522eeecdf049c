"""Postal addresses: a comparison form that does not care whether the province and city are
written, how digits are typed, or where the spaces and punctuation fall.

"广东省深圳市南山区科苑路15号", "深圳市南山区科苑路 15 号" and "南山区科苑路１５号" all become
"南山区科苑路15号"; the province and city are kept apart for the matcher to compare when both
records have them. Latin-script addresses are compared as lower-case words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from zhike_identity.domain.normalise.chinese import HAN, simplified
from zhike_identity.domain.normalise.errors import Unusable
from zhike_identity.domain.normalise.text import clean, is_placeholder

MAX_ADDRESS_LENGTH = 500

_PROVINCES = """
河北 山西 辽宁 吉林 黑龙江 江苏 浙江 安徽 福建 江西 山东 河南 湖北 湖南 广东 海南 四川 贵州 云南 陕西
甘肃 青海 台湾
"""
# Provincial-level divisions by short name, with the suffix each officially takes.
_PROVINCE_SUFFIXES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("北京", "天津", "上海", "重庆"), ("市",)),
    **dict.fromkeys(("香港", "澳门"), ("特别行政区",)),
    "内蒙古": ("自治区",),
    "广西": ("壮族自治区", "自治区"),
    "西藏": ("自治区",),
    "宁夏": ("回族自治区", "自治区"),
    "新疆": ("维吾尔自治区", "自治区"),
    **dict.fromkeys(_PROVINCES.split(), ("省",)),
}
# Where the province and the city are one: the city is the province.
_CITY_PROVINCES = frozenset({"北京", "天津", "上海", "重庆", "香港", "澳门"})

# Prefecture-level cities often written without their 市 ("广东深圳南山区…"), with their province
# so that one can be filled in from the other. Cities written with 市 need no table.
_CITY_TO_PROVINCE: dict[str, str] = {
    city: province
    for province, cities in {
        "广东": "广州 深圳 珠海 汕头 佛山 东莞 中山 惠州 江门 湛江 茂名 肇庆 梅州 汕尾 河源 阳江 清远 "
        "潮州 揭阳 云浮 韶关",
        "江苏": "南京 苏州 无锡 常州 镇江 扬州 泰州 南通 盐城 淮安 宿迁 徐州 连云港",
        "浙江": "杭州 宁波 温州 嘉兴 湖州 绍兴 金华 衢州 舟山 台州 丽水",
        "山东": "济南 青岛 烟台 潍坊 淄博 临沂 济宁 泰安 威海 日照 德州 聊城 滨州 菏泽 枣庄 东营",
        "河南": "郑州 洛阳 开封 南阳 新乡 安阳 许昌 平顶山 焦作 商丘 信阳 周口 驻马店",
        "湖北": "武汉 宜昌 襄阳 荆州 黄石 十堰 孝感 黄冈",
        "湖南": "长沙 株洲 湘潭 衡阳 岳阳 常德 郴州",
        "四川": "成都 绵阳 德阳 宜宾 泸州 南充 乐山",
        "福建": "福州 厦门 泉州 漳州 莆田",
        "安徽": "合肥 芜湖 蚌埠 安庆 马鞍山",
        "江西": "南昌 九江 赣州",
        "河北": "石家庄 唐山 保定 邯郸 廊坊 秦皇岛 沧州 邢台",
        "山西": "太原 大同",
        "辽宁": "沈阳 大连 鞍山 抚顺",
        "吉林": "长春",
        "黑龙江": "哈尔滨 大庆 齐齐哈尔",
        "陕西": "西安 宝鸡 咸阳",
        "甘肃": "兰州",
        "青海": "西宁",
        "宁夏": "银川",
        "新疆": "乌鲁木齐",
        "西藏": "拉萨",
        "内蒙古": "呼和浩特 包头 鄂尔多斯",
        "广西": "南宁 柳州 桂林 北海",
        "海南": "海口 三亚",
        "贵州": "贵阳 遵义",
        "云南": "昆明",
    }.items()
    for city in cities.split()
}


def _alternation(names: Iterable[str]) -> str:
    # Longest first, so that "内蒙古" is tried before a shorter name it starts with.
    return "|".join(sorted(names, key=len, reverse=True))


_PROVINCE = re.compile(
    f"({_alternation(_PROVINCE_SUFFIXES)})"
    f"({_alternation({s for suffixes in _PROVINCE_SUFFIXES.values() for s in suffixes} | {'市'})})?"
)
# "XX市", "XX自治州", "XX地区", "XX盟" at the start: a prefecture. The name may not contain the
# characters that end a district or a street, so "高新区市民中心" is not the city "高新区".
_NOT_IN_CITY_NAME = "0-9a-z区县市路街道镇乡村号巷弄省州"
_CITY = re.compile(
    f"([^{_NOT_IN_CITY_NAME}]{{2,4}}?)市|([^{_NOT_IN_CITY_NAME}]{{2,10}}?)(?:自治州|地区|盟)"
)
_BARE_CITY = re.compile(f"({_alternation(_CITY_TO_PROVINCE)})")
# What may follow a province or city written without its suffix: a place name, not a street
# ("北京朝阳区" is Beijing; "北京西路" and "中山路" are streets).
_DISTRICT_AHEAD = re.compile("[^路街道巷弄号0-9]{1,8}?[市区县州盟旗]")
_NOT_A_PLACE_START = frozenset("市区县州盟旗路街道巷弄号大")
_MUNICIPAL_DISTRICTS = re.compile("(?:市辖区|市辖县)")
_POSTCODE_LABELLED = re.compile(
    r"[(\[]?(?:邮编|邮政编码|邮码|postcode|postal ?code|zip ?code|zip)[: ]*([0-9]{6})(?![0-9])[)\]]?",
    re.IGNORECASE,
)
_POSTCODE_FIRST = re.compile(r"^[(\[]?([0-9]{6})(?![0-9])[)\]]?")
_POSTCODE_LAST = re.compile(r"(?<![0-9])[(\[]?([0-9]{6})[)\]]?[ .,;。，；]*$")
# Addresses abroad (Latin script): a trailing group of 4 or 5 digits is the postcode of most
# countries that use digits (Australia 2000, the United States and Germany 10115).
_POSTCODE_LAST_ABROAD = re.compile(r"(?<![0-9])([0-9]{4,5})[ .,;]*$")
_WORD = re.compile(r"[^\W_]+")
_ADDRESS_PLACEHOLDERS = frozenset(
    {"地址不详", "不详地址", "无地址", "同上", "见身份证", "同身份证", "同户籍地址", "地址"}
)


@dataclass(frozen=True)
class Address:
    text: str  # comparison form: no spaces/punctuation, province and city prefixes removed
    province: str | None  # "北京", "广东" (no 省/市/自治区 suffix) when present
    city: str | None  # "北京", "深圳" when present
    postcode: str | None  # 6 digits when present (4 or 5 in an address abroad)
    tokens: tuple[str, ...]  # overlapping bigrams of `text`, or the words of a Latin address


def normalise_address(raw: str) -> Address:
    text = clean(raw)
    if not text:
        raise Unusable("empty")
    if len(text) > MAX_ADDRESS_LENGTH:
        raise Unusable("too_long", f"{len(text)} characters")
    if is_placeholder(text) or text.replace(" ", "") in _ADDRESS_PLACEHOLDERS:
        raise Unusable("placeholder")
    postcode = None
    patterns = [_POSTCODE_LABELLED, _POSTCODE_FIRST, _POSTCODE_LAST]
    if not HAN.search(text):
        patterns.append(_POSTCODE_LAST_ABROAD)
    for pattern in patterns:
        match = pattern.search(text)
        if match:
            postcode = match[1]
            text = text[: match.start()] + " " + text[match.end() :]
            break
    if HAN.search(text):
        compact = "".join(char for char in simplified(text.lower()) if char.isalnum())
        province, city, rest = _strip_region(compact)
        if not rest:
            raise Unusable("too_short", "names only a province or city")
        tokens = tuple(rest[i : i + 2] for i in range(len(rest) - 1)) or (rest,)
        return Address(rest, province, city, postcode, tokens)
    words = tuple(_WORD.findall(text.lower()))
    rest = "".join(words)
    if len(rest) < 2:
        raise Unusable("too_short", "no address left")
    return Address(rest, None, None, postcode, words)


def _strip_region(text: str) -> tuple[str | None, str | None, str]:
    province = city = None
    match = _PROVINCE.match(text)
    if match:
        short, suffix = match[1], match[2]
        rest = text[match.end() :]
        # 吉林市 is a city in 吉林省; only the four municipalities take 市 as a province.
        proper_suffix = suffix is not None and (suffix != "市" or short in _CITY_PROVINCES)
        if proper_suffix or (suffix is None and _place_follows(rest, strict=True)):
            province, text = short, rest
    if province in _CITY_PROVINCES:
        city = province
        # "北京市北京市朝阳区" (province and city both written out) and "市辖区" from official lists.
        text = text.removeprefix(f"{province}市")
    else:
        match = _CITY.match(text)
        if match:
            city, text = match[1] or match[2], text[match.end() :]
        else:
            match = _BARE_CITY.match(text)
            if match and _place_follows(text[match.end() :], strict=False):
                city, text = match[1], text[match.end() :]
        if city is not None and province is None:
            province = _CITY_TO_PROVINCE.get(city)
    if _MUNICIPAL_DISTRICTS.match(text):
        text = text[3:]
    return province, city, text


def _place_follows(rest: str, *, strict: bool) -> bool:
    """Whether `rest` starts with a place name, so the name before it was a province or city.

    Strict (after a province): a city, county or district must come before any street.
    Lenient (after a city): anything but a street or district suffix ("广州天河路" is Guangzhou).
    """
    if not rest or rest[0] in _NOT_A_PLACE_START:
        return False
    if not strict:
        return True
    return bool(_DISTRICT_AHEAD.match(rest) or _BARE_CITY.match(rest))
