"""Live answers: which list a request gets, and every way the online store can fail to answer
falls back to the precomputed list - counted, warned once, the store left alone a moment."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from movierec.core.errors import OnlineStoreUnavailable
from movierec.core.settings import Settings
from movierec.data.history import Seen
from movierec.serve.live import answers as live
from movierec.serve.live.answers import LiveHistory, LiveRecommender
from movierec.serve.models import ServingModel
from tests.servicekit import make_bundle


class FakeStore:
    name = "online"

    def __init__(self, answer: list[Seen] | Exception):
        self.answer = answer
        self.calls = 0

    def history(self, user_id: int, since_ms: int) -> list[Seen]:
        self.calls += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return [s for s in self.answer if s.last_ms > since_ms]

    def write_batch(self, *args: object) -> int:
        raise NotImplementedError

    def close(self) -> None:
        pass


@pytest.fixture
def model(settings: Settings) -> ServingModel:
    return ServingModel.load(make_bundle(settings, "v1", "one"))  # a bundle of lists only


def _fallbacks(reason: str) -> float:
    return REGISTRY.get_sample_value("movierec_live_fallbacks_total", {"reason": reason}) or 0.0


def _recommender(
    settings: Settings, store: FakeStore, arms: str = "stable,canary"
) -> LiveRecommender:
    return LiveRecommender(settings.replace(fold_in_arms=arms), LiveHistory(store))  # type: ignore[arg-type]


def test_no_new_events_is_the_precomputed_list(settings: Settings, model: ServingModel) -> None:
    live_ = _recommender(settings, FakeStore([]))
    assert live_.recommend(model, "stable", 7) == model.recommend(7)


def test_movies_watched_since_leave_a_lists_only_bundles_answer(
    settings: Settings, model: ServingModel
) -> None:
    first = model.recommend(7).split(",")[:2]
    store = FakeStore([Seen(m, 10, 20) for m in first])
    answer = _recommender(settings, store).recommend(model, "canary", 7).split(",")
    assert answer == model.recommend(7).split(",")[2:]
    # an arm that does not fold in never asks the store
    assert _recommender(settings, store, "canary").recommend(model, "stable", 7) == model.recommend(
        7
    )
    assert store.calls == 1


@pytest.mark.parametrize("reason", ["missing", "locked", "unreachable", "error"])
def test_a_store_that_cannot_answer_falls_back_counted_warned_and_backed_off(
    settings: Settings, model: ServingModel, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = FakeStore(OnlineStoreUnavailable(reason, f"the store is {reason}"))
    recommender = _recommender(settings, store)
    before = _fallbacks(reason)
    with caplog.at_level(logging.WARNING, logger="movierec.serve.live.answers"):
        answers = [recommender.recommend(model, "stable", u) for u in (1, 2, 3)]
    assert answers == [model.recommend(u) for u in (1, 2, 3)]
    assert _fallbacks(reason) == before + 3
    # backed off after the first failure, except when the store is only missing (a stat)
    assert store.calls == (3 if reason == "missing" else 1)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and reason in warnings[0].getMessage()


def test_any_other_exception_of_the_store_is_an_error_fallback(
    settings: Settings, model: ServingModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "RETRY_SECONDS", 0.0)
    store = FakeStore(RuntimeError("boom"))
    before = _fallbacks("error")
    assert _recommender(settings, store).recommend(model, "stable", 4) == model.recommend(4)
    assert _fallbacks("error") == before + 1


def test_an_online_store_setting_of_none_never_asks(tmp_path: Path) -> None:
    s = Settings.from_env({}, home=tmp_path, online_store="none")
    assert LiveRecommender(s).history.recent(1, 0) == []
