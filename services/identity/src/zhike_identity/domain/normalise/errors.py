"""The one error every normaliser raises, and the fixed set of reasons it may carry."""

from __future__ import annotations

# Each reason names *why* a value cannot serve as evidence, so that callers can count and report
# rejections by kind (and the matching engine can treat "placeholder" differently from a typo).
REASONS: frozenset[str] = frozenset(
    {
        "empty",  # nothing but whitespace
        "placeholder",  # a known junk value: 无, 不详, null, 00000000000, test@test.com, 1900-01-01
        "too_long",  # longer than any real value of its kind (also guards against 100 KB inputs)
        "too_short",  # an address with nothing left once province and city are taken off
        "bad_characters",  # characters that cannot occur in this kind of value (digits in a name)
        "bad_length",  # the right characters but the wrong number of them
        "bad_date",  # a date (or a resident ID's date part) that is not a calendar date
        "out_of_range",  # a real date in the future or more than 150 years ago
        "unknown_format",  # none of the accepted layouts
        "not_a_name",  # no letters at all: only punctuation or symbols
        "unknown_kind",  # an identity document kind outside the six known ones
        "no_area_code",  # a landline number given without its area code
        "unallocated",  # a phone number of a possible length in no range its plan allocates
        "service_number",  # a company's toll-free, shared-cost or premium-rate phone number
        "unknown_country",  # a phone number's country code is no country's
    }
)


class Unusable(ValueError):
    """A value that cannot serve as evidence. `reason` is one of REASONS; `detail` says more."""

    reason: str
    detail: str

    def __init__(self, reason: str, detail: str = "") -> None:
        if reason not in REASONS:
            # A programming error in a normaliser, not bad input: fail loudly in tests.
            raise ValueError(f"unknown Unusable reason {reason!r}")
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
