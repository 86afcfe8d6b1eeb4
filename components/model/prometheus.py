"""Prometheus's configuration as the platform writes it: pure, no Pulumi."""

from __future__ import annotations

import yaml

METRICS_PATH = "/metrics"        # where mtail serves the proxy's metrics
PROXY_JOB = "proxy"


def scrape_config(targets: list[str], interval_s: float) -> str:
    """prometheus.yml scraping every proxy's metrics (`host:port` each) every `interval_s`."""
    if not targets:
        raise ValueError("Prometheus needs at least one proxy to scrape; give the proxy a metricsPort")
    interval = f"{interval_s:g}s"
    return yaml.safe_dump({
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [{
            "job_name": PROXY_JOB,
            "metrics_path": METRICS_PATH,
            # A scrape may take up to the interval; a slower one counts as failed (up == 0).
            "scrape_timeout": interval,
            "static_configs": [{"targets": sorted(targets)}],
        }],
    }, sort_keys=False)
