"""The one error tree every Bazaar node uses.

::

    ServiceError
     +-- ConfigError            config.toml or a command-line override is invalid
     +-- ProtocolError          a message could not be encoded or decoded
     |    +-- LocalProtocolError    we tried to send something the protocol forbids
     |    +-- RemoteProtocolError   a peer sent bytes that are not a valid message
     |         +-- UnsupportedVersion   ... in a protocol version this node does not speak
     +-- RpcTimeout             no reply within the deadline (the outcome is unknown)
     +-- PeerUnavailable        no connection to the peer, nothing was sent
     +-- RemoteError            the peer answered with an ``Error`` message
     |    +-- NotLeader             an order replica that does not lead answered
     +-- StorageError           a node's own database could not do what was asked
          +-- StorageFull           no space for a write; nothing was written (retry when space is back)
          +-- StorageFailed         the disk failed a write or an fsync: what was written since the
          |                         last good sync cannot be trusted (the node restarts from disk)
          +-- StorageCorrupt        at start: the data is damaged, missing or another node's (the node
                                    refuses to start and says what to do)
     +-- BrokenFold             an order log entry breaks the stock book's invariants (common.book):
                                the node stops rather than guess

ZeroMQ's own exceptions (``zmq.Again``, ``zmq.ZMQError``) never leave the socket
helpers in :mod:`common.rpc`, :mod:`common.bus` and the frontend's
:mod:`frontend.channel`; they are translated there.
Errors travel over the wire as data (the ``Error`` message of
:mod:`common.protocol`) and :func:`from_error_message` rebuilds them.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base class of every error a Bazaar node raises on purpose."""


class ConfigError(ServiceError):
    """The configuration is invalid; the message says which key and why."""


class ProtocolError(ServiceError):
    """A message broke the wire protocol of ``docs/PROTOCOL.md``."""


class LocalProtocolError(ProtocolError):
    """We built a message the protocol does not allow (a bug on our side)."""


class RemoteProtocolError(ProtocolError):
    """A peer sent something that is not a valid message; log it, count it, drop it."""


class UnsupportedVersion(RemoteProtocolError):
    """The message carries a protocol version this node does not speak."""


class RpcTimeout(ServiceError):
    """No reply arrived in time. The request may or may not have been carried out."""


class PeerUnavailable(ServiceError):
    """There was no connection to the peer, so the request was not sent."""


class RemoteError(ServiceError):
    """The peer replied with an error.

    :param code: one of the ``ErrorCode`` values of :mod:`common.protocol`.
    :param message: a sentence meant for a human.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class NotLeader(RemoteError):
    """An order replica that is not the leader refused a request.

    :param leader_hint: the id of the replica it believes leads, or ``None``.
    :param epoch: the epoch of that belief, or ``None``.
    """

    def __init__(self, message: str, leader_hint: int | None, epoch: int | None) -> None:
        super().__init__("not_leader", message)
        self.leader_hint = leader_hint
        self.epoch = epoch


class StorageError(ServiceError):
    """A node's database failed; the message names the file.

    :param path: the database file.
    """

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


class StorageFull(StorageError):
    """No space left for a write; nothing of it was written.

    :param free_bytes: what the file system had free when it was refused.
    """

    def __init__(self, message: str, path: str, free_bytes: int | None) -> None:
        super().__init__(message, path)
        self.free_bytes = free_bytes


class StorageFailed(StorageError):
    """The disk failed a write or an fsync. Nothing written since the last
    good sync may be trusted, in memory or in the file system's cache."""


class StorageCorrupt(StorageError):
    """At start: the database is damaged, missing or not this node's."""


class BrokenFold(ServiceError):
    """An entry of the order log breaks the invariants of the fold that
    turns the log into stocks (:mod:`common.book`): the log, or the code that
    wrote it, is wrong. Never caught to carry on: the node stops, saying
    which entry."""


def from_error_message(msg) -> RemoteError:
    """Rebuild the exception that an ``Error`` message stands for.

    :param msg: a decoded :class:`common.protocol.Error`.
    """
    if msg.code == "not_leader":
        return NotLeader(msg.message, msg.leader, msg.epoch)
    return RemoteError(msg.code, msg.message)


def error_code(exc: RemoteProtocolError) -> str:
    """The ``Error`` code that answers a request which failed to decode."""
    return "unsupported_version" if isinstance(exc, UnsupportedVersion) else "bad_request"
