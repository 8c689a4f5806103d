"""crmsync's defaults for dlt settings, beneath everything the user configures.

Some dlt settings need other values for crmsync's fast path than dlt's own defaults (DuckDB's
memory limit, `_dlt_load_id` on Arrow tables). Setting them as environment variables would
override a user's `.dlt/config.toml`, and leak into the rest of the process. Instead they sit in
a config provider registered after all of dlt's, which dlt consults only for what no other
provider (environment, toml files, secrets vaults) answers, and only while a run applies them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import dlt
from dlt.common.configuration.providers import DictionaryProvider
from dlt.common.utils import clone_dict_nested


class CrmsyncDefaults(DictionaryProvider):
    NAME: ClassVar[str] = "crmsync defaults"


_PROVIDER = CrmsyncDefaults()


@contextmanager
def defaults(values: dict[str, Any]) -> Iterator[None]:
    """Applies `values` (a nested dict, dlt's sections as keys) beneath the user's config.

    Nested uses add to the outer values; each restores what was there before on exit, also when
    the block raises (which dlt's own `DictionaryProvider.values` does not).
    """
    if _PROVIDER.name not in {provider.name for provider in dlt.config.config_providers}:
        dlt.config.register_provider(_PROVIDER)
    with _PROVIDER.preserve():
        for key, value in clone_dict_nested(values).items():
            _PROVIDER.set_value(key, value, None)  # a dict merges into the one there
        yield
