"""crmsync's defaults answer only what the user's dlt configuration leaves unset."""

from __future__ import annotations

import dlt
import pytest

from crmsync.profiles.config_defaults import defaults

KEY = "destination.duckdb.credentials.global_config"
DEFAULT = {"destination": {"duckdb": {"credentials": {"global_config": {"memory_limit": "70MB"}}}}}


def test_a_default_answers_a_setting_nobody_configured() -> None:
    with defaults(DEFAULT):
        assert dlt.config.get(KEY) == {"memory_limit": "70MB"}


def test_the_users_setting_wins_over_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG", '{"threads": 1}')

    with defaults(DEFAULT):
        assert dlt.config.get(KEY) == '{"threads": 1}'


def test_defaults_apply_only_while_their_block_runs_even_when_it_fails() -> None:
    with defaults(DEFAULT):
        pass
    with pytest.raises(RuntimeError), defaults(DEFAULT):
        raise RuntimeError("the run failed")

    assert dlt.config.get(KEY) is None


def test_nested_defaults_add_to_the_outer_ones_and_restore_them() -> None:
    outer = {"normalize": {"parquet_normalizer": {"add_dlt_load_id": True}}}
    with defaults(outer):
        with defaults(DEFAULT):
            assert dlt.config.get("normalize.parquet_normalizer.add_dlt_load_id") is True
            assert dlt.config.get(KEY) == {"memory_limit": "70MB"}
        assert dlt.config.get(KEY) is None
        assert dlt.config.get("normalize.parquet_normalizer.add_dlt_load_id") is True
