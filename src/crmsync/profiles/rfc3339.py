"""RFC 3339 timestamps, every form the RFC allows, as timezone-aware datetimes.

The contract sends `2026-03-01T12:00:00Z`, but RFC 3339 also allows `2026-03-01t12:00:00z`
(§5.6: "T" and "Z" may be lower case), a space for the `T` (§5.6 note), any offset
(`+02:00`, `-00:00`) and any number of fractional digits (`.123456789`). Python's
`datetime.fromisoformat` rejects the lower-case forms and, before 3.12, more than six
fractional digits; dlt's own coercion loads such a value as a text variant and leaves the
timestamp column NULL. Fractions are cut to microseconds, the precision the column holds.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)


def parse_timestamp(text: str) -> datetime | None:
    """`text` as a UTC datetime, or None where it is not an RFC 3339 date-time.

    A leap second (`23:59:60`, which a datetime cannot hold) is kept as the last microsecond
    of its minute, so that it still sorts after every earlier instant.
    """
    match = _RFC3339.fullmatch(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    leap = second == "60"
    try:
        offset = timedelta(0) if zulu else timedelta(hours=int(off_h), minutes=int(off_m))
        zone = UTC if not offset else timezone(-offset if sign == "-" else offset)
        value = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            59 if leap else int(second),
            999999 if leap else micros,
            tzinfo=zone,
        )
    except ValueError:  # a day, hour or offset out of range
        return None
    return value.astimezone(UTC)
