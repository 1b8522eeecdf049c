"""Constant tables for Chinese names: surnames, their readings, and the pinyin syllable inventory.

Plain data only; anything derived from them with pypinyin is computed lazily (see `chinese.py`).
"""

from __future__ import annotations

# The 300 most common Chinese surnames, roughly in the order of the 2020 census ranking (simplified
# Hanzi). Used for one thing: deciding the order of a name written in Latin letters ("Jianjun Liu"
# has its surname last because "liu" is a surname and "jianjun" is not).
COMMON_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏"
    "吕丁任沈姚卢姜崔钟谭陆汪范金洪赖石廖贾夏韦付傅方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚"
    "邵万钱严覃武戴莫孔向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘"
    "祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾"
    "尤阳时穆农司卓古吉缪简车项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟应臧闵苟邬边卞姬师"
    "和仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩明佘池查麻苑迟邝官封谈匡鞠惠荆乐冀郁胥南班储原栗燕楚鄢劳"
    "谌奚皮粟冼蔺楼盘满闻位厉伊仝区郜海阚花权强帅屠豆"
)

# Characters whose reading as a surname differs from pypinyin's default reading of the character
# alone (单 is "dan" in 简单 but "shan" as a surname). Only applied to the surname position.
SPECIAL_READINGS: dict[str, str] = {
    "单": "shan",
    "曾": "zeng",
    "解": "xie",
    "区": "ou",
    "仇": "qiu",
    "朴": "piao",
    "查": "zha",
    "盖": "ge",
    "乐": "yue",
    "覃": "qin",
    "员": "yun",
    "繁": "po",
    "缪": "miao",
    "翟": "zhai",
    "种": "chong",
    "秘": "bi",
    "召": "shao",
    "宓": "fu",
    "逄": "pang",
    "相": "xiang",
    "沈": "shen",
    "重": "chong",
    "折": "she",
    "黑": "he",
    "华": "hua",
    "长": "chang",
    "卜": "bu",
    "都": "du",
    "阚": "kan",
    "薄": "bo",
    "粘": "nian",
    "佴": "nai",
    "隗": "wei",
    "句": "gou",
    "能": "nai",
    "牟": "mu",
    "么": "yao",
    "乜": "nie",
    "炅": "gui",
    "角": "jue",
    "尉": "wei",
    "万": "wan",
}

# Two-character surnames with their readings as surnames (尉迟 is "yuchi", not "weichi"). Only
# those unlikely to be a one-character surname followed by a given name are listed: 梁丘 and 乐正
# are left out because 梁 and 乐 are common surnames and 丘/正 common first given-name characters.
COMPOUND_SURNAMES: dict[str, tuple[str, str]] = {
    "欧阳": ("ou", "yang"),
    "司马": ("si", "ma"),
    "诸葛": ("zhu", "ge"),
    "上官": ("shang", "guan"),
    "皇甫": ("huang", "fu"),
    "令狐": ("ling", "hu"),
    "东方": ("dong", "fang"),
    "慕容": ("mu", "rong"),
    "司徒": ("si", "tu"),
    "夏侯": ("xia", "hou"),
    "尉迟": ("yu", "chi"),
    "长孙": ("zhang", "sun"),
    "公孙": ("gong", "sun"),
    "宇文": ("yu", "wen"),
    "澹台": ("tan", "tai"),
    "端木": ("duan", "mu"),
    "轩辕": ("xuan", "yuan"),
    "呼延": ("hu", "yan"),
    "南宫": ("nan", "gong"),
    "西门": ("xi", "men"),
    "太史": ("tai", "shi"),
    "独孤": ("du", "gu"),
    "万俟": ("mo", "qi"),
    "闻人": ("wen", "ren"),
    "赫连": ("he", "lian"),
    "宗政": ("zong", "zheng"),
    "濮阳": ("pu", "yang"),
    "公冶": ("gong", "ye"),
    "申屠": ("shen", "tu"),
    "钟离": ("zhong", "li"),
    "鲜于": ("xian", "yu"),
    "司空": ("si", "kong"),
    "闾丘": ("lv", "qiu"),
    "拓跋": ("tuo", "ba"),
    "百里": ("bai", "li"),
    "东郭": ("dong", "guo"),
    "第五": ("di", "wu"),
    "羊舌": ("yang", "she"),
    "公羊": ("gong", "yang"),
    "仲孙": ("zhong", "sun"),
    "巫马": ("wu", "ma"),
    "亓官": ("qi", "guan"),
    "漆雕": ("qi", "diao"),
    "谷梁": ("gu", "liang"),
    "段干": ("duan", "gan"),
    "左丘": ("zuo", "qiu"),
}

# Surnames as Hong Kong, Macau, Taiwan and overseas records spell them (Cantonese, Wade-Giles).
# They only help decide the order of a Latin-script name ("Siu Ming Chan"); they are not
# converted to pinyin, because "Chan" may be 陈 or 曾 and guessing would invent agreement.
_ROMANISED_SURNAMES = """
    chan wong cheung leung lau ng chow tsang yip kwok tse chiu tsui hui yeung fung mak kwan chung
    yuen lee lam ho tam choi lo so to au poon law tsai hsu hsieh kuo chien chiang chuang tseng
    tsao teng kao hsiao shih
"""
ROMANISED_SURNAMES: frozenset[str] = frozenset(_ROMANISED_SURNAMES.split())

# Every syllable of standard Mandarin in pypinyin's Style.NORMAL spelling (ü written "v"), taken
# from pypinyin's own dictionary, without the interjections "m", "n", "ng", "hm" and "hng": those
# would let almost any Latin string "split" into syllables.
_PINYIN_SYLLABLES = """
    a ai an ang ao ba bai ban bang bao bei ben beng bi bian biang biao bie bin bing bo bong bu ca
    cai can cang cao ce cei cen ceng cha chai chan chang chao che chen cheng chi chong chou chu
    chua chuai chuan chuang chui chun chuo ci cong cou cu cuan cui cun cuo da dai dan dang dao de
    dei den deng di dia dian diao die din ding diu dong dou du duan dui dun duo e ei en eng er fa
    fan fang fei fen feng fiao fo fou fu ga gai gan gang gao ge gei gen geng gong gou gu gua guai
    guan guang gui gun guo ha hai han hang hao he hei hen heng hong hou hu hua huai huan huang hui
    hun huo ji jia jian jiang jiao jie jin jing jiong jiu ju juan jue jun ka kai kan kang kao ke
    kei ken keng kong kou ku kua kuai kuan kuang kui kun kuo la lai lan lang lao le lei len leng
    li lia lian liang liao lie lin ling liu lo long lou lu luan lun luo lv lve ma mai man mang mao
    me mei men meng mi mian miao mie min ming miu mo mou mu na nai nan nang nao ne nei nen neng ni
    nia nian niang niao nie nin ning niu nong nou nu nuan nun nuo nv nve o ou pa pai pan pang pao
    pei pen peng pi pian piao pie pin ping po pou pu qi qia qian qiang qiao qie qin qing qiong qiu
    qu quan que qun ran rang rao re ren reng ri rong rou ru rua ruan rui run ruo sa sai san sang
    sao se sen seng sha shai shan shang shao she shei shen sheng shi shou shu shua shuai shuan
    shuang shui shun shuo si song sou su suan sui sun suo ta tai tan tang tao te tei teng ti tian
    tiao tie ting tong tou tu tuan tui tun tuo wa wai wan wang wei wen weng wo wong wu xi xia xian
    xiang xiao xie xin xing xiong xiu xu xuan xue xun ya yan yang yao ye yi yin ying yo yong you
    yu yuan yue yun za zai zan zang zao ze zei zen zeng zha zhai zhan zhang zhao zhe zhei zhen
    zheng zhi zhong zhou zhu zhua zhuai zhuan zhuang zhui zhun zhuo zi zong zou zu zuan zui zun
    zuo
"""
PINYIN_SYLLABLES: frozenset[str] = frozenset(_PINYIN_SYLLABLES.split())
