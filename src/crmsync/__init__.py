"""crmsync: a CRM's accounts, contacts, events, products and pipelines into any dlt destination.

The names below load on first use, so that a page-decoding worker process
(`crmsync.reading.page_decoding`) imports pyarrow and orjson, not dlt.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crmsync.profiles.connection import CrmConnection
    from crmsync.reading.source import SyncOptions, crm_source, rest_api_source

__all__ = ["CrmConnection", "SyncOptions", "crm_source", "rest_api_source"]


def __getattr__(name: str) -> Any:
    if name == "CrmConnection":
        return importlib.import_module("crmsync.profiles.connection").CrmConnection
    if name in __all__:
        return getattr(importlib.import_module("crmsync.reading.source"), name)
    raise AttributeError(f"module 'crmsync' has no attribute {name!r}")
