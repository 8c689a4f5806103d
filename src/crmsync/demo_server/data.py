"""Deterministic, deliberately untidy CRM records.

Real tenants send nullable fields both as ``null`` and not at all, mix scripts in names
("Müller & Söhne GmbH", "株式会社サンプル"), carry per-record ``custom_fields`` with
different keys, batch-update many records in the same second and soft-delete a few
percent of everything. A client that has only seen tidy data breaks on its first real
tenant, so the demo data has all of that, reproducibly: one ``random.Random`` per
resource, seeded from (seed, resource), drawn from in id order.
"""

from __future__ import annotations

import calendar
import random
import time
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeVar

Record = dict[str, Any]
T = TypeVar("T")

RESOURCES = ("accounts", "contacts", "events", "products", "pipelines")
DEFAULT_SIZES: dict[str, int] = {
    "accounts": 250,
    "contacts": 1200,
    "events": 3000,
    "products": 60,
    "pipelines": 4,
}

START = calendar.timegm((2024, 1, 1, 0, 0, 0))
END = calendar.timegm((2026, 6, 30, 23, 59, 59))


class Refs(NamedTuple):
    """How many accounts and contacts exist, so references always point at real ids."""

    accounts: int
    contacts: int


def format_timestamp(epoch: int) -> str:
    """RFC 3339 with a ``Z`` suffix and no fraction: the one form the store compares on.

    Only for years 1000-9999, where ``%Y`` has four digits and string order is time order.
    """
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _pick(rng: random.Random, items: Sequence[T]) -> T:
    # Cheaper than rng.choice, which matters at 200,000 records per resource.
    return items[int(rng.random() * len(items))]


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum())


FIRST_NAMES = (
    "Anna", "Ben", "Chloé", "David", "Émilie", "Fatima", "Giulia", "Hiroshi", "Ingrid",
    "Jürgen", "Karim", "Łukasz", "María", "Noah", "Olga", "Priya", "Quentin", "Rosa",
    "Siobhán", "Tomás", "Uma", "Viktor", "Wei", "Yara", "Zoë", "美咲", "Олег", "Søren",
)  # fmt: skip
LAST_NAMES = (
    "O'Brien", "Müller", "García", "Nguyễn", "Smith", "Johnson", "van der Berg", "Kowalski",
    "Rossi", "Schmidt-Weber", "Dubois", "Andersson", "Tanaka", "山田", "Иванова", "Okafor",
    "Patel", "Kim", "Silva", "Ó Súilleabháin", "Björk", "Fernández",
)  # fmt: skip
# Names without any Latin letter have no ASCII form; their mailboxes use a fallback.
_ASCII_NAMES = {name: _ascii(name) or "contact" for name in FIRST_NAMES + LAST_NAMES}
MAIL_DOMAINS = ("example.com", "mail.example.org", "beispiel.de", "exemple.fr", "example.co.jp")

COMPANIES = (
    ("Müller & Söhne GmbH", "mueller-soehne.de"),
    ("Acme Inc.", "acme.example"),
    ("Globex Corporation", "globex.example"),
    ("Initech LLC", "initech.example"),
    ("Nordlicht Energie AG", "nordlicht.example"),
    ("株式会社サンプル", "sample.example.jp"),
    ("Zoë O'Brien Consulting", "zoeobrien.example"),
    ("Café Olé S.A.R.L.", "cafe-ole.example"),
    ("Ørsted Analytics ApS", "orsted-analytics.example"),
    ("Łódź Logistics Sp. z o.o.", "lodz-logistics.example"),
    ("São Paulo Têxtil Ltda.", "sp-textil.example"),
    ("ООО Ромашка", "romashka.example"),  # noqa: RUF001 - Cyrillic on purpose
    ("Vandelay Industries", "vandelay.example"),
    ("Hooli", "hooli.example"),
    ("Tyrell Corp.", "tyrell.example"),
    ("Pied Piper", "piedpiper.example"),
)
INDUSTRIES = (
    "Software", "Manufacturing", "Retail", "Healthcare", "Financial Services", "Education",
    "Logistics", "Energy", "Media", "Hospitality",
)  # fmt: skip
CITIES = (
    ("München", "80331", "DE"), ("Berlin", "10115", "DE"), ("Zürich", "8001", "CH"),
    ("Paris", "75001", "FR"), ("São Paulo", "01000-000", "BR"), ("東京", "100-0001", "JP"),
    ("Kraków", "30-001", "PL"), ("Reykjavík", "101", "IS"), ("New York", "10001", "US"),
    ("London", "EC1A 1BB", "GB"), ("Dublin", "D02 X285", "IE"), ("Stockholm", "111 22", "SE"),
)  # fmt: skip
STREETS = (
    "Hauptstraße", "Rue de Rivoli", "Main Street", "Avenida Paulista", "Ulica Floriańska",
    "Baker Street", "Königsallee", "Strandvägen",
)  # fmt: skip
TAGS = ("enterprise", "smb", "partner", "churn-risk", "upsell", "vip", "beta", "öffentlich", "優先")
TITLES = (
    "CEO", "CTO", "VP Sales", "Head of Marketing", "Software Engineer", "Account Manager",
    "Einkaufsleiter", "Directrice financière", "Procurement Lead", "Data Analyst",
)  # fmt: skip
LIFECYCLE_STAGES = (
    "subscriber", "lead", "marketing_qualified", "sales_qualified", "opportunity", "customer",
    "evangelist",
)  # fmt: skip
TIERS = ("bronze", "silver", "gold", "platinum")
REGIONS = ("EMEA", "AMER", "APAC", "LATAM")
NOTES = (
    "Prefers email 📧",
    "VIP ⭐ — call before renewals",
    "Met at the trade fair in Köln 🚀",
    "Budget frozen until Q3",
    "Wants a demo of the API",
    "担当者が変更になりました",
)
SUBJECTS = (
    "Your quote 📄",
    "Angebot für Müller & Söhne",
    "Follow-up: product demo",
    "Renouvellement de contrat",
    "ご提案の件",
    "Quick question",
)
MAIL_CLIENTS = ("Gmail", "Outlook", "Apple Mail", "Thunderbird")
CALL_OUTCOMES = ("connected", "voicemail", "no_answer", "busy")
MEETING_TITLES = ("Kick-off", "Quarterly business review", "Pricing call", "Onboarding 🎉")
PRODUCT_LINES = ("Starter", "Pro", "Enterprise", "Präzisions", "Ultra", "Lite")
PRODUCT_KINDS = (
    ("Sensor", "SEN"), ("Licence", "LIC"), ("Support Plan", "SUP"), ("Gateway", "GW"),
    ("Analytics Seat", "ANA"), ("Café Bundle", "BUN"), ("🚀 Launch Kit", "KIT"),
)  # fmt: skip
CURRENCIES = ("USD", "EUR", "GBP", "JPY", "CHF", "SEK")
PIPELINE_NAMES = ("Sales", "Enterprise", "Renewals", "Partner Channel", "Onboarding", "Expansion")
STAGE_NAMES = ("Prospecting", "Qualification", "Needs Analysis", "Proposal", "Negotiation")
EVENT_TYPES = (
    "email_sent",
    "email_sent",
    "email_opened",
    "email_opened",
    "call",
    "meeting",
    "note",
)


def _nullable(rng: random.Random, record: Record, key: str, value: Any, missing: float) -> None:
    """Sets ``key`` to ``value``, or (``missing`` of the time) to null or not at all."""
    roll = rng.random()
    if roll >= missing:
        record[key] = value
    elif roll < missing / 2:
        record[key] = None


def _reference(rng: random.Random, count: int) -> int | None:
    return 1 + int(rng.random() * count) if count else None


def _custom_fields(rng: random.Random) -> dict[str, Any]:
    if rng.random() < 0.15:
        return {}
    fields: dict[str, Any] = {}
    if rng.random() < 0.6:
        fields["tier"] = _pick(rng, TIERS)
    if rng.random() < 0.5:
        fields["score"] = int(rng.random() * 101)
    if rng.random() < 0.3:
        fields["is_partner"] = rng.random() < 0.5
    if rng.random() < 0.5:
        fields["region"] = _pick(rng, REGIONS)
    if rng.random() < 0.25:
        fields["renewal_date"] = format_timestamp(rng.randint(START, END))[:10]
    if rng.random() < 0.05:
        fields["note"] = _pick(rng, NOTES)
    return fields


def _phone(rng: random.Random) -> str:
    digits = f"{int(rng.random() * 10**7):07d}"
    style = int(rng.random() * 3)
    if style == 0:
        return f"+49 30 {digits}"
    if style == 1:
        return f"(555) {digits[:3]}-{digits[3:]}"
    return f"+44{digits}000"


def _price(rng: random.Random) -> str:
    return f"{rng.randint(5, 5000)}.{_pick(rng, ('00', '99', '50', '95'))}"


def _tags(rng: random.Random) -> list[str]:
    return rng.sample(TAGS, int(rng.random() * 5))


def _payload(rng: random.Random, event_type: str) -> dict[str, Any]:
    if event_type == "email_sent":
        return {"subject": _pick(rng, SUBJECTS), "template_id": rng.randint(100, 199)}
    if event_type == "email_opened":
        return {"subject": _pick(rng, SUBJECTS), "client": _pick(rng, MAIL_CLIENTS)}
    if event_type == "call":
        return {"duration_seconds": rng.randint(5, 3600), "outcome": _pick(rng, CALL_OUTCOMES)}
    if event_type == "meeting":
        attendees = [
            f"{_ASCII_NAMES[_pick(rng, FIRST_NAMES)]}@{_pick(rng, MAIL_DOMAINS)}"
            for _ in range(rng.randint(1, 4))
        ]
        return {"title": _pick(rng, MEETING_TITLES), "attendees": attendees}
    return {"text": _pick(rng, NOTES)}


def _account(rng: random.Random, record_id: int, refs: Refs, created: int) -> Record:
    name, domain = _pick(rng, COMPANIES)
    city, postal_code, country = _pick(rng, CITIES)
    if rng.random() < 0.2:
        name = f"{name} – {city}"  # noqa: RUF001 - a real en dash, as CRM users type it
    record: Record = {"id": record_id, "name": name}
    _nullable(rng, record, "domain", domain, 0.1)
    _nullable(rng, record, "industry", _pick(rng, INDUSTRIES), 0.15)
    _nullable(rng, record, "employee_count", int(10 ** (rng.random() * 5)), 0.2)
    _nullable(rng, record, "annual_revenue", round(rng.uniform(5e4, 5e8), 2), 0.3)
    _nullable(rng, record, "owner_id", rng.randint(1, 40), 0.1)
    address = {
        "street": f"{_pick(rng, STREETS)} {rng.randint(1, 250)}",
        "city": city,
        "postal_code": postal_code,
        "country": country,
    }
    _nullable(rng, record, "address", address, 0.2)
    record["tags"] = _tags(rng)
    record["custom_fields"] = _custom_fields(rng)
    return record


def _contact(rng: random.Random, record_id: int, refs: Refs, created: int) -> Record:
    first, last = _pick(rng, FIRST_NAMES), _pick(rng, LAST_NAMES)
    mailbox = f"{_ASCII_NAMES[first]}.{_ASCII_NAMES[last]}"
    if rng.random() < 0.3:
        mailbox += str(record_id)
    record: Record = {"id": record_id}
    _nullable(rng, record, "account_id", _reference(rng, refs.accounts), 0.15)
    _nullable(rng, record, "first_name", first, 0.04)
    _nullable(rng, record, "last_name", last, 0.04)
    _nullable(rng, record, "email", f"{mailbox}@{_pick(rng, MAIL_DOMAINS)}", 0.08)
    _nullable(rng, record, "phone", _phone(rng), 0.3)
    _nullable(rng, record, "title", _pick(rng, TITLES), 0.25)
    _nullable(rng, record, "lifecycle_stage", _pick(rng, LIFECYCLE_STAGES), 0.1)
    if rng.random() < 0.1:
        # A field outside the contract, as a newer API version would send it.
        record["linkedin_url"] = f"https://www.linkedin.com/in/{mailbox.replace('.', '-')}"
    record["custom_fields"] = _custom_fields(rng)
    return record


def _event(rng: random.Random, record_id: int, refs: Refs, created: int) -> Record:
    event_type = _pick(rng, EVENT_TYPES)
    record: Record = {"id": record_id, "type": event_type}
    _nullable(rng, record, "contact_id", _reference(rng, refs.contacts), 0.2)
    _nullable(rng, record, "account_id", _reference(rng, refs.accounts), 0.3)
    record["occurred_at"] = format_timestamp(max(START, created - int(rng.random() * 3600)))
    record["payload"] = _payload(rng, event_type)
    return record


def _product(rng: random.Random, record_id: int, refs: Refs, created: int) -> Record:
    kind, sku_prefix = _pick(rng, PRODUCT_KINDS)
    return {
        "id": record_id,
        "sku": f"{sku_prefix}-{record_id:05d}",
        "name": f"{_pick(rng, PRODUCT_LINES)} {kind}",
        "price": _price(rng),
        "currency": _pick(rng, CURRENCIES),
        "active": rng.random() < 0.85,
    }


def _stages(rng: random.Random, pipeline_id: int) -> list[dict[str, Any]]:
    open_stages = STAGE_NAMES[: rng.randint(1, len(STAGE_NAMES))]
    odds = [
        round(position / (len(open_stages) + 1), 2) for position in range(1, len(open_stages) + 1)
    ]
    names = [*open_stages, "Closed Won", "Closed Lost"]
    return [
        {"id": pipeline_id * 100 + position, "name": name, "position": position, "probability": p}
        for position, (name, p) in enumerate(zip(names, [*odds, 1.0, 0.0], strict=True), start=1)
    ]


def _pipeline(rng: random.Random, record_id: int, refs: Refs, created: int) -> Record:
    base = PIPELINE_NAMES[(record_id - 1) % len(PIPELINE_NAMES)]
    lap = (record_id - 1) // len(PIPELINE_NAMES)
    return {
        "id": record_id,
        "name": f"{base} {lap + 1}" if lap else base,
        "is_default": record_id == 1,
        "stages": _stages(rng, record_id),
    }


Builder = Callable[[random.Random, int, Refs, int], Record]
_BUILDERS: dict[str, Builder] = {
    "accounts": _account,
    "contacts": _contact,
    "events": _event,
    "products": _product,
    "pipelines": _pipeline,
}


def generate(resource: str, count: int, seed: int, refs: Refs) -> list[Record]:
    """Records with ids 1..count; ``created_at`` rises with the id, as in a real CRM."""
    rng = random.Random(f"{seed}:{resource}")
    build = _BUILDERS[resource]
    deletable = resource != "events"
    update_share = 0.07 if resource == "events" else 0.65  # events are rarely updated
    step = (END - START) // (count + 1)
    # A few bulk edits: many records then share one updated_at to the second.
    batches = sorted(rng.randint((START + END) // 2, END) for _ in range(3))
    records = []
    for index in range(count):
        created = START + index * step + int(rng.random() * step)
        record = build(rng, index + 1, refs, created)
        roll = rng.random()
        updated = created
        if roll < 0.05 and batches[-1] >= created:
            updated = _pick(rng, [batch for batch in batches if batch >= created])
        elif roll < update_share:
            updated = rng.randint(created, END)
        record["created_at"] = format_timestamp(created)
        fate = rng.random() if deletable else 1.0
        if fate < 0.03:  # soft-deleted; the deletion is the record's latest update
            updated = rng.randint(updated, END)
        record["updated_at"] = format_timestamp(updated)
        if fate < 0.03:
            record["deleted_at"] = record["updated_at"]
        elif fate < 0.5:
            record["deleted_at"] = None
        records.append(record)
    return records


def new_record(resource: str, record_id: int, rng: random.Random, now: int, refs: Refs) -> Record:
    """A record as the CRM stores it the moment it is created."""
    record = _BUILDERS[resource](rng, record_id, refs, now)
    record["created_at"] = record["updated_at"] = format_timestamp(now)
    return record


def _account_changes(rng: random.Random, record: Record) -> list[tuple[str, Any]]:
    return [
        ("employee_count", int(10 ** (rng.random() * 5))),
        ("tags", _tags(rng)),
        ("industry", _pick(rng, INDUSTRIES)),
    ]


def _contact_changes(rng: random.Random, record: Record) -> list[tuple[str, Any]]:
    return [
        ("lifecycle_stage", _pick(rng, LIFECYCLE_STAGES)),
        ("title", _pick(rng, TITLES)),
        ("phone", _phone(rng)),
    ]


def _event_changes(rng: random.Random, record: Record) -> list[tuple[str, Any]]:
    return [("payload", _payload(rng, record["type"]))]


def _product_changes(rng: random.Random, record: Record) -> list[tuple[str, Any]]:
    return [("price", _price(rng)), ("active", not record["active"])]


def _pipeline_changes(rng: random.Random, record: Record) -> list[tuple[str, Any]]:
    return [("name", f"{record['name']} (revised)"), ("stages", _stages(rng, record["id"]))]


_CHANGES: dict[str, Callable[[random.Random, Record], list[tuple[str, Any]]]] = {
    "accounts": _account_changes,
    "contacts": _contact_changes,
    "events": _event_changes,
    "products": _product_changes,
    "pipelines": _pipeline_changes,
}


def changes(resource: str, record: Record, rng: random.Random) -> Record:
    """A field or two of ``record`` edited the way a CRM user would; new objects only."""
    candidates = _CHANGES[resource](rng, record)
    return dict(rng.sample(candidates, min(len(candidates), rng.randint(1, 2))))
