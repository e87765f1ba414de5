"""Settings refused at start-up with the variable and the value: the online store's."""

from __future__ import annotations

import pytest

from movierec.core.errors import ConfigError
from movierec.core.settings import Settings


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"MOVIEREC_ONLINE_STORE": "lmdb"}, "MOVIEREC_ONLINE_STORE='lmdb'"),
        (
            {"MOVIEREC_ONLINE_STORE": "redis", "MOVIEREC_ONLINE_STORE_REDIS_URL": "127.0.0.1:6379"},
            "MOVIEREC_ONLINE_STORE_REDIS_URL='127.0.0.1:6379'",
        ),
        ({"MOVIEREC_ONLINE_STORE_RETENTION_DAYS": "0"}, "MOVIEREC_ONLINE_STORE_RETENTION_DAYS=0"),
        ({"MOVIEREC_INGEST_FLUSH_SECONDS": "-1"}, "MOVIEREC_INGEST_FLUSH_SECONDS=-1"),
        ({"MOVIEREC_ONLINE_STORE_TIMEOUT_MS": "0"}, "MOVIEREC_ONLINE_STORE_TIMEOUT_MS=0"),
        ({"MOVIEREC_INGEST_COMPACT_PARTS": "0"}, "MOVIEREC_INGEST_COMPACT_PARTS=0"),
    ],
)
def test_a_bad_online_store_setting_names_the_variable_and_value(
    env: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env(env)
    assert named in str(err.value) and "\n" not in str(err.value)


def test_the_defaults_keep_the_store_in_sqlite_under_data(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = Settings.from_env({}, home=tmp_path)
    assert s.data.online_store == "sqlite"
    assert s.online_store_file == tmp_path / "data" / "online_store.sqlite"
    redis = Settings.from_env({"MOVIEREC_ONLINE_STORE": "redis"})
    assert redis.data.online_store_redis_url.startswith("redis://")


def test_comma_separated_settings_are_parsed_by_one_function() -> None:
    s = Settings.from_env(
        {"MOVIEREC_FOLD_IN_ARMS": " canary, ,", "MOVIEREC_TRUSTED_PROXIES": "10.0.0.1, 10.1.0.0/16"}
    )
    assert s.serving.fold_in_arm_set == frozenset({"canary"})
    assert s.serving.trusted_proxy_list == ("10.0.0.1", "10.1.0.0/16")
    assert Settings.from_env({"MOVIEREC_FOLD_IN_ARMS": ""}).serving.fold_in_arm_set == frozenset()
    with pytest.raises(ConfigError, match="MOVIEREC_FOLD_IN_ARMS='stable,shadow'"):
        Settings.from_env({"MOVIEREC_FOLD_IN_ARMS": "stable,shadow"})
    with pytest.raises(ConfigError, match=r"'10\.0\.0\.300' is not an address"):
        Settings.from_env({"MOVIEREC_TRUSTED_PROXIES": "10.0.0.1,10.0.0.300"})
