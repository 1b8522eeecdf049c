"""Normalisation of source-record values into comparable evidence.

Pure functions: each either returns a normal form or raises `Unusable` with a reason from
`REASONS`, never anything else, whatever text it is given (property-tested with Hypothesis).
OpenCC and pypinyin are loaded on first use, not at import; `warm_up()` loads them at a
service's start-up instead.
"""

from zhike_identity.domain.normalise.addresses import Address, normalise_address
from zhike_identity.domain.normalise.chinese import warm_up
from zhike_identity.domain.normalise.dates import parse_date, parse_gender
from zhike_identity.domain.normalise.emails import normalise_email
from zhike_identity.domain.normalise.errors import REASONS, Unusable
from zhike_identity.domain.normalise.ids import KINDS, IdentityDocument, infer_id_kind, normalise_id
from zhike_identity.domain.normalise.names import PersonName, name_pinyin_initials, normalise_name
from zhike_identity.domain.normalise.phones import Phone, normalise_phone
from zhike_identity.domain.normalise.text import is_placeholder

__all__ = [
    "KINDS",
    "REASONS",
    "Address",
    "IdentityDocument",
    "PersonName",
    "Phone",
    "Unusable",
    "infer_id_kind",
    "is_placeholder",
    "name_pinyin_initials",
    "normalise_address",
    "normalise_email",
    "normalise_id",
    "normalise_name",
    "normalise_phone",
    "parse_date",
    "parse_gender",
    "warm_up",
]
