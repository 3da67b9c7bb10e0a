"""The pure test kit: seeded randomness, the in-memory log and replica."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lfws_core.events import Operation, SyncEvent
from lfws_core.testing import MemoryEventLog, MemoryReplica, SplitMix64

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def event(event_id: str, data_id: str = "d", *, at: float = 0.0, delete: bool = False) -> SyncEvent:
    return SyncEvent(
        event_id=event_id,
        operation=Operation.DELETE if delete else Operation.UPDATE,
        data_id=data_id,
        created_at=T0 + timedelta(seconds=at),
        data=None if delete else {"id": data_id, "from": event_id},
    )


class TestSplitMix64:
    def test_same_seed_same_sequence(self) -> None:
        a, b = SplitMix64(42), SplitMix64(42)
        assert [a.next_u64() for _ in range(5)] == [b.next_u64() for _ in range(5)]
        assert SplitMix64(1).next_u64() != SplitMix64(2).next_u64()

    def test_known_first_output(self) -> None:
        # Reference value of SplitMix64 seeded with 0.
        assert SplitMix64(0).next_u64() == 0xE220A8397B1DCDAF

    @given(st.integers(min_value=0, max_value=2**64 - 1))
    def test_ranges(self, seed: int) -> None:
        rng = SplitMix64(seed)
        assert 0.0 <= rng.random() < 1.0
        assert 2.0 <= rng.uniform(2.0, 3.0) < 3.0
        assert 0 <= rng.randrange(7) < 7
        assert rng.choice("abc") in "abc"
        assert len(rng.bytes(13)) == 13
        assert rng.chance(1.0) is True
        assert rng.chance(0.0) is False

    def test_randrange_needs_a_positive_stop(self) -> None:
        with pytest.raises(ValueError, match="positive"):
            SplitMix64(0).randrange(0)


class TestMemoryEventLog:
    def test_sequences_dedupe_and_fetch(self) -> None:
        log = MemoryEventLog()
        stored, dups = log.store("todos", [event("a"), event("b"), event("a")])
        assert [(e.event_id, e.server_sequence) for e in stored] == [("a", 1), ("b", 2)]
        assert dups == ["a"]
        stored, dups = log.store("todos", [event("b"), event("c")])
        assert [(e.event_id, e.server_sequence) for e in stored] == [("c", 3)]
        assert dups == ["b"]
        assert [e.event_id for e in log.fetch("todos", 1, 10)] == ["b", "c"]
        assert [e.event_id for e in log.fetch("todos", 0, 2)] == ["a", "b"]
        assert log.fetch("todos", -5, 1)[0].event_id == "a"
        assert log.fetch("todos", 3, 10) == []
        assert log.fetch("other", 0, 10) == []
        assert "c" in log and "z" not in log
        assert len(log) == 3
        assert log.repositories() == ["todos"]
        assert [e.server_sequence for e in log.events("todos")] == [1, 2, 3]
        assert log.events("none") == ()

    def test_sequences_are_per_repository(self) -> None:
        log = MemoryEventLog()
        log.store("a", [event("x")])
        stored, _ = log.store("b", [event("y")])
        assert stored[0].server_sequence == 1
        assert log.repositories() == ["a", "b"]


class TestMemoryReplica:
    def test_local_then_ack(self) -> None:
        replica = MemoryReplica()
        replica.record_local("todos", event("e1", "a"))
        assert replica.outbox() == [("todos", event("e1", "a"))]
        assert replica.documents("todos") == {"a": {"id": "a", "from": "e1"}}
        replica.mark_synced(["e1", "unknown"])
        assert replica.outbox() == []

    def test_remote_merge_is_last_writer_wins_and_idempotent(self) -> None:
        replica = MemoryReplica()
        replica.apply_remote("todos", [event("new", "a", at=2), event("old", "a", at=1)])
        assert replica.documents("todos") == {"a": {"id": "a", "from": "new"}}
        replica.apply_remote("todos", [event("new", "a", at=2)])
        assert replica.duplicate_applies == 1
        assert replica.knows("old") and not replica.knows("other")

    def test_deletes_are_tombstones(self) -> None:
        replica = MemoryReplica()
        replica.apply_remote("todos", [event("del", "a", at=2, delete=True)])
        replica.apply_remote("todos", [event("older", "a", at=1)])
        assert replica.documents("todos") == {}
        replica.apply_remote("todos", [event("newer", "a", at=3)])
        assert replica.documents("todos") == {"a": {"id": "a", "from": "newer"}}
        assert replica.documents("other") == {}

    def test_cursor_only_moves_forward(self) -> None:
        replica = MemoryReplica()
        replica.advance_cursor("todos", 5)
        replica.advance_cursor("todos", 3)
        replica.advance_cursor("todos", None)
        assert replica.cursors == {"todos": 5}
