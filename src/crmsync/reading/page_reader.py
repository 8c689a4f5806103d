"""What a run reads pages with: its HTTP session, the decoder of its bodies, its look-ahead.

The session (`crmsync.transport.http_policy.CrmSession`) sends requests and knows nothing of
pages; it hands each `200`'s body to the decoder it is given, within the attempt, so that a
body that is no page is retried. The decoder here is where every body becomes what rest_api
reads, in one place: JSON decoded once, in a worker process as an Arrow table for the resources
registered with it (`crmsync.reading.page_decoding`) or in the receiving thread as dicts, then
checked to be a page (`crmsync.reading.page_shape`). The look-ahead
(`crmsync.reading.lookahead`) sends pages ahead through the session, and the session hands
them over when rest_api asks. `PageReader` wires the three once, for a run (`crm_source`) or a
check, and closes them together.
"""

from __future__ import annotations

from typing import Any

from crmsync.ledger import RunLedger
from crmsync.reading.lookahead import PageLookahead
from crmsync.reading.page_decoding import DictDecoder, MalformedBody, ProcessDecoder
from crmsync.reading.page_shape import PageShapes
from crmsync.transport.http_policy import CrmSession, HttpPolicy, MalformedBodyError


class PageDecoder:
    """The session's body decoder: a body decoded by `workers` where given (dicts in this
    thread for the resources not registered with it), else here, then checked to be a page
    of its endpoint's shape."""

    def __init__(self, workers: ProcessDecoder | None = None) -> None:
        self.workers = workers
        self._decode: DictDecoder = workers or DictDecoder()
        self._shapes = PageShapes()

    def expect_records(self, url: str, key: str) -> None:
        """Pages of `url` (any query) must hold a list of records under `key`."""
        self._shapes.expect_records(url, key)

    def __call__(self, path: str, body: bytes) -> Any:
        try:
            decoded = self._decode(path, body)
        except MalformedBody as error:
            raise MalformedBodyError(f"body is not valid JSON ({error})") from None
        self._shapes.check(path, decoded)
        return decoded

    def close(self) -> None:
        self._decode.close()


class PageReader:
    """A session, its decoder (with `page_processes` worker processes; 0 decodes every page in
    the run's own process) and its look-ahead, under `policy` and counted in `ledger`."""

    def __init__(
        self, policy: HttpPolicy, ledger: RunLedger | None = None, page_processes: int = 0
    ) -> None:
        self.decoder = PageDecoder(ProcessDecoder(page_processes) if page_processes else None)
        self.session = CrmSession(policy, ledger, self.decoder)
        self.lookahead = PageLookahead(self.session, policy.max_in_flight)
        self.lookahead.scarce = self.session.budget.scarce
        self.session.prefetched = self.lookahead.take

    def close(self) -> None:
        self.lookahead.close()
        self.decoder.close()
        self.session.close()
