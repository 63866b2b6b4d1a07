"""How the cache stores write an entry's values: any Python str, losslessly, plus SQLite checksums.

Private to the stores. PostgreSQL ``text`` cannot hold NUL, and neither psycopg nor sqlite3 can
encode a lone surrogate ("\\ud800") to UTF-8, yet a prompt may contain either. So a string is
stored as itself when it is clean (the usual case, so existing rows read unchanged), and otherwise
as ``_MARK`` + its ASCII JSON form (``json.dumps`` escapes NUL and surrogates and round-trips them).
The mark, U+FFFF, is a Unicode noncharacter: a clean string starting with it is escaped too, which
keeps the mapping one-to-one, so keys compare correctly in SQL.

The SQLite file carries a CRC-32 per entry (and one per embedding) computed over the stored
values: SQLite has no page checksums, and a scribbled page can turn a payload into another valid
string that nothing else would notice.
"""

from __future__ import annotations

import json
import math
import re
import struct
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lean_core.cache.types import UnstorableEntryError
from lean_core.errors import InvalidParameterError

if TYPE_CHECKING:
    from lean_core.cache.types import CacheEntry

__all__ = ["MAX_FIELD_CHARS", "MAX_TOKENS", "Damaged", "StoredEntry", "decode_text", "encode_text", "row_checksum",
           "stored_entry"]

_MARK = "\uffff"
_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_FIELD_CHARS = 64 * 2**20
"""The longest stored (escaped) string a store accepts, in characters: 64 Mi, at most 256 MiB as
UTF-8, below SQLite's 1e9-byte and PostgreSQL's 1 GiB limits on one value."""
MAX_TOKENS = 2**31 - 1
"""The largest token count a store accepts (the PostgreSQL columns are ``integer``)."""
_TEXT_FIELDS = ("tenant", "llm_hash", "prompt_key", "prompt", "payload")


class Damaged(Exception):
    """A stored value that cannot have been written by a store: the caller reports the store damaged."""


def encode_text(value: str) -> str:
    """``value`` as stored: itself when clean, else the mark and its ASCII JSON (lossless either way)."""
    if "\x00" in value or value.startswith(_MARK) or (not value.isascii() and _SURROGATE.search(value)):
        return _MARK + json.dumps(value, ensure_ascii=True)
    return value


def decode_text(value: object, *, strict: bool = True) -> str:
    """The str that :func:`encode_text` stored as ``value``.

    Raises :class:`Damaged` when ``value`` is not such a string; with ``strict=False`` (rows of a
    PostgreSQL table written before escaping existed) an unparsable marked string reads as itself.
    """
    if not isinstance(value, str):
        raise Damaged(f"a text value of type {type(value).__name__}")
    if not value.startswith(_MARK):
        return value
    try:
        decoded = json.loads(value[1:])
    except ValueError as exc:
        if not strict:
            return value
        raise Damaged("an escaped text value that does not parse") from exc
    if not isinstance(decoded, str):
        if not strict:
            return value
        raise Damaged("an escaped text value that is not a string")
    return decoded


@dataclass(frozen=True)
class StoredEntry:
    """An entry's values as a store binds them: strings escaped, numbers checked."""

    tenant: str
    llm_hash: str
    prompt_key: str
    prompt: str
    payload: str
    created_at: float
    expires_at: float | None
    input_tokens: int
    output_tokens: int


def stored_entry(entry: CacheEntry) -> StoredEntry:
    """``entry``'s values ready to bind, or a named error.

    Wrong types and NaN times are caller bugs (:class:`InvalidParameterError`); a value beyond what
    a store can hold (:data:`MAX_FIELD_CHARS`, :data:`MAX_TOKENS`) is :class:`UnstorableEntryError`.
    """
    texts = []
    for name in _TEXT_FIELDS:
        value = getattr(entry, name)
        if not isinstance(value, str):
            raise InvalidParameterError(f"entry.{name}", allowed="a str", received=type(value).__name__)
        stored = encode_text(value)
        if len(stored) > MAX_FIELD_CHARS:
            raise UnstorableEntryError(f"entry.{name} is {len(stored):,} characters as stored; a cache store "
                                       f"holds at most {MAX_FIELD_CHARS:,}")
        texts.append(stored)
    created_at, expires_at = entry.created_at, entry.expires_at
    if isinstance(created_at, bool) or not isinstance(created_at, int | float) or not math.isfinite(created_at):
        raise InvalidParameterError("entry.created_at", allowed="finite Unix seconds", received=created_at)
    if expires_at is not None and (isinstance(expires_at, bool) or not isinstance(expires_at, int | float)
                                   or math.isnan(expires_at)):
        raise InvalidParameterError("entry.expires_at", allowed="Unix seconds (not NaN) or None", received=expires_at)
    tokens = []
    for name in ("input_tokens", "output_tokens"):
        value = getattr(entry, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidParameterError(f"entry.{name}", allowed="an int >= 0", received=value)
        if value > MAX_TOKENS:
            raise UnstorableEntryError(f"entry.{name} is {value}; a cache store holds at most {MAX_TOKENS}")
        tokens.append(value)
    tenant, llm_hash, prompt_key, prompt, payload = texts
    return StoredEntry(tenant=tenant, llm_hash=llm_hash, prompt_key=prompt_key, prompt=prompt, payload=payload,
                       created_at=float(created_at), expires_at=None if expires_at is None else float(expires_at),
                       input_tokens=tokens[0], output_tokens=tokens[1])


def row_checksum(stored: StoredEntry, vector_crc: int | None) -> int:
    """CRC-32 of every stored value of an entry and of its embedding's CRC-32 (an int in [0, 2**32))."""
    crc = 0
    for name in _TEXT_FIELDS:
        data = getattr(stored, name).encode("utf-8")
        crc = zlib.crc32(len(data).to_bytes(8, "little"), crc)
        crc = zlib.crc32(data, crc)
    expires = stored.expires_at
    crc = zlib.crc32(struct.pack("<d?dqqq", stored.created_at, expires is None, 0.0 if expires is None else expires,
                                 stored.input_tokens, stored.output_tokens,
                                 -1 if vector_crc is None else vector_crc), crc)
    return crc
