"""Prometheus's configuration as the platform writes it: pure, no Pulumi."""

from __future__ import annotations

from collections.abc import Sequence

import yaml

METRICS_PATH = "/metrics"        # where mtail serves the proxy's metrics, and the exporter its
PROXY_JOB = "proxy"
DELIVERY_JOB = "delivery"        # the delivery metrics exporter (model.scoreboard)


def scrape_config(targets: list[str], interval_s: float, delivery: Sequence[str] = ()) -> str:
    """prometheus.yml scraping every proxy's metrics (`host:port` each) every `interval_s`, and
    the delivery metrics exporter's (`delivery`) when there is one."""
    if not targets:
        raise ValueError("Prometheus needs at least one proxy to scrape; give the proxy a metricsPort")
    interval = f"{interval_s:g}s"
    jobs = [(PROXY_JOB, targets), (DELIVERY_JOB, list(delivery))]
    return yaml.safe_dump({
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        # A scrape may take up to the interval; a slower one counts as failed (up == 0).
        "scrape_configs": [{"job_name": job, "metrics_path": METRICS_PATH, "scrape_timeout": interval,
                            "static_configs": [{"targets": sorted(found)}]}
                           for job, found in jobs if found],
    }, sort_keys=False)
