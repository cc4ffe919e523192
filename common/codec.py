"""The only code that turns messages into frames and back.

Frame layout
============

Every message is one frame holding a msgpack map::

    {"v": 3, "msg": "<name>", <field>: <value>, ...}

``v`` is :data:`common.protocol.PROTOCOL_VERSION`; ``msg`` is the class's
``MSG``; the other keys are the dataclass fields, but those that hold their
default value, which are left out (a reader takes the default for an absent
key: smaller frames, less to pack and unpack). A nested message (a
``TradeRecord`` inside a ``LogEntry``) is a plain map of its fields, without
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

def encode(msg: Message) -> bytes:
    """Pack one message into a frame.

    :raises LocalProtocolError: if ``msg`` is not a protocol message.
    """
    if not isinstance(msg, Message) or MESSAGES.get(msg.MSG) is not type(msg):
        raise LocalProtocolError(f"{type(msg).__name__} is not a protocol message")
    body = {"v": PROTOCOL_VERSION, "msg": msg.MSG}
    _ENCODERS[type(msg)](msg, body)
    return _packb(body)


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
    try:
        return _DECODERS[cls](body)
    except _Invalid as exc:
        raise RemoteProtocolError(f"{name}{exc.path} {exc.problem}") from None


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


_packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack

_Encoder = Callable[[Message, dict], None]
_ABSENT = object()


def _to_map(msg: Message) -> dict[str, Any]:
    body: dict[str, Any] = {}
    _ENCODERS[type(msg)](msg, body)
    return body


def _wire_of(hint: Any) -> Callable[[Any], Any] | None:
    """How a field's value becomes msgpack data: None when it already is."""
    if isinstance(hint, type) and issubclass(hint, Message):
        return _to_map
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = _wire_of(next(a for a in typing.get_args(hint) if a is not type(None)))
        return None if inner is None else (lambda v: None if v is None else inner(v))
    if origin is list:
        item = _wire_of(typing.get_args(hint)[0])
        return None if item is None else (lambda v: [item(x) for x in v])
    return None


def _compile_encoder(cls: type[Message]) -> _Encoder:
    """Put each field in the map; a field equal to its default is left out
    (the reader takes the default for an absent key: PROTOCOL.md 3.1)."""
    hints = typing.get_type_hints(cls)
    fields = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else _ABSENT
        fields.append((f.name, default, _wire_of(hints[f.name])))

    def encode_fields(msg: Message, body: dict) -> None:
        for name, default, wire in fields:
            value = getattr(msg, name)
            if value is default or (default is not _ABSENT and value == default and type(value) is type(default)):
                continue
            body[name] = value if wire is None else wire(value)

    return encode_fields


# --- decoding: one checker per field, compiled once at import -------------
#
# A checker takes a value and returns it checked (and converted: enums,
# nested messages). On a bad value it raises _Invalid; every container on
# the way up adds its part of the path, so that the error names the field
# ("append_entries.entries[3].trade.txn must be an integer") while the happy
# path builds no string at all.


INT_MIN, INT_MAX = -(2**63), 2**63 - 1  # what SQLite and every peer can store

_Check = Callable[[Any], Any]


class _Invalid(Exception):
    def __init__(self, problem: str) -> None:
        self.problem = problem
        self.path = ""


def _at(exc: _Invalid, part: str) -> _Invalid:
    exc.path = part + exc.path
    return exc


def _check_int(value: Any) -> int:
    if type(value) is not int:
        raise _Invalid("must be an integer")
    if not INT_MIN <= value <= INT_MAX:
        raise _Invalid("must fit in a signed 64-bit integer")
    return value


def _check_float(value: Any) -> float:
    if type(value) is float:
        return value
    if type(value) is not int:
        raise _Invalid("must be a number")
    return float(value)


def _check_str(value: Any) -> str:
    if type(value) is not str:
        raise _Invalid("must be a string")
    return value


def _check_bool(value: Any) -> bool:
    if type(value) is not bool:
        raise _Invalid("must be a boolean")
    return value


def _check_map(value: Any) -> dict:
    if type(value) is not dict or not all(type(k) is str for k in value):
        raise _Invalid("must be a map with string keys")
    return value


def _enum_checker(cls: type[StrEnum]) -> _Check:
    members = {member.value: member for member in cls}
    choices = ", ".join(members)

    def check_enum(value: Any) -> StrEnum:
        member = members.get(value) if type(value) is str else None
        if member is None:
            raise _Invalid(f"must be one of {choices}")
        return member

    return check_enum


_SCALARS: dict[Any, _Check] = {int: _check_int, float: _check_float, str: _check_str, bool: _check_bool}


def _checker_for(hint: Any) -> _Check:
    origin = typing.get_origin(hint)
    if hint in _SCALARS:
        return _SCALARS[hint]
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        inner = _checker_for(args[0])
        return lambda v: None if v is None else inner(v)
    if origin is list:
        item = _checker_for(typing.get_args(hint)[0])

        def check_list(value: Any) -> list:
            if type(value) is not list:
                raise _Invalid("must be a list")
            try:
                return [item(v) for v in value]
            except _Invalid as exc:
                index = next(i for i, v in enumerate(value) if _fails(item, v))
                raise _at(exc, f"[{index}]") from None

        return check_list
    if origin is dict:
        key_type, value_type = typing.get_args(hint)
        if key_type is not str:
            raise TypeError(f"no wire checker for {hint!r}: map keys must be str")
        value_check = _checker_for(value_type)

        def check_typed_map(raw: Any) -> dict:
            out = {}
            for k, v in _check_map(raw).items():
                try:
                    out[k] = value_check(v)
                except _Invalid as exc:
                    raise _at(exc, f"[{k!r}]") from None
            return out

        return check_typed_map
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        return _enum_checker(hint)
    if isinstance(hint, type) and issubclass(hint, Message):
        return lambda v: _DECODERS[hint](_check_map(v))
    raise TypeError(f"no wire checker for {hint!r}")


def _fails(check: _Check, value: Any) -> bool:
    try:
        check(value)
    except _Invalid:
        return True
    return False


def _compile(cls: type[Message]) -> Callable[[dict], Message]:
    hints = typing.get_type_hints(cls)
    fields = []
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        fields.append((f.name, _checker_for(hints[f.name]), required))

    def decode_fields(body: dict) -> Message:
        kwargs = {}
        for name, check, required in fields:
            if name in body:
                try:
                    kwargs[name] = check(body[name])
                except _Invalid as exc:
                    raise _at(exc, f".{name}") from None
            elif required:
                raise _Invalid(f"lacks the field {name!r}")
        return cls(**kwargs)

    return decode_fields


_DECODERS: dict[type[Message], Callable[[dict], Message]] = {}
_ENCODERS: dict[type[Message], _Encoder] = {}
for _cls in MESSAGES.values():
    _DECODERS[_cls] = _compile(_cls)
    _ENCODERS[_cls] = _compile_encoder(_cls)
