"""The delivery metrics exporter (images/consul/delivery_exporter.py): what it makes of the history
tree, and which keys it writes and deletes."""

from __future__ import annotations

import json

import pytest

from bluegreen.components import naming
from bluegreen.components.consul.api import KVEntry
from consul_image import load_script

pytestmark = pytest.mark.unit

exporter = load_script("delivery_exporter.py", "delivery_exporter")


def item(key: str, value) -> tuple[str, KVEntry]:
    return key, KVEntry(value if isinstance(value, str) else json.dumps(value), 1)


def test_the_history_tree_groups_by_environment_and_service():
    tree = dict([item("bluegreen/history/prod/api/1.0.0", {"liveAt": "2026-12-07T10:00:00Z"}),
                 item("bluegreen/history/prod/api/2.0.0", {"deployedAt": "2026-12-07T11:00:00Z"}),
                 item("bluegreen/history/staging/web/1.0.0", {"liveAt": "2026-12-07T09:00:00Z"}),
                 item("bluegreen/history/prod/", ""),                       # a folder key
                 item("bluegreen/history/prod/api/broken", "{not json")])
    found = exporter.histories(tree)
    assert sorted(found) == [("prod", "api"), ("staging", "web")]
    assert sorted(found[("prod", "api")]) == ["1.0.0", "2.0.0"]
    assert exporter.histories({}) == {}


def test_only_changed_figures_are_written_and_gone_services_deleted():
    figures = {("prod", "api"): {"deploymentsPerDay": 1.0}, ("prod", "web"): {"deploymentsPerDay": 0.5}}
    written = {naming.delivery_key("prod", "api"): json.dumps({"deploymentsPerDay": 1.0}),
               naming.delivery_key("prod", "gone"): "{}"}
    puts, deletes = exporter.changes(figures, written)
    assert puts == {"bluegreen/delivery/prod/web": json.dumps({"deploymentsPerDay": 0.5})}
    assert deletes == ["bluegreen/delivery/prod/gone"]


def test_the_metrics_page_serves_the_exposition():
    assert exporter.EXPOSITION["text"].startswith("# HELP bluegreen_deployments_per_day ")
