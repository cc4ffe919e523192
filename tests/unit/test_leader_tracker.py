"""The frontend's belief about the order leader (frontend/leader.py)."""

from __future__ import annotations

import pytest

from common.protocol import LeaderBelief
from frontend.leader import LeaderTracker


@pytest.fixture
def tracker() -> LeaderTracker:
    return LeaderTracker([2, 1, 3])


def test_unknown_at_first_and_tries_replicas_from_the_highest_id(tracker):
    assert tracker.leader is None and tracker.epoch == 0 and tracker.version == 0
    assert tracker.candidates() == [3, 2, 1]
    assert tracker.snapshot() == LeaderBelief(leader=None, epoch=0)


def test_an_announcement_sets_the_leader(tracker):
    assert tracker.announce(2, 1)
    assert (tracker.leader, tracker.epoch, tracker.version) == (2, 1, 1)
    assert tracker.candidates() == [2, 3, 1]
    assert tracker.snapshot() == LeaderBelief(leader=2, epoch=1)


def test_an_announcement_at_epoch_zero_fills_in_an_unknown_leader(tracker):
    assert tracker.announce(3, 0)
    assert tracker.leader == 3


def test_repeated_announcements_change_nothing(tracker):
    tracker.announce(3, 4)
    for _ in range(3):
        assert not tracker.announce(3, 4)
    assert tracker.version == 1


def test_a_newer_epoch_wins(tracker):
    tracker.announce(3, 4)
    assert tracker.announce(1, 5)
    assert (tracker.leader, tracker.epoch, tracker.version) == (1, 5, 2)


def test_a_late_announcement_from_a_deposed_leader_is_ignored(tracker):
    tracker.announce(1, 5)
    assert not tracker.announce(3, 4)
    assert (tracker.leader, tracker.epoch) == (1, 5)


def test_another_leader_for_the_same_epoch_does_not_displace_the_known_one(tracker):
    tracker.announce(3, 4)
    assert not tracker.announce(2, 4)
    assert tracker.leader == 3


def test_an_unknown_replica_id_is_ignored(tracker):
    assert not tracker.announce(9, 100)
    assert (tracker.leader, tracker.epoch, tracker.version) == (None, 0, 0)


def test_a_failed_leader_is_forgotten_but_its_epoch_kept(tracker):
    tracker.announce(3, 4)
    tracker.failed(3)
    assert (tracker.leader, tracker.epoch, tracker.version) == (None, 4, 2)
    assert tracker.candidates() == [3, 2, 1]
    assert not tracker.announce(2, 3)  # still older than what we know
    assert tracker.announce(3, 4)      # the same epoch may fill the gap again
    assert tracker.leader == 3


def test_a_hint_for_the_current_epoch_fills_in_after_a_failure(tracker):
    tracker.announce(3, 4)
    tracker.failed(3)
    assert tracker.announce(2, 4)
    assert tracker.candidates() == [2, 3, 1]


def test_a_failure_of_another_replica_changes_nothing(tracker):
    tracker.announce(3, 4)
    tracker.failed(1)
    tracker.failed(2)
    assert (tracker.leader, tracker.version) == (3, 1)


def test_a_failure_while_no_leader_is_known_changes_nothing(tracker):
    tracker.failed(3)
    assert tracker.version == 0


def test_a_newer_epoch_without_a_leader_forgets_the_old_one(tracker):
    # A replica of a newer epoch that knows no leader ("not_leader", hint None).
    tracker.announce(3, 4)
    assert tracker.announce(None, 5)
    assert (tracker.leader, tracker.epoch) == (None, 5)
    assert not tracker.announce(None, 5)
    assert not tracker.announce(3, 4)
    assert tracker.announce(2, 5)


def test_version_rises_on_every_change_only(tracker):
    versions = []
    for leader, epoch in [(3, 1), (3, 1), (2, 2), (1, 1), (None, 3), (1, 3)]:
        tracker.announce(leader, epoch)
        versions.append(tracker.version)
    assert versions == [1, 1, 2, 2, 3, 4]


def test_a_single_replica_cluster():
    tracker = LeaderTracker([1])
    assert tracker.candidates() == [1]
    tracker.announce(1, 1)
    assert tracker.candidates() == [1]
