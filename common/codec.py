"""The only code that turns messages into frames and back.

Frame layout
============

Every message is one frame holding a msgpack map::

    {"v": 2, "msg": "<name>", <field>: <value>, ...}

``v`` is :data:`common.protocol.PROTOCOL_VERSION`; ``msg`` is the class's
``MSG``; the other keys are the dataclass fields. A nested message (a
``TradeItem`` inside ``ApplyTrades``) is a plain map of its fields, without
``v`` or ``msg``. Keys a reader does not know are ignored, so a newer peer may
add optional fields without a version bump.

On a ROUTER socket the body follows the envelope ZeroMQ keeps for routing::

    [identity, ..., b"", body]

and on the bus a message is two frames, the topic first so that SUB filtering
works on it::

    [topic, body]

Decoding checks the version, the name and the type of every field, at any
depth: integers must fit in 64 signed bits, as SQLite stores them; an enum
field (a ``StrEnum`` such as :class:`common.protocol.NodeKind`) must hold one
of its values and decodes to the member; a map (``dict[str, T]``) must have
string keys, and each value is checked as a ``T``. Anything else raises
:class:`common.errors.RemoteProtocolError`, never a bare ``KeyError`` or
``TypeError``. The field types a message may use are these: ``int``,
``float``, ``str``, ``bool``, a ``StrEnum``, a nested message, ``list[T]``,
``dict[str, T]`` and ``T | None``; any other (``Any`` included) is a
``TypeError`` at import.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import msgpack

from .errors import LocalProtocolError, RemoteProtocolError, UnsupportedVersion
from .protocol import MESSAGES, PROTOCOL_VERSION, Message, Topic

_Checker = Callable[[Any, str], Any]


def encode(msg: Message) -> bytes:
    """Pack one message into a frame.

    :raises LocalProtocolError: if ``msg`` is not a protocol message.
    """
    if not isinstance(msg, Message) or MESSAGES.get(msg.MSG) is not type(msg):
        raise LocalProtocolError(f"{type(msg).__name__} is not a protocol message")
    body = _to_map(msg)
    body["v"] = PROTOCOL_VERSION
    body["msg"] = msg.MSG
    return msgpack.packb(body, use_bin_type=True)


def decode(frame: bytes) -> Message:
    """Unpack and validate one frame.

    :raises RemoteProtocolError: on bad msgpack, a wrong version, an unknown
        message, or a field of the wrong type.
    """
    try:
        body = msgpack.unpackb(frame, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise RemoteProtocolError(f"frame is not valid msgpack ({type(exc).__name__})") from None
    if not isinstance(body, dict):
        raise RemoteProtocolError("a message must be a msgpack map")
    version = body.get("v")
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise UnsupportedVersion(f"unsupported protocol version {version!r}, this node speaks {PROTOCOL_VERSION}")
    name = body.get("msg")
    cls = MESSAGES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise RemoteProtocolError(f"unknown message {name!r}")
    return _DECODERS[cls](body, name)


def encode_pub(topic: Topic, msg: Message) -> list[bytes]:
    """Frames for one bus message: ``[topic, body]``."""
    return [topic.value, encode(msg)]


def decode_pub(frames: list[bytes]) -> tuple[Topic, Message]:
    """Validate one bus message.

    :raises RemoteProtocolError: on a wrong frame count or unknown topic.
    """
    if len(frames) != 2:
        raise RemoteProtocolError(f"a bus message has 2 frames, got {len(frames)}")
    try:
        topic = Topic(frames[0])
    except ValueError:
        raise RemoteProtocolError(f"unknown topic {frames[0][:32]!r}") from None
    return topic, decode(frames[1])


def split_envelope(frames: list[bytes]) -> tuple[list[bytes], bytes]:
    """Split what a ROUTER received into ``(envelope, body)``.

    :raises RemoteProtocolError: if there is no empty delimiter frame.
    """
    for i, frame in enumerate(frames):
        if frame == b"":
            if i == 0 or i != len(frames) - 2:
                break
            return frames[: i + 1], frames[i + 1]
    raise RemoteProtocolError("frames lack the [identity, b'', body] envelope")


# --- encoding -------------------------------------------------------------


def _to_map(msg: Message) -> dict[str, Any]:
    return {f.name: _to_wire(getattr(msg, f.name)) for f in dataclasses.fields(msg)}


def _to_wire(value: Any) -> Any:
    if isinstance(value, Message):
        return _to_map(value)
    if isinstance(value, list):
        return [_to_wire(v) for v in value]
    return value


# --- decoding: one checker per field, compiled once at import -------------


INT_MIN, INT_MAX = -(2**63), 2**63 - 1  # what SQLite and every peer can store


def _check_int(value: Any, where: str) -> int:
    if type(value) is not int:
        raise RemoteProtocolError(f"{where} must be an integer")
    if not INT_MIN <= value <= INT_MAX:
        raise RemoteProtocolError(f"{where} must fit in a signed 64-bit integer")
    return value


def _check_float(value: Any, where: str) -> float:
    if type(value) not in (int, float):
        raise RemoteProtocolError(f"{where} must be a number")
    return float(value)


def _check_str(value: Any, where: str) -> str:
    if type(value) is not str:
        raise RemoteProtocolError(f"{where} must be a string")
    return value


def _check_bool(value: Any, where: str) -> bool:
    if type(value) is not bool:
        raise RemoteProtocolError(f"{where} must be a boolean")
    return value


def _check_map(value: Any, where: str) -> dict:
    if type(value) is not dict or not all(type(k) is str for k in value):
        raise RemoteProtocolError(f"{where} must be a map with string keys")
    return value


def _enum_checker(cls: type[StrEnum]) -> _Checker:
    members = {member.value: member for member in cls}
    choices = ", ".join(members)

    def check_enum(value: Any, where: str) -> StrEnum:
        if type(value) is not str or value not in members:
            raise RemoteProtocolError(f"{where} must be one of {choices}")
        return members[value]

    return check_enum


_SCALARS: dict[Any, _Checker] = {int: _check_int, float: _check_float, str: _check_str, bool: _check_bool}


def _checker_for(hint: Any) -> _Checker:
    origin = typing.get_origin(hint)
    if hint in _SCALARS:
        return _SCALARS[hint]
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        inner = _checker_for(args[0])
        return lambda v, where: None if v is None else inner(v, where)
    if origin is list:
        item = _checker_for(typing.get_args(hint)[0])

        def check_list(value: Any, where: str) -> list:
            if type(value) is not list:
                raise RemoteProtocolError(f"{where} must be a list")
            return [item(v, f"{where}[{i}]") for i, v in enumerate(value)]

        return check_list
    if origin is dict:
        key_type, value_type = typing.get_args(hint)
        if key_type is not str:
            raise TypeError(f"no wire checker for {hint!r}: map keys must be str")
        value = _checker_for(value_type)

        def check_typed_map(raw: Any, where: str) -> dict:
            return {k: value(v, f"{where}[{k!r}]") for k, v in _check_map(raw, where).items()}

        return check_typed_map
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        return _enum_checker(hint)
    if isinstance(hint, type) and issubclass(hint, Message):
        return lambda v, where: _DECODERS[hint](_check_map(v, where), where)
    raise TypeError(f"no wire checker for {hint!r}")


def _compile(cls: type[Message]) -> Callable[[dict, str], Message]:
    hints = typing.get_type_hints(cls)
    fields = []
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        fields.append((f.name, _checker_for(hints[f.name]), required))

    def decode_fields(body: dict, where: str) -> Message:
        kwargs = {}
        for name, check, required in fields:
            if name in body:
                kwargs[name] = check(body[name], f"{where}.{name}")
            elif required:
                raise RemoteProtocolError(f"{where} lacks the field {name!r}")
        return cls(**kwargs)

    return decode_fields


_DECODERS: dict[type[Message], Callable[[dict, str], Message]] = {}
for _cls in MESSAGES.values():
    _DECODERS[_cls] = _compile(_cls)
