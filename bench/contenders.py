"""Runs one contender of ``compare.py`` in this process, which exists for that run alone.

Usage, from an empty working folder (the contender writes its DuckDB file there)::

    python bench/contenders.py {crmsync,plain,hand} BASE_URL

Prints one JSON line on stdout: ``{"rows": {resource: rows in its root table},
"peak_rss_mb": float, "client_requests": int or null}``. Each contender lives in its own
module, imported only here, so that no contender pays for another's imports (the
hand-written one never loads dlt).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import duckdb
import orjson
from crm_api import ENDPOINTS

MODULES = {"crmsync": "contender_crmsync", "plain": "contender_plain", "hand": "contender_hand"}
"""Each module has ``DATABASE`` (file name), ``SCHEMA`` and ``run(base_url, workdir)``, which
returns the requests the contender itself counted, or None if it does not count them; one
that starts helper processes has ``helpers_peak_kb()``, the sum of their peaks."""


def vm_hwm_kb(pid: int | str = "self") -> int:
    """A process's high-water resident memory: ``VmHWM``, per address space, afresh at exec."""
    status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    return next(int(line.split()[1]) for line in status.splitlines() if line[:6] == "VmHWM:")


def peak_rss_mb(helpers_kb: int = 0) -> float:
    """This process's peak plus the peaks of the helper processes the contender reports.

    Neither ``ru_maxrss`` would do: Linux carries it across fork and exec, so RUSAGE_SELF
    would report the harness's own peak and RUSAGE_CHILDREN a helper's parent's size at the
    moment it was started (556 MB for a 69 MB page decoder, measured). Adding the peaks
    over-counts when they did not coincide, never under.
    """
    return (vm_hwm_kb() + helpers_kb) / 1024


def count_rows(database: Path, schema: str) -> dict[str, int]:
    """Rows in each resource's root table; 0 for a table the contender never created."""
    with duckdb.connect(str(database), read_only=True) as db:
        tables = {
            name
            for (name,) in db.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = ?",
                [schema],
            ).fetchall()
        }
        return {
            name: db.execute(f'SELECT count(*) FROM "{schema}"."{name}"').fetchall()[0][0]
            if name in tables
            else 0
            for name in ENDPOINTS
        }


def main(argv: list[str]) -> None:
    name, base_url = argv
    contender = importlib.import_module(MODULES[name])
    workdir = Path.cwd()
    client_requests = contender.run(base_url, workdir)
    report = {
        "rows": count_rows(workdir / contender.DATABASE, contender.SCHEMA),
        "peak_rss_mb": peak_rss_mb(getattr(contender, "helpers_peak_kb", lambda: 0)()),
        "client_requests": client_requests,
    }
    sys.stdout.write(orjson.dumps(report).decode() + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
