"""One parametrised contract test: every check on every model of the catalog."""

from __future__ import annotations

import pytest

from models.base import Forecaster, create, registered
from models.catalog import MODELS
from tests.model_checks import CHECKS


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_contract(name: str, check: object) -> None:
    cls: type[Forecaster] = MODELS[name]
    check(cls)  # type: ignore[operator]


def test_registry_builds_by_name() -> None:
    assert "naive" in registered()
    model = create("naive", seed=2)
    assert model.get_params()["seed"] == 2
    with pytest.raises(ValueError, match=r"unknown model .nope.; known models: .*naive"):
        create("nope")
