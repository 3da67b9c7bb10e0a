from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lfws_core.errors import LocalProtocolError
from lfws_core.events import Operation, SyncEvent
from lfws_core.merge import apply_event, document_state, merge_events, merge_key, wins

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def event(
    event_id: str,
    operation: Operation = Operation.UPDATE,
    *,
    at: int = 0,
    data_id: str = "doc",
    value: int = 0,
) -> SyncEvent:
    return SyncEvent(
        event_id=event_id,
        operation=operation,
        data_id=data_id,
        created_at=T0 + timedelta(milliseconds=at),
        data=None if operation is Operation.DELETE else {"id": data_id, "value": value},
    )


# Few distinct instants, so equal timestamps (the case the Dart rule gets
# wrong) come up often; unique ids, because an event id names one event.
@st.composite
def document_events(draw: st.DrawFn, min_size: int = 0, max_size: int = 6) -> list[SyncEvent]:
    ids = draw(st.lists(st.uuids().map(str), min_size=min_size, max_size=max_size, unique=True))
    return [
        event(
            event_id,
            draw(st.sampled_from(Operation)),
            at=draw(st.integers(0, 3)),
            value=draw(st.integers(0, 9)),
        )
        for event_id in ids
    ]


# --- the rule, by example ----------------------------------------------------


def test_the_first_event_of_a_document_wins() -> None:
    first = event("a", Operation.INSERT)
    assert wins(first, None)
    assert apply_event(None, first) is first


def test_a_later_event_replaces_an_earlier_one() -> None:
    old, new = event("b", at=1, value=1), event("a", at=2, value=2)
    assert apply_event(old, new) is new
    assert apply_event(new, old) is new


def test_equal_timestamps_are_decided_by_event_id_not_by_arrival() -> None:
    low, high = event("0190-a", value=1), event("0190-b", value=2)
    assert apply_event(low, high) is high
    # The Dart rule lets whichever arrives last win this tie; here it cannot.
    assert apply_event(high, low) is high


def test_merge_key_is_created_at_then_event_id() -> None:
    e = event("x", at=5)
    assert merge_key(e) == (T0 + timedelta(milliseconds=5), "x")


def test_replaying_the_winner_changes_nothing() -> None:
    winner = event("a")
    assert not wins(winner, winner)
    assert apply_event(winner, winner) is winner


def test_a_later_update_resurrects_a_deleted_document() -> None:
    deleted = merge_events([event("a", Operation.INSERT), event("b", Operation.DELETE, at=1)])
    assert document_state(deleted) is None
    revived = apply_event(deleted, event("c", Operation.UPDATE, at=2, value=7))
    assert document_state(revived) == {"id": "doc", "value": 7}


def test_an_older_update_arriving_after_a_delete_stays_dead() -> None:
    deleted = event("b", Operation.DELETE, at=2)
    late = event("a", Operation.UPDATE, at=1, value=3)
    assert apply_event(deleted, late) is deleted
    assert document_state(apply_event(deleted, late)) is None


def test_the_winner_holds_the_whole_document() -> None:
    inserted = event("a", Operation.INSERT, value=1)
    updated = apply_event(inserted, event("b", Operation.UPDATE, at=1, value=2))
    assert document_state(updated) == {"id": "doc", "value": 2}


def test_an_unknown_document_has_no_state() -> None:
    assert document_state(None) is None
    assert merge_events([]) is None


def test_merge_events_starts_from_the_current_winner() -> None:
    current = event("z", at=9)
    assert merge_events([event("a", at=1)], current) is current
    assert merge_events([], current) is current


def test_events_of_different_documents_are_refused() -> None:
    with pytest.raises(LocalProtocolError, match="'other'"):
        wins(event("a", data_id="other"), event("b"))
    with pytest.raises(LocalProtocolError):
        apply_event(event("b"), event("a", data_id="other"))


# --- the properties that make replicas converge --------------------------------


@given(document_events(max_size=5))
def test_every_delivery_order_yields_the_same_winner(events: list[SyncEvent]) -> None:
    expected = merge_events(events)
    for order in itertools.permutations(events):
        assert merge_events(order) == expected


@given(document_events(max_size=12), st.randoms(use_true_random=False))
def test_random_delivery_orders_of_larger_sets_agree(
    events: list[SyncEvent], rnd: random.Random
) -> None:
    shuffled = list(events)
    rnd.shuffle(shuffled)
    assert merge_events(shuffled) == merge_events(events)


@given(document_events(min_size=1))
def test_the_winner_has_the_greatest_key(events: list[SyncEvent]) -> None:
    winner = merge_events(events)
    assert winner is not None
    assert merge_key(winner) == max(map(merge_key, events))


@given(document_events(min_size=1), st.data())
def test_applying_an_event_twice_changes_nothing(
    events: list[SyncEvent], data: st.DataObject
) -> None:
    winner = merge_events(events)
    again = data.draw(st.sampled_from(events))
    assert apply_event(winner, again) is winner


@given(document_events(min_size=3, max_size=3), st.booleans())
def test_apply_event_commutes(events: list[SyncEvent], from_scratch: bool) -> None:
    a, b, seen = events
    current = None if from_scratch else seen
    assert apply_event(apply_event(current, a), b) == apply_event(apply_event(current, b), a)


@given(document_events(), document_events())
def test_merging_in_two_halves_equals_merging_all(
    first: list[SyncEvent], second: list[SyncEvent]
) -> None:
    ids = {e.event_id for e in first}
    second = [e for e in second if e.event_id not in ids]
    assert merge_events(second, merge_events(first)) == merge_events(first + second)
