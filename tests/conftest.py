"""Marks every test by its folder, so `pytest -m unit`, `-m policy` or `-m e2e` selects a tier."""

import pathlib

import pytest

TIERS = ("unit", "policy", "e2e")


def pytest_collection_modifyitems(items):
    for item in items:
        tier = pathlib.Path(str(item.fspath)).parent.name
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))


# Property tests check rules, not speed (benchmarks/ measure that): Hypothesis' per-example
# deadline would fail them on a loaded machine, so it is off for every test.
from hypothesis import settings as hypothesis_settings  # noqa: E402

hypothesis_settings.register_profile("bluegreen", deadline=None)
hypothesis_settings.load_profile("bluegreen")
