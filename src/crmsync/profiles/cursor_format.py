"""How a CRM writes its cursor's timestamps, in its records and in the request's filter param.

CRMs disagree: the contract sends RFC 3339 (`2026-03-01T12:00:00Z`), others a local-looking
`2026-03-01 12:00:00` that is UTC by their docs, others epoch seconds or milliseconds
(`1772366400000`). A profile says which in `endpoint.incremental.cursor_format`:

    rfc3339              (the default)  2026-03-01T12:00:00Z
    epoch_seconds                       1772366400
    epoch_milliseconds                  1772366400000
    a strftime pattern   "%Y-%m-%d %H:%M:%S"   2026-03-01 12:00:00

crmsync turns every cursor value into a UTC datetime as it reads it (the cursor column lands as
a timestamp) and writes the filter param back in the CRM's format. Records may carry the value
in that format or in RFC 3339: many CRMs filter by epoch milliseconds but write ISO timestamps
in their records (HubSpot's `hs_lastmodifieddate`). The cursor then compares,
and the lookback subtracts, in one kind of value whatever the format, and a pattern without a
zone means UTC: the result never depends on the machine's time zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from crmsync.profiles.rfc3339 import parse_timestamp

RFC3339 = "rfc3339"
EPOCH_SECONDS = "epoch_seconds"
EPOCH_MILLISECONDS = "epoch_milliseconds"
NAMED = (RFC3339, EPOCH_SECONDS, EPOCH_MILLISECONDS)


class CursorFormatError(ValueError):
    """A `cursor_format` that names no format."""


@dataclass(frozen=True)
class CursorFormat:
    spec: str

    @property
    def is_rfc3339(self) -> bool:
        return self.spec == RFC3339

    def parse(self, value: Any) -> datetime | None:
        """`value` as a UTC datetime, or None where it is not in this format."""
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        if self.spec == RFC3339:
            return parse_timestamp(value) if isinstance(value, str) else None
        return self._parse_own(value)

    def parse_record_value(self, value: Any) -> datetime | None:
        """A record's cursor value: in this format, or else in RFC 3339."""
        parsed = self.parse(value)
        if parsed is None and isinstance(value, str):
            return parse_timestamp(value)
        return parsed

    def _parse_own(self, value: Any) -> datetime | None:
        if self.spec in (EPOCH_SECONDS, EPOCH_MILLISECONDS):
            number = _number(value)
            if number is None:
                return None
            seconds = number / 1000 if self.spec == EPOCH_MILLISECONDS else number
            try:
                return datetime.fromtimestamp(seconds, UTC)
            except (OverflowError, OSError, ValueError):
                return None
        if not isinstance(value, str):
            return None
        try:
            parsed = datetime.strptime(value.strip(), self.spec)
        except ValueError:
            return None
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)

    def render(self, value: datetime) -> str | int:
        """`value` as the CRM's filter param wants it."""
        moment = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
        if self.spec == RFC3339:
            return moment.isoformat().replace("+00:00", "Z")
        if self.spec == EPOCH_SECONDS:
            return int(moment.timestamp())
        if self.spec == EPOCH_MILLISECONDS:
            return int(moment.timestamp() * 1000)
        return moment.strftime(self.spec)

    def describe(self) -> str:
        own = self.spec if self.spec in NAMED else f"the pattern {self.spec!r}"
        return own if self.is_rfc3339 else f"{own} nor RFC 3339"


def cursor_format(spec: Any = None) -> CursorFormat:
    """The format a profile names (RFC 3339 when it names none)."""
    if spec is None:
        return CursorFormat(RFC3339)
    if not isinstance(spec, str) or (spec not in NAMED and "%" not in spec):
        raise CursorFormatError(
            f"cursor_format {spec!r} is not one of {', '.join(NAMED)} or a strftime pattern"
            ' such as "%Y-%m-%d %H:%M:%S"'
        )
    return CursorFormat(spec)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None
