"""The profile's assessments of a party, pure and explained: totals in CNY at dated FX rates,
the bank-wide tier and its entitlements, the customer value model, segments from declarative
rules, and the risk level's validity; `changes` lists what changed between two assessments.

No I/O and no clock: `PartyFacts.as_of` is "today", and the configuration comes in as a value
(`zhike_profile.config.load_assessment_config` reads the files).
"""

from zhike_profile.domain.assessment.assessment import Assessment, assess
from zhike_profile.domain.assessment.changes import (
    AgeChanged,
    Change,
    RiskLevelChanged,
    RiskLevelExpired,
    SegmentEntered,
    SegmentLeft,
    TierChanged,
    ValueBandChanged,
    changes,
)
from zhike_profile.domain.assessment.config import (
    AssessmentConfig,
    AssessmentConfigError,
    ConfigProblem,
    parse_config,
)
from zhike_profile.domain.assessment.money import FxRate, FxRateMissing, FxRates
from zhike_profile.domain.assessment.risk import RiskStatus, RiskView
from zhike_profile.domain.assessment.segments import Segment
from zhike_profile.domain.assessment.tier import Entitlement, TierResult
from zhike_profile.domain.assessment.totals import Totals
from zhike_profile.domain.assessment.value import Contribution, CustomerValue, Rfm

__all__ = [
    "AgeChanged",
    "Assessment",
    "AssessmentConfig",
    "AssessmentConfigError",
    "Change",
    "ConfigProblem",
    "Contribution",
    "CustomerValue",
    "Entitlement",
    "FxRate",
    "FxRateMissing",
    "FxRates",
    "Rfm",
    "RiskLevelChanged",
    "RiskLevelExpired",
    "RiskStatus",
    "RiskView",
    "Segment",
    "SegmentEntered",
    "SegmentLeft",
    "TierChanged",
    "TierResult",
    "Totals",
    "ValueBandChanged",
    "assess",
    "changes",
    "parse_config",
]
