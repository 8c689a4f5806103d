"""A page answers the steps' questions the same whether its records are dicts or a table."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from crmsync.reading.page import Page

RECORDS = [
    {"id": 1, "deleted_at": None, "archived": False},
    {"id": 2, "deleted_at": "2024-05-01T09:00:00Z", "archived": None},
    {"id": 3, "deleted_at": None, "archived": True},
    {"id": 4, "deleted_at": None, "archived": None},
]


class _PageData(list[Any]):
    """rest_api's page: the records, with the response and paginator of their request."""

    response = "the response"
    paginator = "the paginator"


def page_of(form: str, records: list[dict[str, Any]] = RECORDS) -> Page:
    if form == "table":
        return Page(pa.Table.from_pylist(records), served=len(records))
    return Page.of(list(records))


def ids_of(page: Page) -> list[Any]:
    return page.ids("id")


FORMS = pytest.mark.parametrize("form", ["dicts", "table"])


@pytest.mark.parametrize(
    ("data", "served"),
    [
        (None, 0),
        ([], 0),
        ([{"id": 1}, {"id": 2}], 2),
        ([Page(pa.table({"id": [1]}), served=3)], 3),
    ],
    ids=["none", "empty", "dicts", "worker-table"],
)
def test_a_page_counts_the_records_the_crm_served(data: list[Any] | None, served: int) -> None:
    assert Page.of(data).served == served


def test_a_worker_page_handed_on_by_rest_api_keeps_its_table_and_takes_the_context() -> None:
    table = pa.table({"id": [1, 2]})

    page = Page.of(_PageData([Page(table, served=5)]))

    assert (page.table, page.served) == (table, 5)
    assert (page.response, page.paginator) == ("the response", "the paginator")


@FORMS
def test_ids_are_python_values_in_either_form(form: str) -> None:
    assert ids_of(page_of(form)) == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("page", "ids"),
    [
        (Page.of([{"id": 1}, {"name": "x"}, "not a record"]), [1, None, None]),
        (Page(pa.table({"name": ["a", "b"]}), served=2), [None, None]),
    ],
    ids=["dicts", "table-without-the-column"],
)
def test_a_record_without_the_key_has_none(page: Page, ids: list[Any]) -> None:
    assert ids_of(page) == ids


@FORMS
def test_keep_answers_a_new_page_with_the_masked_records_and_the_same_context(form: str) -> None:
    page = page_of(form)
    page = Page(page.records, page.served, "the response", "the paginator")

    kept = page.keep([False, True, False, True])

    assert ids_of(kept) == [2, 4]
    assert ids_of(page) == [1, 2, 3, 4]
    assert (kept.served, kept.response, kept.paginator) == (4, "the response", "the paginator")
    assert (kept.table is not None) is (form == "table")


@FORMS
@pytest.mark.parametrize(
    ("stamps", "flags", "live"),
    [
        (["deleted_at"], [], [1, 3, 4]),
        ([], ["archived"], [1, 2, 4]),
        (["deleted_at"], ["archived"], [1, 4]),
        (["not_a_field"], ["not_a_flag"], [1, 2, 3, 4]),
    ],
    ids=["stamp", "flag", "both", "absent-fields"],
)
def test_live_drops_the_records_dlts_hard_delete_would_delete(
    form: str, stamps: list[str], flags: list[str], live: list[int]
) -> None:
    page = page_of(form)

    assert ids_of(page.live(stamps, flags)) == live


@FORMS
def test_a_page_without_deleted_records_is_its_own_live_page(form: str) -> None:
    page = page_of(form, [record for record in RECORDS if record["id"] in (1, 4)])

    assert page.live(["deleted_at"], []) is page
