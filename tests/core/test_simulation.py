"""The deterministic simulation: 200 seeds of faults, every invariant held.

Each seed runs three clients and a server for 60 virtual seconds of edits and
faults (dropped and half-open connections, offline periods, server restarts,
client crashes), then checks that every replica converged to the server log
with nothing lost or stored twice. The last tests plant bugs and show the
simulation catches them, so a green run means something.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest

from lfws_core import actions as act
from lfws_core.client import OverflowPolicy
from lfws_core.events import SyncEvent
from lfws_core.testing import MemoryEventLog
from lfws_core.testing.simulation import SimulationConfig, _Simulation, run_simulation

SEEDS = range(200)


def test_200_seeds_hold_every_invariant() -> None:
    faults: Counter[str] = Counter()
    events = 0
    failed = {}
    for seed in SEEDS:
        report = run_simulation(seed)
        faults.update(report.faults)
        events += report.events_created
        if not report.ok:
            failed[seed] = report.failures[:5]
        assert report.events_stored == report.events_created or not report.ok
    assert failed == {}
    # The run only proves something if the faults really happened.
    assert events > 10_000
    for kind in ("drop", "half-open", "offline", "server restart", "client restart"):
        assert faults[kind] > 10, kind


def test_a_seed_is_reproducible() -> None:
    first, second = run_simulation(7), run_simulation(7)
    assert first.messages == second.messages
    assert first.faults == second.faults
    assert first.converged_after == second.converged_after


def test_calm_network_converges_at_once() -> None:
    calm = SimulationConfig(
        drop_rate=0,
        drop_after_push=0,
        stall_rate=0,
        offline_rate=0,
        server_restart_rate=0,
        client_restart_rate=0,
    )
    report = run_simulation(1, calm)
    assert report.ok, report.failures
    assert sum(report.faults.values()) == 0
    # Only what was in flight when the edits stopped remains to deliver.
    assert report.converged_after is not None and report.converged_after < 0.5


def test_a_server_that_stores_replays_twice_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def store_without_dedupe(
        self: MemoryEventLog, repository: str, events: list[SyncEvent]
    ) -> tuple[list[SyncEvent], list[str]]:
        log = self._events.setdefault(repository, [])
        self._ids.setdefault(repository, set()).update(e.event_id for e in events)
        stored = [e.with_sequence(len(log) + i + 1) for i, e in enumerate(events)]
        log.extend(stored)
        return stored, []

    monkeypatch.setattr(MemoryEventLog, "store", store_without_dedupe)
    failures = [f for seed in range(20) for f in run_simulation(seed).failures]
    assert any("stored twice" in f for f in failures)


def test_a_server_that_acks_before_storing_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    real_store = MemoryEventLog.store

    def store_and_lose_some(
        self: MemoryEventLog, repository: str, events: list[SyncEvent]
    ) -> tuple[list[SyncEvent], list[str]]:
        # Acknowledge everything, but "crash" before the last event commits.
        stored, duplicates = real_store(self, repository, events[:-1])
        return [*stored, events[-1].with_sequence(10**9)], duplicates

    monkeypatch.setattr(MemoryEventLog, "store", store_and_lose_some)
    failures = [f for seed in range(5) for f in run_simulation(seed).failures]
    assert any("acked, not stored" in f for f in failures)
    assert any("never stored" in f for f in failures)


# --- the simulation's own reporting, driven directly -------------------------


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (act.PushFailed(repository="r", event_ids=("e",), reason="full"), "push failed"),
        (act.CredentialsNeeded(reason="refused", attempt=1), "credentials needed"),
        (act.ServerErrorReported(message="boom"), "server error"),
        (act.ProtocolErrorReported(reason="garbage"), "protocol error"),
    ],
)
def test_client_trouble_is_a_failure(action: act.ClientAction, expected: str) -> None:
    sim = _Simulation(0, SimulationConfig())
    sim.client_action(sim.clients[0], action)
    assert expected in sim.report.failures[0]


def test_server_trouble_is_a_failure() -> None:
    sim = _Simulation(0, SimulationConfig())
    sim.clients[0].session.start(0.0)
    sim.pump()
    while sim.clients[0].link is None:
        sim.step()
    link = sim.clients[0].link
    sim.server_action(link, act.ProtocolErrorReported(reason="garbage"))
    assert "server: protocol error" in sim.report.failures[0]


def test_a_full_queue_is_a_failure() -> None:
    tiny_queue = replace(
        SimulationConfig().client, max_pending=1, overflow_policy=OverflowPolicy.REJECT_NEW
    )
    config = SimulationConfig(client=tiny_queue, offline_rate=0.2, edit_rate=1.0)
    report = run_simulation(3, config)
    assert any("push of" in f and "failed" in f for f in report.failures)


def test_late_news_of_a_replaced_link_is_ignored() -> None:
    sim = _Simulation(0, SimulationConfig())
    client = sim.clients[0]
    client.session.start(0.0)
    sim.pump()
    while client.link is None:
        sim.step()
    old = client.link
    sim.cut(old, "first", tell_client=True, tell_server=True)
    client.link = None  # the client moved on before the news arrived
    sim.cut(old, "again", tell_client=True, tell_server=True)  # a dead link stays dead
    while sim.queue:
        when = sim.queue[0][0]
        if when > sim.now + 1:
            break
        sim.step()
    # Had the stale news reached the session, it would be waiting to reconnect.
    assert client.session.state is act.ConnectionState.AUTHENTICATING
    assert sim.report.failures == []


def test_actions_without_a_link_go_nowhere() -> None:
    sim = _Simulation(0, SimulationConfig())
    client = sim.clients[0]
    sim.client_action(client, act.SendMessage(text='{"type":"ping"}'))
    sim.client_action(client, act.CloseConnection(code=1000, reason="bye"))
    assert sim.queue == [] and sim.report.messages == 0
    client.session.start(0.0)
    sim.pump()
    while client.link is None:
        sim.step()
    old = client.link
    client.link = None
    sim.cut(old, "server side only", tell_client=False, tell_server=True)
    assert client.link is None and not old.alive
