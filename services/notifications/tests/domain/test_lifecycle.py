"""A notification's status: facts arriving in any order, duplicated or late, end in the record
of in-order arrival; a late receipt never undoes a delivery; a withdrawal cancels only what has
not gone out; the gates' verdicts apply only over the version they read."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from zhike_notifications.domain.lifecycle import (
    ALLOWED,
    Deferred,
    Event,
    Fact,
    Receipt,
    ReceiptKind,
    RetriesExhausted,
    RetryScheduled,
    SendOutcome,
    SendResult,
    Suppressed,
    Withdrawal,
    apply,
    can_move,
    redispatch,
)
from zhike_notifications.domain.model import (
    Category,
    Channel,
    GiveUpReason,
    Notification,
    Status,
    Suppression,
    SuppressionReason,
)

T0 = dt.datetime(2026, 3, 17, 2, 0, tzinfo=dt.UTC)
DECISION = "0b7e4a52-1c1f-4a8e-9d0e-6f1a2b3c4d01"


def fresh() -> Notification:
    return Notification(
        notification_id="n-1",
        party_id="p-1",
        channel=Channel.SMS,
        category=Category.MARKETING,
        template_id="offer_usd_fx_wealth_sms_v1",
        created_at=T0,
        decision_id=DECISION,
        offer_id="usd_fx_wealth",
    )


def at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def run(*events: Event, start: Notification | None = None) -> Notification:
    notification = start or fresh()
    for event in events:
        notification = apply(notification, event).notification
    return notification


ACCEPTED = SendResult(1, "sms-a", SendOutcome.ACCEPTED, at(1), provider_message_id="m-1")
DELIVERED = Receipt(ReceiptKind.DELIVERED, at(2))
WITHDRAWN = Withdrawal(DECISION, at(3))


def test_a_late_receipt_never_moves_delivered_back() -> None:
    delivered = run(ACCEPTED, DELIVERED)
    assert delivered.status is Status.DELIVERED
    # The send result committed after the receipt (a webhook faster than our commit).
    assert run(DELIVERED, ACCEPTED).status is Status.DELIVERED
    # A duplicate or an undeliverable receipt afterwards changes the status no more.
    again = apply(delivered, DELIVERED)
    assert (again.changed, again.notification) == (False, delivered)
    assert run(Receipt(ReceiptKind.UNDELIVERED, at(9), "expired"), start=delivered).status is (
        Status.DELIVERED
    )


def test_an_undeliverable_receipt_fails_a_sent_message() -> None:
    failed = run(ACCEPTED, Receipt(ReceiptKind.UNDELIVERED, at(5), "UNDELIV"))
    assert failed.status is Status.FAILED
    assert failed.undelivered is not None
    assert failed.undelivered.error == "UNDELIV"


@pytest.mark.parametrize("deferred", [False, True])
def test_a_withdrawal_cancels_a_queued_or_deferred_message(deferred: bool) -> None:
    start = fresh()
    if deferred:
        start = run(Deferred(at(600), over_version=1))
        assert start.status is Status.DEFERRED
    cancelled = run(WITHDRAWN, start=start)
    assert (cancelled.status, cancelled.cancelled_by) == (Status.CANCELLED, DECISION)
    assert cancelled.due_at() is None  # the dispatcher never picks it up again


def test_a_withdrawal_does_not_cancel_what_was_sent_or_suppressed() -> None:
    sent = run(ACCEPTED, WITHDRAWN)
    assert (sent.status, sent.cancelled_by, sent.withdrawn_by) == (Status.SENT, "", DECISION)
    suppressed = run(
        Suppressed(Suppression(SuppressionReason.FREQUENCY_CAP, "cap"), over_version=1), WITHDRAWN
    )
    assert suppressed.status is Status.SUPPRESSED


def test_a_send_that_raced_the_withdrawal_is_recorded_as_sent() -> None:
    assert run(WITHDRAWN, ACCEPTED).status is Status.SENT


def test_a_withdrawal_of_another_decision_is_a_bug_not_a_cancellation() -> None:
    with pytest.raises(ValueError, match="another decision"):
        apply(fresh(), Withdrawal("another", at(1)))


def test_a_transient_error_queues_a_retry_and_exhaustion_fails() -> None:
    retrying = run(
        SendResult(1, "sms-a", SendOutcome.TRANSIENT_ERROR, at(1), error="HTTP 503"),
        RetryScheduled(2, at(1), "sms-b"),
    )
    assert (retrying.status, retrying.next_attempt, retrying.due_at()) == (Status.QUEUED, 2, at(1))
    assert retrying.retry is not None
    assert retrying.retry.provider == "sms-b"
    failed = run(
        SendResult(2, "sms-b", SendOutcome.TRANSIENT_ERROR, at(2), error="HTTP 502"),
        RetriesExhausted(2, "HTTP 502", at(2)),
        start=retrying,
    )
    assert failed.status is Status.FAILED
    assert failed.gave_up is not None
    assert failed.gave_up.reason is GiveUpReason.RETRIES_EXHAUSTED
    assert failed.last_failure is not None
    assert failed.last_failure.error == "HTTP 502"


def test_a_permanent_error_fails_at_once() -> None:
    failed = run(SendResult(1, "sms-a", SendOutcome.PERMANENT_ERROR, at(1), error="BAD_NUMBER"))
    assert failed.status is Status.FAILED
    assert failed.gave_up is not None
    assert failed.gave_up.reason is GiveUpReason.PERMANENT_ERROR


def test_a_verdict_applies_only_over_the_version_it_read() -> None:
    withdrawn = run(WITHDRAWN)  # version 2
    stale = apply(withdrawn, Suppressed(Suppression(SuppressionReason.NO_CONSENT, "x"), 1))
    assert (stale.changed, stale.ignored) == (False, "stale: decided over version 1, now 2")
    assert stale.notification.status is Status.CANCELLED
    current = apply(withdrawn, Deferred(at(60), over_version=2))
    assert (current.changed, current.notification.status) == (False, Status.CANCELLED)
    assert current.ignored == "cancelled, sending has begun or ended"


def test_a_verdict_after_a_failed_attempt_whose_retry_is_not_planned_is_ignored() -> None:
    attempted = run(SendResult(1, "sms-a", SendOutcome.TRANSIENT_ERROR, at(1), error="503"))
    late = apply(attempted, Deferred(at(600), attempted.version))
    assert late.changed is False
    assert late.notification == attempted


RETRYING = (
    SendResult(1, "sms-a", SendOutcome.TRANSIENT_ERROR, at(1), error="http_503"),
    RetryScheduled(2, at(2), "sms-a"),
)


def test_a_deferral_of_a_planned_retry_holds_it_until_the_deferral_ends() -> None:
    retrying = run(*RETRYING)

    deferred = apply(retrying, Deferred(at(600), retrying.version)).notification

    assert (deferred.status, deferred.due_at(), deferred.next_attempt) == (
        Status.DEFERRED,
        at(600),
        2,
    )


def test_a_retry_planned_after_a_deferral_ran_out_is_due_at_its_own_time() -> None:
    deferred = run(Deferred(at(600), over_version=1))

    retrying = run(
        SendResult(1, "sms-a", SendOutcome.TRANSIENT_ERROR, at(600), error="http_503"),
        RetryScheduled(2, at(601), "sms-a"),
        start=deferred,
    )

    assert (retrying.status, retrying.due_at()) == (Status.QUEUED, at(601))


def test_a_refusal_of_a_planned_retry_suppresses_it() -> None:
    retrying = run(*RETRYING)
    refusal = Suppression(SuppressionReason.NO_CONSENT, "consent refused: sms/marketing")

    suppressed = apply(retrying, Suppressed(refusal, retrying.version)).notification

    assert (suppressed.status, suppressed.suppression, suppressed.due_at()) == (
        Status.SUPPRESSED,
        refusal,
        None,
    )


def test_a_deferral_moves_its_time_and_the_version_counts_changes() -> None:
    first = apply(fresh(), Deferred(at(60), over_version=1))
    second = apply(first.notification, Deferred(at(120), over_version=2))
    assert [first.notification.version, second.notification.version] == [2, 3]
    assert second.notification.deferred_until == at(120)
    duplicate = apply(second.notification, WITHDRAWN)
    assert apply(duplicate.notification, WITHDRAWN).changed is False
    assert duplicate.notification.version == 4


def test_the_transition_table_lets_nothing_leave_delivered() -> None:
    assert ALLOWED[Status.DELIVERED] == frozenset()
    assert not can_move(Status.SENT, Status.QUEUED)
    assert not can_move(Status.CANCELLED, Status.QUEUED)
    assert can_move(Status.DEFERRED, Status.CANCELLED)


# --- any order of the same facts -----------------------------------------------------------

MAX_ATTEMPTS = 4
PROVIDERS = ("sms-a", "sms-b")


def facts_only(notification: Notification) -> Notification:
    """The record without its change counter: the number of changes depends on the order."""
    return dataclasses.replace(notification, version=0)


class OutOfOrderDelivery(RuleBasedStateMachine):
    """Plays a dispatcher and a provider in causal order; every fact goes at once to one record
    and, whenever the machine decides, to a replica: late, out of order, several times. At the
    end the replica gets what is still pending, and both records must be the same."""

    def __init__(self) -> None:
        super().__init__()
        self.in_order = fresh()
        self.replica = fresh()
        self.pending: list[Fact] = []
        self.delivered: list[Fact] = []
        self.clock = 0
        self.attempts = 0
        self.awaiting_plan = False  # a transient error whose retry is not planned yet
        self.accepted = False
        self.gave_up = False

    @initialize(defer=st.booleans())
    def start(self, defer: bool) -> None:
        if defer:  # the gates deferred it before anything else happened: both read version 1
            verdict = Deferred(at(600), over_version=1)
            self.in_order = apply(self.in_order, verdict).notification
            self.replica = apply(self.replica, verdict).notification

    def emit(self, fact: Fact) -> None:
        self.clock += 1
        before = self.in_order.status
        self.in_order = apply(self.in_order, fact).notification
        assert can_move(before, self.in_order.status)
        self.pending.append(fact)

    @precondition(lambda self: not (self.accepted or self.gave_up or self.awaiting_plan))
    @rule(outcome=st.sampled_from(list(SendOutcome)))
    def send_result(self, outcome: SendOutcome) -> None:
        self.attempts += 1
        provider = PROVIDERS[(self.attempts - 1) % len(PROVIDERS)]
        message_id = f"m-{self.attempts}" if outcome is SendOutcome.ACCEPTED else ""
        error = "" if outcome is SendOutcome.ACCEPTED else f"E{self.attempts}"
        self.emit(SendResult(self.attempts, provider, outcome, at(self.clock), message_id, error))
        self.accepted = outcome is SendOutcome.ACCEPTED
        self.gave_up = outcome is SendOutcome.PERMANENT_ERROR
        self.awaiting_plan = outcome is SendOutcome.TRANSIENT_ERROR

    @precondition(lambda self: self.awaiting_plan)
    @rule()
    def retry(self) -> None:
        self.awaiting_plan = False
        if self.attempts >= MAX_ATTEMPTS:
            self.gave_up = True
            self.emit(RetriesExhausted(self.attempts, f"E{self.attempts}", at(self.clock)))
        else:
            provider = PROVIDERS[self.attempts % len(PROVIDERS)]
            self.emit(RetryScheduled(self.attempts + 1, at(self.clock + 5), provider))

    @precondition(lambda self: self.accepted)
    @rule(kind=st.sampled_from(list(ReceiptKind)))
    def receipt(self, kind: ReceiptKind) -> None:
        error = "" if kind is ReceiptKind.DELIVERED else "UNDELIV"
        self.emit(Receipt(kind, at(self.clock), error, f"m-{self.attempts}"))

    @rule()
    def withdrawal(self) -> None:
        self.emit(Withdrawal(DECISION, at(self.clock)))

    def deliver(self, fact: Fact) -> None:
        before = self.replica.status
        self.replica = apply(self.replica, fact).notification
        assert can_move(before, self.replica.status), (before, self.replica.status)

    @precondition(lambda self: self.pending)
    @rule(data=st.data())
    def deliver_one_pending(self, data: st.DataObject) -> None:
        fact = self.pending.pop(data.draw(st.integers(0, len(self.pending) - 1)))
        self.deliver(fact)
        self.delivered.append(fact)

    @precondition(lambda self: self.delivered)
    @rule(data=st.data())
    def deliver_a_duplicate(self, data: st.DataObject) -> None:
        self.deliver(self.delivered[data.draw(st.integers(0, len(self.delivered) - 1))])

    @invariant()
    def nothing_leaves_delivered(self) -> None:
        if any(isinstance(f, Receipt) and f.kind is ReceiptKind.DELIVERED for f in self.delivered):
            assert self.replica.status is Status.DELIVERED

    def teardown(self) -> None:
        for fact in reversed(self.pending):
            self.deliver(fact)
        assert facts_only(self.replica) == facts_only(self.in_order)


def test_any_order_of_the_same_facts_ends_in_the_in_order_record() -> None:
    run_state_machine_as_test(
        OutOfOrderDelivery,
        settings=settings(max_examples=300, stateful_step_count=30, deadline=None),
    )


def test_a_redispatch_queues_a_permanent_failure_again_with_its_send_facts_cleared() -> None:
    failed = run(SendResult(1, "sms_a", SendOutcome.PERMANENT_ERROR, at(1), error="http_400"))
    assert failed.status is Status.FAILED

    applied = redispatch(failed)

    assert applied.changed
    queued = applied.notification
    assert queued.status is Status.QUEUED
    assert (queued.attempts, queued.gave_up, queued.retry, queued.last_failure) == (
        0,
        None,
        None,
        None,
    )
    assert queued.version == failed.version + 1
    assert queued.next_attempt == 1
    assert queued.due_at() == T0


def test_a_redispatch_of_anything_but_a_failure_to_send_changes_nothing() -> None:
    sent = run(SendResult(1, "sms_a", SendOutcome.ACCEPTED, at(1), provider_message_id="m-1"))
    undeliverable = run(Receipt(ReceiptKind.UNDELIVERED, at(2), "wrong_number"), start=sent)
    withdrawn_then_failed = run(
        Withdrawal(DECISION, at(1)),
        SendResult(1, "sms_a", SendOutcome.PERMANENT_ERROR, at(2), error="http_400"),
    )
    for notification in (fresh(), sent, undeliverable, withdrawn_then_failed):
        applied = redispatch(notification)
        assert not applied.changed
        assert applied.notification == notification
        assert applied.ignored
