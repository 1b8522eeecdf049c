"""The Splink baseline: one probabilistic model, configured up front, run on a `resolve-csv` input.

Preparation (pandas, the kind of cleaning a Splink user writes before linking; no knowledge of the
truth and nothing tuned on it):
- `name_key`: traditional → simplified (OpenCC), Hanzi → pinyin (first character as the surname),
  Latin names lower-cased and split on spaces and commas; the tokens are sorted, so 刘建军,
  劉建軍, LIU JIANJUN, Jianjun Liu and LIU,JIANJUN all become "jianjun liu". FEBRL names pass
  through lower-cased and sorted.
- `id_key`: spaces removed, upper-case (no 15 → 18 digit conversion: that is Zhike's domain
  knowledge); `phone_key`: digits only, a leading 0086/86 country code dropped; `email_key`:
  trimmed and lower-cased; `dob`: any Y-M-D form (1980-05-03, 19800503, 1980/5/3, 1980年5月3日)
  as YYYYMMDD; `gender_key`: M/F from M/F, 男/女, 1/2; `address_key`: NFKC (full-width digits),
  lower-case, no spaces; `postcode`: a trailing 4–6 digit number of the address, if any.
  Placeholder values (00000000000, test@test.com) are not removed: Splink's term-frequency
  adjustments are what down-weights them.

Model (`dedupe_only` over all records): comparisons name_key (Jaro-Winkler 0.92/0.80, with term
frequencies), id_key (Damerau-Levenshtein 1/2), dob (Damerau-Levenshtein 1/2), phone_key and
email_key (exact, with term frequencies), address_key (Jaro-Winkler 0.95/0.85), gender_key
(exact). Blocking for predictions: id_key; phone_key; email_key; name_key + dob; dob;
name_key + postcode. Training: λ from deterministic rules (id_key, name_key + dob) at an assumed
recall of 0.7; u by random sampling (1e6 pairs, seed 1); m by EM blocked on name_key + dob and then
on id_key (skipped when no two records share an ID number). Decision: pairs at match probability ≥ 0.9, clustered by connected components — the
threshold is fixed in advance, not chosen on the truth.
"""

from __future__ import annotations

import csv
import logging
import re
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MATCH_PROBABILITY = 0.9
_HAN = re.compile(r"[\u3400-\u9fff]")
_DATE = re.compile(r"(\d{4})\D?(\d{1,2})\D?(\d{1,2})")
_POSTCODE = re.compile(r"(?:^|\s)(\d{4,6})$")
_GENDER = {"m": "M", "male": "M", "男": "M", "1": "M", "f": "F", "female": "F", "女": "F", "2": "F"}


@dataclass(frozen=True)
class SplinkRun:
    records: int
    seconds: float
    predicted_pairs_above_threshold: int

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


class _Keys:
    """Key builders for the preparation step (pinyin and OpenCC are loaded once per run)."""

    def __init__(self) -> None:
        from opencc import OpenCC  # type: ignore[import-untyped]
        from pypinyin import Style, lazy_pinyin

        self._simplify = OpenCC("t2s").convert
        self._lazy_pinyin = lazy_pinyin
        self._style = Style.NORMAL

    def name(self, raw: str) -> str | None:
        text = unicodedata.normalize("NFKC", raw).strip()
        if not text:
            return None
        if _HAN.search(text):
            han = "".join(_HAN.findall(self._simplify(text)))
            syllables = self._lazy_pinyin(han, style=self._style)
            tokens = [syllables[0], "".join(syllables[1:])]
        else:
            tokens = re.split(r"[\s,]+", text.lower())
        return " ".join(sorted(token for token in tokens if token)) or None


def _id_key(raw: str) -> str | None:
    return re.sub(r"\s+", "", raw).upper() or None


def _phone_key(raw: str) -> str | None:
    digits = re.sub(r"\D", "", raw)
    if digits.startswith("0086"):
        digits = digits[4:]
    elif digits.startswith("86") and len(digits) >= 12:
        digits = digits[2:]
        if not digits.startswith("1"):
            digits = "0" + digits  # a landline written as +86 10 …
    return digits or None


def _email_key(raw: str) -> str | None:
    return raw.strip().lower() or None


def _dob(raw: str) -> str | None:
    match = _DATE.search(raw)
    if match is None:
        return None
    year, month, day = match.groups()
    return f"{year}{int(month):02d}{int(day):02d}"


def _gender_key(raw: str) -> str | None:
    return _GENDER.get(raw.strip().lower())


def _address_key(raw: str) -> str | None:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", raw).lower()) or None


def _postcode(raw: str) -> str | None:
    match = _POSTCODE.search(raw.strip())
    return match.group(1) if match else None


def prepare(records_csv: Path) -> list[dict[str, str | None]]:
    """The records of a `resolve-csv` input with the baseline's derived keys."""
    keys = _Keys()
    prepared: list[dict[str, str | None]] = []
    with records_csv.open(encoding="utf-8", newline="") as file:
        for line in csv.DictReader(file):
            value = {column: (text or "") for column, text in line.items()}
            prepared.append(
                {
                    "unique_id": f"{value['source']}|{value['source_id']}",
                    "name_key": keys.name(value.get("full_name", "")),
                    "id_key": _id_key(value.get("id_number", "")),
                    "phone_key": _phone_key(value.get("phone", "")),
                    "email_key": _email_key(value.get("email", "")),
                    "dob": _dob(value.get("birth_date", "")),
                    "gender_key": _gender_key(value.get("gender", "")),
                    "address_key": _address_key(value.get("address", "")),
                    "postcode": _postcode(value.get("address", "")),
                }
            )
    return prepared


def _settings() -> Any:
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="unique_id",
        comparisons=[
            cl.JaroWinklerAtThresholds("name_key", [0.92, 0.8]).configure(
                term_frequency_adjustments=True
            ),
            cl.DamerauLevenshteinAtThresholds("id_key", [1, 2]),
            cl.DamerauLevenshteinAtThresholds("dob", [1, 2]),
            cl.ExactMatch("phone_key").configure(term_frequency_adjustments=True),
            cl.ExactMatch("email_key").configure(term_frequency_adjustments=True),
            cl.JaroWinklerAtThresholds("address_key", [0.95, 0.85]),
            cl.ExactMatch("gender_key"),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("id_key"),
            block_on("phone_key"),
            block_on("email_key"),
            block_on("name_key", "dob"),
            block_on("dob"),
            block_on("name_key", "postcode"),
        ],
        retain_intermediate_calculation_columns=False,
        retain_matching_columns=False,
    )


def run(records_csv: Path, output_csv: Path) -> SplinkRun:
    """Resolve `records_csv` with the baseline; writes `source,source_id,party_id`."""
    import pandas as pd  # type: ignore[import-untyped]
    from splink import DuckDBAPI, Linker, block_on

    started = time.perf_counter()
    frame = pd.DataFrame.from_records(prepare(records_csv))
    db_api = DuckDBAPI()
    linker = Linker(db_api.register(frame), _settings(), log_level=logging.WARNING)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("id_key"), block_on("name_key", "dob")], recall=0.7
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=1)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("name_key", "dob"))
    if frame["id_key"].dropna().duplicated().any():
        # A set without ID numbers (the weak-identifier set) has no pairs to train on here:
        # Splink refuses an EM session without pairs, and id_key's m keeps its default.
        linker.training.estimate_parameters_using_expectation_maximisation(block_on("id_key"))
    predictions = linker.inference.predict(threshold_match_probability=MATCH_PROBABILITY)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predictions, threshold_match_probability=MATCH_PROBABILITY
    )
    above = int(predictions.as_duckdbpyrelation().count("*").fetchall()[0][0])
    assigned: dict[str, str] = dict(
        clusters.as_duckdbpyrelation().select("unique_id, cluster_id").fetchall()
    )
    seconds = time.perf_counter() - started
    with output_csv.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(("source", "source_id", "party_id"))
        for unique_id in frame["unique_id"]:
            source, source_id = str(unique_id).split("|", 1)
            writer.writerow((source, source_id, assigned[unique_id]))
    return SplinkRun(records=len(frame), seconds=seconds, predicted_pairs_above_threshold=above)
