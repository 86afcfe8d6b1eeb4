"""Metrics wiring under Pulumi mocks: the proxy exports its request counts (mtail) when it has a
metrics port, the platform runs Prometheus scraping it, and the stack exports its URL; plus the
Prometheus configuration the platform writes."""

import pytest
import yaml

import test_wiring
import unit_harness
from bluegreen.components.model.prometheus import scrape_config
from bluegreen.components.platform.metrics import MetricsArgs

PROMETHEUS = {"image": "bluegreen/prometheus:2.42.0", "port": 19090}


def measured(**prometheus):
    cfg = test_wiring.config(hosts=("local", "second"))
    cfg["platform"]["proxy"]["metricsPort"] = 18090
    cfg["platform"]["prometheus"] = {**PROMETHEUS, **prometheus}
    return cfg


@pytest.fixture(scope="module")
def deployment():
    return test_wiring.run(measured())


def prometheus_of(deployment):
    return deployment.one(deployment.role("prometheus"))


def test_the_proxy_exports_metrics_on_its_own_address_only_when_given_a_port(deployment):
    proxy = deployment.one(deployment.role("proxy"))
    assert "PROXY_METRICS_LISTEN=127.0.0.1:18090" in proxy.inputs["envs"]
    plain = test_wiring.run(test_wiring.config())
    assert not [e for e in plain.one(plain.role("proxy")).inputs["envs"]
                if e.startswith("PROXY_METRICS_LISTEN=")]
    assert not plain.role("prometheus")


def test_prometheus_runs_on_the_platform_host_beside_the_proxy(deployment):
    container = prometheus_of(deployment)
    assert container.provider_urn == deployment.provider_of_host("local").urn
    assert container.inputs["networkMode"] == "host"
    assert container.inputs["restart"] == "unless-stopped"
    assert container.inputs["memory"] == 256 and container.inputs["memorySwap"] == 256
    assert container.inputs["command"] == [
        "--config.file=/etc/prometheus/prometheus.yml",
        "--storage.tsdb.path=/var/lib/prometheus/metrics2",
        "--storage.tsdb.retention.time=7d", "--web.listen-address=127.0.0.1:19090"]
    assert "http://127.0.0.1:19090/-/ready" in container.inputs["healthcheck"]["tests"][1]


def test_prometheus_scrapes_the_proxys_metrics_address_at_the_configured_interval():
    deployment = test_wiring.run(measured(scrapeInterval="2s", retention="12h"))
    container = prometheus_of(deployment)
    [upload] = container.inputs["uploads"]
    config = yaml.safe_load(upload["content"])
    assert config["global"]["scrape_interval"] == "2s"
    assert config["scrape_configs"][0]["static_configs"] == [{"targets": ["127.0.0.1:18090"]}]
    assert "--storage.tsdb.retention.time=12h" in container.inputs["command"]
    proxy = deployment.one(deployment.role("proxy"))
    assert proxy.urn in container.property_dependencies["uploads"]


def test_prometheus_keeps_its_samples_on_a_volume_of_its_own(deployment):
    container = prometheus_of(deployment)
    [volume] = container.inputs["volumes"]
    assert volume["containerPath"] == "/var/lib/prometheus/metrics2"
    assert volume["volumeName"] == "bluegreen-integration-prometheus"


def test_the_metrics_component_is_the_platforms_child_and_parents_its_own(deployment):
    [component] = deployment.of_type("bluegreen:platform:Metrics")
    platform = deployment.by_urn[component.parent]
    assert platform.type == "bluegreen:platform:Platform"
    assert component.name == f"{platform.name}-metrics"
    children = deployment.children(component)
    assert {c.type for c in children} >= {unit_harness.CONTAINER, "docker:index/volume:Volume"}
    assert all(c.name.startswith(component.name + "-") for c in children)


def test_the_stack_exports_prometheus_url_and_none_without_it():
    test_wiring.run(measured())
    assert unit_harness.STACK_OUTPUTS["prometheus"] == "http://127.0.0.1:19090"
    test_wiring.run(test_wiring.config())
    assert "prometheus" not in unit_harness.STACK_OUTPUTS


def test_the_local_stack_runs_prometheus_and_counts_its_proxys_requests():
    deployment = test_wiring.Deployment(unit_harness.run_program(unit_harness.stack_config("local")))
    assert prometheus_of(deployment).inputs["networkMode"] == "host"
    assert unit_harness.STACK_OUTPUTS["prometheus"].startswith("http://127.0.0.1:")


def test_scrape_config_lists_every_proxy_once_sorted():
    config = yaml.safe_load(scrape_config(["10.0.0.2:18090", "10.0.0.1:18090"], 5))
    job = config["scrape_configs"][0]
    assert (job["job_name"], job["metrics_path"], job["scrape_timeout"]) == ("proxy", "/metrics", "5s")
    assert job["static_configs"] == [{"targets": ["10.0.0.1:18090", "10.0.0.2:18090"]}]
    with pytest.raises(ValueError, match="at least one proxy"):
        scrape_config([], 5)


@pytest.mark.parametrize("changes, message", [
    ({"port": 0}, "prometheus port 0 is not a TCP port"),
    ({"proxies": ()}, "needs at least one proxy to scrape"),
    ({"retention": "7 days"}, "retention '7 days' is not hours, days or weeks"),
    ({"scrape_interval_s": 0.5}, "scrape interval 0.5s is out of range [1s, 60s]"),
])
def test_metrics_args_refuse_what_prometheus_cannot_run(changes, message):
    args = {"stack": "s", "image": "i", "port": 19090, "provider": None,
            "proxies": ("127.0.0.1:18090",), **changes}
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        MetricsArgs(**args)


def test_the_delivery_exporter_runs_on_the_platform_host_and_prometheus_scrapes_it():
    deployment = test_wiring.run(measured(deliveryPort=19092))
    exporter = deployment.one(deployment.role("delivery-exporter"))
    assert exporter.provider_urn == deployment.provider_of_host("local").urn
    assert exporter.inputs["networkMode"] == "host" and exporter.inputs["restart"] == "unless-stopped"
    assert "DELIVERY_METRICS_LISTEN=127.0.0.1:19092" in exporter.inputs["envs"]
    assert exporter.inputs["entrypoints"] == ["python3", "-u", "/usr/local/lib/bluegreen/delivery_exporter.py"]
    [upload] = prometheus_of(deployment).inputs["uploads"]
    jobs = {job["job_name"]: job["static_configs"] for job in yaml.safe_load(upload["content"])["scrape_configs"]}
    assert jobs == {"proxy": [{"targets": ["127.0.0.1:18090"]}], "delivery": [{"targets": ["127.0.0.1:19092"]}]}
    # Without a port it still keeps the figures in KV for the catalogue; Prometheus does not scrape it.
    plain = test_wiring.run(measured())
    assert not [e for e in plain.one(plain.role("delivery-exporter")).inputs["envs"]
                if e.startswith("DELIVERY_METRICS_LISTEN=")]
    [upload] = prometheus_of(plain).inputs["uploads"]
    assert [job["job_name"] for job in yaml.safe_load(upload["content"])["scrape_configs"]] == ["proxy"]


def test_the_proxy_learns_where_prometheus_answers_the_catalogues_queries(deployment):
    keys = {r.inputs["key"]: r.inputs["value"] for r in deployment.resources
            if r.inputs.get("key", "").startswith("bluegreen/proxy/")}
    assert keys["bluegreen/proxy/prometheus"] == "127.0.0.1:19090"


def test_the_delivery_port_cannot_be_prometheus_own():
    with pytest.raises(Exception, match="deliveryPort: is Prometheus's own port 19090"):
        test_wiring.run(measured(deliveryPort=19090))
