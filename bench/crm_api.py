"""The slice of the CRM API contract (``shared/crm-api.md``) the benchmark needs.

Kept free of heavy imports: the harness (``compare.py``) and every contender's child process
read it, and a child should load only what its own contender needs.
"""

from __future__ import annotations

from typing import NamedTuple

USERNAME = "demo"
PASSWORD = "demo-password"
PAGE_SIZE = 500
"""The contract's largest page size; every contender asks for it."""


class Endpoint(NamedTuple):
    path: str
    page_param: str
    limit_param: str


ENDPOINTS: dict[str, Endpoint] = {
    "accounts": Endpoint("/accounts", "page[page]", "page[limit]"),
    "contacts": Endpoint("/contacts", "page[page]", "page[limit]"),
    "events": Endpoint("/events", "page", "limit"),
    "products": Endpoint("/products", "page[page]", "page[limit]"),
    "pipelines": Endpoint("/pipelines", "page[page]", "page[limit]"),
}
"""Resource name (also its envelope key and its root table's name) to its list endpoint."""
