"""The preview-traffic gate of a flip (a stack entry's gate.previewTraffic): the target colour's
real requests on the preview URI, read from Prometheus and judged by model.analysis before the
alias moves. A roll-back is never held (model.analysis.preview_refusal)."""

from __future__ import annotations

import requests

from bluegreen.components.model.analysis import Bounds, Verdict, analyse, preview_refusal, traffic_queries
from bluegreen.components.model.config import ServiceConfig, StackConfig

from .stacks import platform_outputs
from .steps import StepFailed

QUERY_TIMEOUT_S = 5


def preview_verdict(prometheus: str, environment: str, service: str, colour: str,
                    bounds: Bounds) -> Verdict:
    """The verdict on `colour`'s preview traffic over the bounds' window."""
    by_status, p99 = (requests.get(f"{prometheus}/api/v1/query", params={"query": query},
                                   timeout=QUERY_TIMEOUT_S).json()
                      for query in traffic_queries(environment, service, colour, bounds.window_s, "preview"))
    return analyse(by_status, p99, bounds)


def check_preview(config: StackConfig, settings: ServiceConfig, colour: str, rollback: bool = False,
                  prometheus: str | None = None) -> tuple[str | None, str]:
    """(why the flip to `colour` may not go, or None; what was judged, to print). Without
    gate.previewTraffic, or for a roll-back, nothing is asked."""
    if settings.preview_gate is None or rollback:
        return None, ""
    try:
        url = prometheus or platform_outputs(config).get("prometheus")
    except StepFailed as error:
        url, problem = None, str(error)
    else:
        problem = "the platform runs no Prometheus (bluegreen:platform.prometheus)"
    if not url:
        return (f"{settings.name} asks for gate.previewTraffic, but {problem}; run Prometheus on "
                f"the platform or remove gate from its stack entry"), ""
    try:
        verdict = preview_verdict(url, config.environment, settings.name, colour, settings.preview_gate)
    except (requests.RequestException, ValueError) as error:
        return f"Prometheus at {url} gave no verdict on {settings.name}'s preview traffic ({error})", ""
    return (preview_refusal(settings.name, colour, verdict),
            f"{settings.name}'s preview traffic on {colour}: {verdict.reason}")
