"""Exact CDR bytes of a ROS 2 message, for bags: deterministic, zero padding, no slack at the end.

Why not ``rclpy.serialization.serialize_message``: its buffer is longer than the CDR content and its
alignment padding and tail hold uninitialised memory (a 19-joint JointState: 612 B for 608 B of
content, different bytes from run to run), which readers that check the size (``rosbags``) reject and
which leaks process memory into the file. DDS puts only the content on the wire, so this writes the
content: plain CDR (XCDR1) little endian, the encoding rmw_fastrtps uses, walking the message class's
own field description (``SLOT_TYPES``) so every generated message type works.

Layout rules (OMG CDR 1.0 as ROS 2 uses it): a 4-byte encapsulation header ``00 01 00 00``; each
primitive aligned to its size (at most 8) from the end of that header; a string is a uint32 length
counting a terminating NUL, then the bytes and the NUL; a sequence a uint32 count then its elements; a
fixed array its elements only; a nested message its fields in order; a message without fields one
uint8 (ROS's ``structure_needs_at_least_one_member``).
"""
from __future__ import annotations

import struct
from typing import Any, Callable

import numpy as np
from rosidl_parser import definition as idl

__all__ = ["CdrError", "serialize_cdr"]

HEADER = b"\x00\x01\x00\x00"  # CDR_LE, no options

#: IDL basic type -> (struct format of one value, little endian; size [B]).
_BASIC = {
    "boolean": ("?", 1), "octet": ("B", 1), "char": ("B", 1), "uint8": ("B", 1), "int8": ("b", 1),
    "int16": ("h", 2), "uint16": ("H", 2), "int32": ("i", 4), "uint32": ("I", 4),
    "int64": ("q", 8), "uint64": ("Q", 8), "float": ("f", 4), "double": ("d", 8),
}
_UINT32 = struct.Struct("<I")


class CdrError(TypeError):
    """A message holds a type this serializer does not write (wide strings, ``long double``)."""


class _Buffer:
    """Bytes written so far; offsets count from the end of the encapsulation header."""

    __slots__ = ("parts", "size")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def put(self, data: bytes, align: int = 1) -> None:
        pad = -self.size % align
        if pad:
            self.parts.append(b"\x00" * pad)
        self.parts.append(data)
        self.size += pad + len(data)


def _char_codes(values: Any) -> list[int]:
    """``char``/``octet`` values as rclpy holds them (str, bytes of length 1, or ints) -> ints."""
    if isinstance(values, (str, bytes, bytearray)):
        values = list(values)
    return [ord(v) if isinstance(v, str) else v[0] if isinstance(v, (bytes, bytearray)) else int(v) for v in values]


def _basic_writer(typename: str) -> Callable[[_Buffer, Any], None]:
    if typename not in _BASIC:
        raise CdrError(f"CDR of {typename!r} is not supported")
    code, size = _BASIC[typename]
    one = struct.Struct("<" + code)
    if typename in ("char", "octet"):
        return lambda buf, value: buf.put(one.pack(_char_codes([value])[0]), size)
    return lambda buf, value: buf.put(one.pack(value), size)


def _basic_block_writer(typename: str, sequence: bool) -> Callable[[_Buffer, Any], None]:
    """Writer of an array/sequence of one basic type: its elements in one aligned block."""
    if typename not in _BASIC:
        raise CdrError(f"CDR of {typename!r} is not supported")
    code, size = _BASIC[typename]
    dtype = np.dtype("<" + code) if code != "?" else np.dtype(bool)
    chars = typename in ("char", "octet", "uint8")

    def write(buf: _Buffer, values: Any) -> None:
        if chars and isinstance(values, (bytes, bytearray)):
            data = bytes(values)
        elif chars and not isinstance(values, np.ndarray):
            data = np.asarray(_char_codes(values), dtype=dtype).tobytes()
        else:
            data = np.asarray(values, dtype=dtype).tobytes()
        if sequence:
            buf.put(_UINT32.pack(len(data) // size), 4)
        if data:
            buf.put(data, size)
    return write


def _write_string(buf: _Buffer, value: str) -> None:
    data = value.encode("utf-8") + b"\x00"
    buf.put(_UINT32.pack(len(data)), 4)
    buf.put(data)


def _writer(slot: Any) -> Callable[[_Buffer, Any], None]:
    """The function that writes one field of this rosidl type."""
    if isinstance(slot, idl.BasicType):
        return _basic_writer(slot.typename)
    if isinstance(slot, idl.AbstractWString):
        raise CdrError("CDR of wide strings is not supported")
    if isinstance(slot, idl.AbstractString):
        return _write_string
    if isinstance(slot, idl.NamespacedType):
        return _write_message
    if isinstance(slot, idl.AbstractNestedType):
        sequence = isinstance(slot, idl.AbstractSequence)
        if isinstance(slot.value_type, idl.BasicType):
            return _basic_block_writer(slot.value_type.typename, sequence)
        inner = _writer(slot.value_type)

        def write(buf: _Buffer, values: Any) -> None:
            if sequence:
                buf.put(_UINT32.pack(len(values)), 4)
            for item in values:
                inner(buf, item)
        return write
    raise CdrError(f"unknown field type {type(slot).__name__}")  # pragma: no cover - rosidl has no other


_PLANS: dict[type, list[tuple[str, Callable[[_Buffer, Any], None]]]] = {}


def _plan(cls: type) -> list[tuple[str, Callable[[_Buffer, Any], None]]]:
    """(field name, writer) per field of a message class, built once per class."""
    plan = _PLANS.get(cls)
    if plan is None:
        try:
            names, slots = list(cls.get_fields_and_field_types()), cls.SLOT_TYPES
        except AttributeError:
            raise CdrError(f"{cls.__name__} is not a generated ROS 2 message") from None
        plan = _PLANS[cls] = [(name, _writer(slot)) for name, slot in zip(names, slots)]
    return plan


def _write_message(buf: _Buffer, msg: Any) -> None:
    plan = _plan(type(msg))
    if not plan:
        buf.put(b"\x00")
        return
    for name, write in plan:
        write(buf, getattr(msg, name))


def serialize_cdr(msg: Any) -> bytes:
    """The CDR bytes of a ROS 2 message (rclpy message object): header, content, nothing after.

    The same message gives the same bytes; ``rclpy.serialization.deserialize_message`` reads them back.

    Raises:
        CdrError: the message holds a wide string or a ``long double``.
    """
    buf = _Buffer()
    _write_message(buf, msg)
    return HEADER + b"".join(buf.parts)
