"""A dead letter a service parks itself through its outbox carries the headers `zhike dlq list`
reads, and an event's own headers never replace those the outbox sets."""

from __future__ import annotations

import pytest
from google.protobuf.wrappers_pb2 import StringValue

from zhike_runtime.events import headers as h
from zhike_runtime.events.dead_letters import dead_letter_event
from zhike_runtime.events.outbox import OutgoingEvent


def test_a_parked_letter_names_its_consumer_subject_deliveries_and_error_code() -> None:
    letter = dead_letter_event(
        "billing-dispatch",
        "zhike.billing.v1.redispatch",
        StringValue(value="n-1"),
        deliveries=3,
        last_error="http_400",
    )

    assert letter.subject == "zhike.dlq.billing-dispatch"
    assert dict(letter.headers) == {
        h.ORIGINAL_SUBJECT: "zhike.billing.v1.redispatch",
        h.CONSUMER: "billing-dispatch",
        h.DELIVERIES: "3",
        h.LAST_ERROR: "http_400",
    }


def test_a_value_in_the_error_is_masked() -> None:
    letter = dead_letter_event(
        "billing-dispatch",
        "zhike.billing.v1.redispatch",
        StringValue(value="n-1"),
        deliveries=1,
        last_error="refused +8613671829305",
    )

    assert "13671829305" not in letter.headers[h.LAST_ERROR]


@pytest.mark.parametrize("header", [h.MSG_ID, h.EVENT_ID, h.EVENT_TYPE])
def test_an_event_may_not_set_a_header_the_outbox_sets(header: str) -> None:
    with pytest.raises(ValueError, match=header):
        OutgoingEvent("zhike.billing.v1.x", StringValue(value="n-1"), headers={header: "forged"})
