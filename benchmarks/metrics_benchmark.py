"""What counting every request costs: the proxy's latency with the metrics path on and off, and
Prometheus' memory with 100 services' worth of series. Not a test: run it, read the figures.

    ./bg bench metrics_benchmark [--rate 200] [--rounds 5] [--seconds 20] [--services 100] [--keep]

On a stack of its own (bench-metrics; ports 28939-28949 on 127.0.0.1): the platform and the
example service. Then:

1. latency: the proxy with the metrics path on (access log, mtail, Prometheus scraping) and off
   (the same platform without proxy.metricsPort and prometheus: no log, no mtail; the one switch
   the platform has), alternated by `pulumi up` of the two configurations (on, off, on, ...,
   `--rounds` of each), after the memory phase (so no round runs right after the deploy). In each, `--rate` requests/s for `--seconds` from a paced pool of
   keep-alive clients to the example service's stable URI; p50 and p99 per round, and the medians
   over rounds compared: the metrics path may add at most 5% to p50. (A second proxy beside the
   first cannot be the "off" one: both would bind the bridge listener Consul names.)
2. memory: a Prometheus container from the stack's image, with its flags and memory limit, scrapes
   a local exporter serving the series mtail makes (bluegreen.mtail) for `--services` services
   (2 colours, stable and preview, 4 status classes, the latency histogram), counts growing at
   every scrape, for `--memory-seconds`; its peak resident memory against 300 MB.

Prints the figures; JSON to reports/benchmark-metrics.json. Bounded by --max-seconds; destroyed at
the end unless --keep."""

from __future__ import annotations

import argparse
import contextlib
import http.client
import http.server
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

from e2e_harness import (REPO, Deployment, _image, docker_json, platform_config,
                         require_environment, time_bound, wait_until, write_report)

from bluegreen.components.model.prometheus import scrape_config
from bluegreen.components.naming import docker_name, stable_path

STACK = ENV = "bench-metrics"
PORTS = {"consul": 28940, "serf": 28941, "server": 28942, "registry": 28943, "proxy": 28944,
         "metrics": 28945, "prometheus": 28946, "delivery": 28947, "exporter": 28949}
PROMETHEUS_PORT_SYNTHETIC = 28939   # the memory phase's own Prometheus
PATH = stable_path(ENV, "vizconfig")
PROMETHEUS, SYNTHETIC = docker_name(STACK, "prometheus"), docker_name(STACK, "prometheus-100")
CLIENTS = 4
LATENCY_TARGET, MEMORY_TARGET_MB = 0.05, 300
BUCKETS = ("0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5",
           "5", "10", "+Inf")
OUT = os.path.join(REPO, "reports", "benchmark-metrics.json")


def stack_config() -> dict:
    config = platform_config(PORTS, ENV)
    metrics(config, on=True)
    config["bluegreen:services"] = {"vizconfig": {
        "manifest": "services/vizconfig/service.yaml", "live": "blue", "gateTimeout": 15,
        "blue": {"version": "1.0.0"}}}
    return config


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout


def status(host: str) -> int:
    connection = http.client.HTTPConnection(host, timeout=2)
    try:
        connection.request("GET", PATH)
        response = connection.getresponse()
        response.read()
        return response.status
    except OSError:
        return 0
    finally:
        connection.close()


def client(host: str, index: int, rate: float, seconds: float, start: float, out: list,
           failed: list) -> None:
    """Client `index` of CLIENTS: its share of a paced schedule, one keep-alive connection."""
    connection, count = http.client.HTTPConnection(host, timeout=3), int(rate * seconds)
    for k in range(index, count, CLIENTS):
        pause = start + k / rate - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        began = time.perf_counter()
        try:
            connection.request("GET", PATH)
            response = connection.getresponse()
            response.read()
            ok = response.status == 200
        except OSError:
            connection.close()
            ok = False
        (out if ok else failed).append(time.perf_counter() - began)
    connection.close()


def load(host: str, rate: float, seconds: float) -> dict:
    """p50/p99 (ms) of `rate` requests/s for `seconds` against `host`, and the failures."""
    latencies, failed, start = [], [], time.perf_counter() + 0.2
    threads = [threading.Thread(target=client, args=(host, i, rate, seconds, start, latencies, failed))
               for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 30)
    ms = sorted(s * 1000 for s in latencies)
    if not ms:
        raise RuntimeError(f"no request to {host}{PATH} succeeded ({len(failed)} failed)")
    achieved = len(ms) / max(time.perf_counter() - start, 1e-9)
    return {"p50": statistics.median(ms), "p99": ms[math.ceil(0.99 * len(ms)) - 1],
            "requests": len(ms) + len(failed), "failed": len(failed), "rate": round(achieved, 1)}


def metrics(config: dict, on: bool) -> None:
    """The platform's metrics path on (proxy.metricsPort and prometheus) or off (neither)."""
    platform = config["bluegreen:platform"]
    if on:
        platform["proxy"]["metricsPort"] = PORTS["metrics"]
        platform["prometheus"] = {"image": _image("bluegreen/prometheus"), "port": PORTS["prometheus"],
                                  "retention": "1d", "deliveryPort": PORTS["delivery"]}
    else:
        platform["proxy"].pop("metricsPort", None)
        platform.pop("prometheus", None)


def measured(deployment: Deployment, on: bool, rate: float, seconds: float) -> dict:
    """One round: the platform switched (an up if it changes), warmed up, then measured."""
    if ("prometheus" in deployment.config["bluegreen:platform"]) != on:
        deployment.update_config(lambda config: metrics(config, on))
        deployment.up()
    host = f"127.0.0.1:{PORTS['proxy']}"
    wait_until(lambda: status(host) == 200, 90, 0.5, what=f"the proxy serving {PATH}")
    load(host, rate, 3)   # connections, upstream keep-alive, nginx workers
    return load(host, rate, seconds)


def latency(deployment: Deployment, rate: float, rounds: int, seconds: float) -> dict:
    """Metrics on, off, on, ... until `rounds` of each (an up at each switch)."""
    runs = {"on": [], "off": []}
    for index in range(2 * rounds):
        mode = "off" if index % 2 else "on"
        runs[mode].append(measured(deployment, mode == "on", rate, seconds))
        said(index, mode, runs[mode][-1])
    return summarise(runs)


def said(index: int, mode: str, run: dict) -> None:
    print(f"   round {index + 1} metrics {mode:>3}: p50 {run['p50']:.3f} ms, p99 {run['p99']:.3f} ms, "
          f"{run['failed']} failed of {run['requests']} ({run['rate']} req/s)", flush=True)


def summarise(runs: dict) -> dict:
    median = {mode: {q: round(statistics.median(r[q] for r in runs[mode]), 3) for q in ("p50", "p99")}
              for mode in runs}
    paired = [on["p50"] / off["p50"] - 1 for on, off in zip(runs["on"], runs["off"])]
    return {"rounds": runs, "median_ms": median,
            "p50_added": round(median["on"]["p50"] / median["off"]["p50"] - 1, 4),
            "p50_added_paired_median": round(statistics.median(paired), 4),
            "requests": sum(r["requests"] for mode in runs for r in runs[mode]),
            "failed": sum(r["failed"] for mode in runs for r in runs[mode])}


def exposition(services: int, scrape: int) -> str:
    """What mtail serves for `services` services after `scrape` scrapes' worth of traffic."""
    lines = []
    for index in range(services):
        for colour in ("blue", "green"):
            for traffic in ("stable", "preview"):
                labels = (f'environment="{ENV}",service="service-{index:03d}",colour="{colour}",'
                          f'traffic="{traffic}"')
                lines += [f'bluegreen_requests_total{{{labels},status="{status}"}} {scrape * weight}'
                          for status, weight in (("2xx", 97), ("3xx", 1), ("4xx", 1), ("5xx", 1))]
                lines += [f'bluegreen_request_duration_seconds_bucket{{{labels},le="{le}"}} '
                          f'{scrape * (10 + 6 * position)}' for position, le in enumerate(BUCKETS)]
                lines += [f"bluegreen_request_duration_seconds_sum{{{labels}}} {scrape * 0.4:.1f}",
                          f"bluegreen_request_duration_seconds_count{{{labels}}} {scrape * 88}"]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def exporter(services: int):
    """A local /metrics with `services` services' mtail series, counts growing per scrape."""
    scrapes = [0]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            scrapes[0] += 1
            body = exposition(services, scrapes[0]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", PORTS["exporter"]), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{PORTS['exporter']}"
    finally:
        server.shutdown()
        server.server_close()


def start_synthetic_prometheus(target: str) -> str:
    """The stack's Prometheus again (image, flags, memory limit), scraping only `target`."""
    spec = docker_json("container", "inspect", PROMETHEUS)[0]
    interval = docker("exec", PROMETHEUS, "cat", "/etc/prometheus/prometheus.yml")
    seconds = float(interval.split("scrape_interval:", 1)[1].split()[0].rstrip("s"))
    listen = f"127.0.0.1:{PROMETHEUS_PORT_SYNTHETIC}"
    command = [arg for arg in spec["Config"]["Cmd"] if not arg.startswith("--web.listen-address=")]
    memory = str(spec["HostConfig"]["Memory"])
    docker("rm", "-f", SYNTHETIC)
    docker("create", "--name", SYNTHETIC, "--network", "host", "--memory", memory,
           "--memory-swap", memory, *[arg for env in spec["Config"]["Env"] for arg in ("--env", env)],
           spec["Image"], *command, f"--web.listen-address={listen}")
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "prometheus.yml")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(scrape_config([target], seconds))
        docker("cp", path, f"{SYNTHETIC}:/etc/prometheus/prometheus.yml")
    docker("start", SYNTHETIC)
    return f"http://{listen}"


def series(url: str) -> int:
    """How many bluegreen_ series the Prometheus at `url` holds now (0 if it cannot say)."""
    query = urllib.parse.quote('count({__name__=~"bluegreen_.+"})')
    try:
        with urllib.request.urlopen(f"{url}/api/v1/query?query={query}", timeout=3) as response:
            found = json.loads(response.read())["data"]["result"]
        return int(float(found[0]["value"][1])) if found else 0
    except (OSError, ValueError, KeyError):
        return 0


def resident_mb(container: str) -> float:
    status_file = docker("exec", container, "cat", "/proc/1/status")
    kb = next(line.split()[1] for line in status_file.splitlines() if line.startswith("VmRSS:"))
    return int(kb) / 1024


def cgroup_mb(container: str) -> float:
    stats = json.loads(docker("stats", "--no-stream", "--format", "{{json .}}", container))
    used = stats["MemUsage"].split("/")[0].strip()
    number, unit = float(used.rstrip("KMGiB")), used.lstrip("0123456789.")
    return number * {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024, "B": 1 / 2 ** 20}[unit]


def memory(services: int, seconds: float) -> dict:
    with exporter(services) as target:
        url = start_synthetic_prometheus(target)
        wait_until(lambda: series(url) > 0, 90, 1.0, what=f"{SYNTHETIC} scraping the exporter")
        samples, end = [], time.monotonic() + seconds
        while time.monotonic() < end:
            samples.append((resident_mb(SYNTHETIC), cgroup_mb(SYNTHETIC)))
            time.sleep(10)
        found, restarts = series(url), docker_json("container", "inspect", SYNTHETIC)[0]["RestartCount"]
    oom = docker_json("container", "inspect", SYNTHETIC)[0]["State"]["OOMKilled"]
    docker("rm", "-f", SYNTHETIC)
    return {"services": services, "series": found, "seconds": seconds,
            "peak_resident_mb": round(max(s[0] for s in samples), 1),
            "peak_cgroup_mb": round(max(s[1] for s in samples), 1),
            "last_resident_mb": round(samples[-1][0], 1), "oom_killed": oom, "restarts": restarts,
            "stack_prometheus_resident_mb": round(resident_mb(PROMETHEUS), 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="requests/s")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each, on and off")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of load per round")
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--memory-seconds", type=float, default=120.0)
    parser.add_argument("--keep", action="store_true", help="keep the stack for the next run")
    parser.add_argument("--max-seconds", type=int, default=1800)
    args = parser.parse_args()
    if not (10 <= args.rate <= 1000 and 1 <= args.rounds <= 10 and 2 <= args.seconds <= 120
            and 1 <= args.services <= 1000 and 20 <= args.memory_seconds <= 1800):
        parser.error("allowed: --rate 10..1000, --rounds 1..10, --seconds 2..120, "
                     "--services 1..1000, --memory-seconds 20..1800")
    require_environment()
    time_bound(args.max_seconds)
    deployment = Deployment(STACK, stack_config())
    try:
        print(f"-- deploying {STACK} (platform with metrics and Prometheus, vizconfig)", flush=True)
        deployment.up()
        print(f"-- Prometheus memory with {args.services} services' series for "
              f"{args.memory_seconds:g} s", flush=True)
        result = {"rate": args.rate, "memory": memory(args.services, args.memory_seconds)}
        print(f"-- latency at {args.rate:g} req/s, {args.seconds:g} s a round, metrics on and off "
              f"alternately (an up at each switch), {args.rounds} rounds of each", flush=True)
        result["latency"] = latency(deployment, args.rate, args.rounds, args.seconds)
    finally:
        signal.alarm(0)
        subprocess.run(["docker", "rm", "-f", SYNTHETIC], capture_output=True)
        if not args.keep:
            deployment.remove()
    show(result)
    write_report(OUT, result)
    return 0


def show(result: dict) -> None:
    lat, mem = result["latency"], result["memory"]
    on, off = lat["median_ms"]["on"], lat["median_ms"]["off"]
    print(f"\nproxy at {result['rate']:g} req/s, medians over {len(lat['rounds']['on'])} rounds:")
    print(f"  metrics on : p50 {on['p50']:.3f} ms, p99 {on['p99']:.3f} ms")
    print(f"  metrics off: p50 {off['p50']:.3f} ms, p99 {off['p99']:.3f} ms")
    verdict = "meets" if lat["p50_added"] <= LATENCY_TARGET else "MISSES"
    print(f"  p50 added {100 * lat['p50_added']:+.1f}% (paired rounds' median "
          f"{100 * lat['p50_added_paired_median']:+.1f}%): {verdict} the {LATENCY_TARGET:.0%} target; "
          f"failed {lat['failed']}/{lat['requests']} requests")
    verdict = "meets" if mem["peak_resident_mb"] < MEMORY_TARGET_MB and not mem["oom_killed"] else "MISSES"
    print(f"Prometheus with {mem['services']} services ({mem['series']} series, {mem['seconds']:g} s): "
          f"peak resident {mem['peak_resident_mb']} MB (cgroup {mem['peak_cgroup_mb']} MB), "
          f"OOM-killed {mem['oom_killed']}: {verdict} the {MEMORY_TARGET_MB} MB target")


if __name__ == "__main__":
    sys.exit(main())
