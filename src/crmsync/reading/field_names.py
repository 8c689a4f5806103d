"""Field names a CRM may send that dlt cannot load as they are, and the names they land under.

dlt normalizes each field name (`snake_case`: `Lead Score` → `lead_score`) and reserves the
`_dlt_` prefix for its own columns. Three kinds of names go wrong:

- **reserved**: `{"id": 7, "_dlt_id": "x"}` would become the row's key (`_dlt_id`), so that
  every row with the same value shares one key and every child row points at one parent. The
  CRM's field lands as `crm` + its name: `crm_dlt_id`.
- **empty**: `{"": "x"}` lands as `_empty`, the name dlt's normalizer gives it.
- **clashing**: `{"email": "a@x", "Email": "b@x"}` normalize to one name; dlt would keep one
  value and drop the other. The field already in normal form (`email`) keeps the name, else the
  first in the record; each other lands as the name plus `_2`, `_3`, ... (`email_2`).

The checks are made per level of a record (a nested object's fields, flattened into
`parent__child` columns, are a level of their own). A name made of lower-case letters, digits
and single underscores is its own normal form, and a level of such names clashes with nothing,
so ordinary records cost a set lookup per name; dlt's naming is imported only for the others.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache, lru_cache
from typing import Any

EMPTY_NAME = "_empty"
"""dlt's name for an empty field name (`RelationalNormalizer.EMPTY_KEY_IDENTIFIER`)."""
RESERVED_PREFIX = "_dlt_"
RENAMED_RESERVED_PREFIX = "crm"

_PLAIN = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
_plain_names: set[str] = set()


def _is_plain(name: str) -> bool:
    if name in _plain_names:
        return True
    if _PLAIN.fullmatch(name) is None:
        return False
    _plain_names.add(name)
    return True


@cache
def normalized(name: str) -> str:
    """`name` as dlt's default naming convention (`snake_case`) loads it."""
    if not name or name.isspace():
        return EMPTY_NAME
    from dlt.common.normalizers.naming.snake_case import NamingConvention

    return NamingConvention().normalize_identifier(name)


def needs_renames(names: Sequence[str], top: bool) -> bool:
    """Whether a level of field names holds a reserved, empty or clashing name."""
    if all(_is_plain(name) for name in names):
        return False
    return bool(renames(tuple(names), top))


@lru_cache(maxsize=4096)
def renames(names: tuple[str, ...], top: bool) -> tuple[tuple[str, str], ...]:
    """`(field, name it lands under)` for each field of a level that must be renamed; `top`:
    the level of a table's row, where dlt's `_dlt_` columns live."""
    targets: dict[str, str] = {}
    for name in names:
        target = normalized(name)
        if top and target.startswith(RESERVED_PREFIX):
            target = normalized(RENAMED_RESERVED_PREFIX + target)
        targets[name] = target
    keepers: dict[str, str] = {}
    for name in sorted(names, key=lambda n: targets[n] != n):  # a normal-form name first
        keepers.setdefault(targets[name], name)
    taken = set(targets.values())
    moved = []
    for name in names:
        target = targets[name]
        if keepers[target] != name:
            suffix = 2
            while f"{target}_{suffix}" in taken:
                suffix += 1
            target = f"{target}_{suffix}"
            taken.add(target)
        if target != normalized(name):
            moved.append((name, target))
    return tuple(moved)


def rename_fields(record: dict[str, Any], top: bool) -> None:
    """Renames `record`'s reserved, empty and clashing fields in place (`renames`)."""
    if all(_is_plain(name) for name in record):
        return
    for name, target in renames(tuple(record), top):
        record[target] = record.pop(name)
