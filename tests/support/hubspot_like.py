"""A test server in the shape of HubSpot's CRM API v3 object lists
(`/crm/v3/objects/contacts`, `/crm/v3/objects/companies`).

Followed from HubSpot's public docs (developers.hubspot.com: "Retrieve all contacts" /
"companies" of the CRM objects API, the search API, the legacy "recently modified" lists):

- cursor pages: `limit` (default 10, at most 100) and `after`, an opaque token that the
  answer gives as `paging.next.after`, with `paging.next.link` the URL of the next page; the
  last page has no `paging`. `{"results": [...], "paging": {"next": {"after": "NTI1Cg==",
  "link": "..."}}}`.
- a bearer token (`Authorization: Bearer ...`, a private app's access token); a missing or
  wrong one is a 401 `{"status": "error", "category": "INVALID_AUTHENTICATION", ...}`.
- string ids (`"101"`); each record `{"id", "properties": {...}, "createdAt", "updatedAt",
  "archived"}`, every property value a string; `properties` (comma-separated) asks for more
  properties than the default ones (contacts: `createdate`, `email`, `firstname`, `lastname`,
  `hs_object_id`, `lastmodifieddate`; companies: `createdate`, `domain`, `name`,
  `hs_lastmodifieddate`, `hs_object_id`).
- `archived=true` lists only the archived records, which carry `archived: true` and
  `archivedAt`; the default lists only the others.

Where this server goes beyond the docs: HubSpot's GET lists have no "changed since" filter
(HubSpot filters by `lastmodifieddate` only in the search API, a POST whose filter takes epoch
milliseconds). This server's lists honour `since`, in epoch milliseconds, as HubSpot's legacy
"recently modified" lists define it ("modified after and including timestamp x ... a UNIX
formatted timestamp in milliseconds"): records whose `updatedAt` is at or after it. A `since`
that is not an integer is a 400. Records are listed in ascending (numeric) id order; contact
ids cross from 5 to 6 digits (`"99999"`, `"100000"`) inside a page.
"""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from tests.support.api_shapes import Answer, ShapeServer, in_id_order

TOKEN = "pat-na1-7c1d9e04-5b6a-4f2e-9d3c-hubspot-canary"
MAX_LIMIT = 100
SEEDED_FROM = datetime(2025, 1, 1, tzinfo=UTC)
FIRST_CONTACT_ID = 99_601
FIRST_COMPANY_ID = 101
DEFAULT_PROPERTIES = {
    "contacts": (
        "createdate",
        "email",
        "firstname",
        "lastname",
        "hs_object_id",
        "lastmodifieddate",
    ),
    "companies": ("createdate", "domain", "name", "hs_lastmodifieddate", "hs_object_id"),
}
MODIFIED = {"contacts": "lastmodifieddate", "companies": "hs_lastmodifieddate"}
"""The property that holds each object's last change (HubSpot names it per object type)."""
FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken")
LAST_NAMES = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson")
STAGES = ("subscriber", "lead", "opportunity", "customer")


def hubspot_time(moment: datetime) -> str:
    """`2025-03-04T05:06:07.123Z`: UTC, milliseconds, as HubSpot writes timestamps."""
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def epoch_ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


class HubSpotLike(ShapeServer):
    resources = ("contacts", "companies")

    def __init__(
        self, contacts: int = 950, companies: int = 230, token: str = TOKEN, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.token = token
        rng = random.Random(20260102)
        for n in range(FIRST_CONTACT_ID, FIRST_CONTACT_ID + contacts):
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            self._seed("contacts", n, rng, {
                "email": f"{first.lower()}.{last.lower()}.{n}@example.com",
                "firstname": first,
                "lastname": last,
                "phone": f"+49 30 {n:07d}",
                "lifecyclestage": rng.choice(STAGES),
            })  # fmt: skip
        for n in range(FIRST_COMPANY_ID, FIRST_COMPANY_ID + companies):
            self._seed("companies", n, rng, {
                "name": f"Company {n}",
                "domain": f"company{n}.example.com",
                "numberofemployees": str(rng.randrange(1, 5000)),
                "industry": rng.choice(("COMPUTER_SOFTWARE", "RETAIL", "BANKING")),
            })  # fmt: skip

    def _seed(self, resource: str, n: int, rng: random.Random, fields: dict[str, str]) -> None:
        created = SEEDED_FROM + timedelta(milliseconds=rng.randrange(0, 200 * 86_400_000))
        modified = created + timedelta(milliseconds=rng.randrange(0, 9 * 86_400_000))
        self.records[resource][str(n)] = {
            "id": str(n),
            "properties": {
                "createdate": hubspot_time(created),
                "hs_object_id": str(n),
                MODIFIED[resource]: hubspot_time(modified),
                **fields,
            },
            "createdAt": hubspot_time(created),
            "updatedAt": hubspot_time(modified),
            "archived": False,
        }

    # mutations, as a user of HubSpot's web app makes them

    def update(self, resource: str, record_id: str, **properties: str) -> dict[str, Any]:
        record = self.records[resource][record_id]
        now = hubspot_time(self.tick())
        record["properties"].update(properties, **{MODIFIED[resource]: now})
        record["updatedAt"] = now
        return record

    def remove(self, resource: str, record_id: str) -> dict[str, Any]:
        """Archives the record (HubSpot's delete)."""
        record = self.update(resource, record_id)
        record.update(archived=True, archivedAt=record["updatedAt"])
        self.tick_done()
        return record

    def live_ids(self, resource: str) -> list[str]:
        return [r["id"] for r in in_id_order(self.records[resource]) if not r["archived"]]

    # the API

    def authorized(self, query: dict[str, str], headers: dict[str, str]) -> bool:
        return headers.get("authorization") == f"Bearer {self.token}"

    def unauthorized(self) -> Any:
        return {
            "status": "error",
            "message": "Authentication credentials not found.",
            "correlationId": "2f6c0f8e-0000-4000-8000-000000000000",
            "category": "INVALID_AUTHENTICATION",
        }

    def respond(self, method: str, path: str, query: dict[str, str]) -> Answer:
        resource = path.removeprefix("/crm/v3/objects/")
        if not path.startswith("/crm/v3/objects/") or resource not in self.records:
            return _failure(404, "OBJECT_NOT_FOUND", f"Unable to infer object type from: {path}")
        if method != "GET":
            return _failure(405, "VALIDATION_ERROR", "Method not allowed")
        try:
            limit = _limit(query.get("limit"))
            after = _after(query.get("after"))
            since = _since(query.get("since"))
        except ValueError as bad:
            return _failure(400, "VALIDATION_ERROR", str(bad))
        archived = query.get("archived", "false").lower() == "true"
        wanted = set(DEFAULT_PROPERTIES[resource])
        wanted.update(name for name in query.get("properties", "").split(",") if name)
        view = self.view(
            resource,
            (archived, since),
            lambda record: (
                record["archived"] is archived
                and (since is None or epoch_ms(record["updatedAt"]) >= since)
            ),
        )
        listed = [record for record in view if after is None or int(record["id"]) > after]
        page = [_with_properties(record, wanted) for record in listed[:limit]]
        body: dict[str, Any] = {"results": page}
        if len(listed) > limit:
            token = base64.b64encode(page[-1]["id"].encode()).decode()
            link = urlencode({**query, "after": token})
            body["paging"] = {"next": {"after": token, "link": f"{self.url}{path}?{link}"}}
        return Answer(200, body, rows=len(page))


def _with_properties(record: dict[str, Any], wanted: set[str]) -> dict[str, Any]:
    properties = {k: v for k, v in record["properties"].items() if k in wanted}
    return {**record, "properties": properties}


def _limit(raw: str | None) -> int:
    if raw is None:
        return 10
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise ValueError(f"limit must be an integer from 1 to {MAX_LIMIT}, got {raw!r}")
    return int(raw)


def _after(raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        return int(base64.b64decode(raw, validate=True).decode())
    except ValueError:
        raise ValueError(f"after is not a paging cursor this API gave: {raw!r}") from None


def _since(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()):
        raise ValueError(f"since must be a UNIX timestamp in milliseconds, got {raw!r}")
    return int(raw)


def _failure(status: int, category: str, message: str) -> Answer:
    return Answer(status, {"status": "error", "message": message, "category": category})
