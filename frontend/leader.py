"""Which order replica the frontend sends trades to, pure.

The tracker believes the highest epoch it has heard of. Leaders announce
``{leader, epoch}`` on the bus every heartbeat interval; replicas that do not
lead answer ``not_leader`` with their own belief. Either can only move the
tracker to a newer epoch (or fill in the leader of the current one), so a
late announcement from a deposed leader is ignored. When the leader fails a
request (no connection, no reply), the tracker forgets it until someone
names a leader again, and the frontend tries replicas from the highest id
down, as the seed does.

States::

    unknown --announcement or hint--> known(leader, epoch)
    known --newer epoch--> known(new leader)
    known --leader failed a request--> unknown (epoch kept)
"""

from __future__ import annotations

from common.protocol import LeaderBelief


class LeaderTracker:
    """The frontend's belief about the order leader.

    :param replica_ids: every replica of the config.
    """

    def __init__(self, replica_ids: list[int]) -> None:
        self.replica_ids = sorted(replica_ids, reverse=True)
        self.leader: int | None = None
        self.epoch = 0
        self.version = 0  # rises on every change, so waiters can notice one

    def announce(self, leader: int | None, epoch: int) -> bool:
        """A leader announcement or a replica's hint.

        :returns: True if the belief changed.
        """
        if leader is not None and leader not in self.replica_ids:
            return False
        if epoch > self.epoch or (epoch == self.epoch and self.leader is None and leader is not None):
            if (leader, epoch) != (self.leader, self.epoch):
                self.leader, self.epoch = leader, epoch
                self.version += 1
                return True
        return False

    def failed(self, replica: int) -> None:
        """``replica`` did not answer; if it was the leader, forget it."""
        if self.leader == replica:
            self.leader = None
            self.version += 1

    def candidates(self) -> list[int]:
        """Replicas to try, in order: the leader if known, then by falling id."""
        if self.leader is None:
            return list(self.replica_ids)
        return [self.leader] + [r for r in self.replica_ids if r != self.leader]

    def snapshot(self) -> LeaderBelief:
        return LeaderBelief(leader=self.leader, epoch=self.epoch)
