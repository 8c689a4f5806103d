"""A response body's JSON: orjson, with integers beyond 64 bits exact.

Imports nothing but the JSON libraries, so that a page-decoding worker process
(`crmsync.reading.page_decoding`) starts without the HTTP stack.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_DIGITS_AS_ZEROS = bytes.maketrans(b"123456789", b"000000000")
_WIDE_INTEGER = b"0" * 19
"""Nineteen digits in a row: an integer that orjson may read as a float (beyond 2**64, or
below -2**63), while a float's shortest form has at most 17 digits."""


def loads(body: bytes) -> Any:
    """The JSON body, integers beyond 64 bits exact (`{"score": 1000000000000000000000000000007}`).

    orjson, which decodes pages several times faster than `json`, turns an integer beyond
    2**64 into the nearest float (`1e+30`), silently; and from -2**63 down, one beyond 2**63.
    A body holding a run of 19 digits (found in C: the digits mapped to zeros, then searched
    for) is decoded with `json`, whose integers are exact. Raises `orjson.JSONDecodeError`
    either way.
    """
    if _WIDE_INTEGER in body.translate(_DIGITS_AS_ZEROS):
        try:
            return json.loads(body)
        except ValueError as error:
            raise orjson.JSONDecodeError(str(error), "", 0) from None
    return orjson.loads(body)
