"""images/proxy/: who may choose the offline colour, which headers the proxy keeps to itself, and
how nginx and consul-template are supervised. The nginx map that admits /preview/ is evaluated
here with its own regular expressions (PCRE and Python agree on these), for any addresses."""

import os
import re

from hypothesis import given, strategies as st

from bluegreen.components.naming import PROXY_HEADERS, PROXY_PREVIEW_HEADER

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGE = os.path.join(ROOT, "images", "proxy")


def read(*parts: str) -> str:
    with open(os.path.join(IMAGE, *parts), encoding="utf-8") as handle:
        return handle.read()


ROUTES = read("routes.conf.ctmpl")
HEADERS = read("proxy-headers.conf")


def nginx_map(variable: str) -> list[tuple[str, str]]:
    """The (key, value) lines of the routes template's `map ... $variable { ... }` block."""
    block = re.search(r"map [^{]* \$" + variable + r" \{\n(.*?)\n\}", ROUTES, re.S)
    assert block, f"routes.conf.ctmpl has no map for ${variable}"
    return [tuple(line.strip().rstrip(";").rsplit(" ", 1)) for line in block.group(1).splitlines()
            if line.strip() and not line.strip().startswith("{{")]


def preview_allowed(inside: bool, remote: str, server: str, listed: bool = False) -> bool:
    """What nginx makes of $bluegreen_preview_allowed: the first regex that matches, else default.
    `listed`: the client's address is in a network of proxy.previewFrom (the geo block)."""
    key = f"{int(inside)} {int(listed)} {remote} {server}"
    for pattern, value in nginx_map("bluegreen_preview_allowed"):
        if pattern == "default":
            default = value
        elif re.search(pattern.strip('"').removeprefix("~"), key):
            return value == "1"
    return default == "1"


addresses = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str)


@given(inside=st.booleans(), listed=st.booleans(), remote=addresses, server=addresses)
def test_preview_paths_answer_inside_on_the_proxys_own_host_and_to_listed_networks_only(
        inside, listed, remote, server):
    # A connection from the proxy's own host comes from the address it went to.
    assert preview_allowed(inside, remote, server, listed) == (inside or listed or remote == server)
    assert preview_allowed(inside, remote, remote, listed)


def test_the_listed_networks_come_from_kv_into_a_geo_block():
    block = re.search(r"geo \$bluegreen_preview_source \{\n(.*?)\n\}", ROUTES, re.S)
    assert block and "default 0;" in block.group(1)
    assert 'keyOrDefault "bluegreen/proxy/preview-from"' in block.group(1)


def test_an_outside_client_is_refused_preview_paths():
    assert not preview_allowed(False, "10.0.0.9", "10.0.0.5")
    assert not preview_allowed(False, "10.0.0.5", "10.0.0.50")   # a prefix is not the address
    assert not preview_allowed(False, "127.0.0.2", "127.0.0.1")
    assert preview_allowed(False, "127.0.0.1", "127.0.0.1")
    assert preview_allowed(True, "172.17.0.5", "172.17.0.1")


def test_the_preview_header_counts_only_on_the_bridge_listener():
    assert nginx_map("bluegreen_preview_header") == [("default", '""'), ("1", "$http_x_bluegreen_preview")]
    # Colour choice and what the services are told both go through that map, never the raw header.
    assert ROUTES.count("$http_x_bluegreen_preview") == 1
    assert 'if ($bluegreen_preview_header = "{{ $env }}")' in ROUTES
    assert "proxy_set_header X-Bluegreen-Preview $bluegreen_preview_header;" in ROUTES
    inside = nginx_map("bluegreen_inside")
    assert inside[0] == ("default", "0") and "listen {{ . }};" in ROUTES


def test_every_preview_location_checks_where_the_client_is():
    locations = re.findall(r"location /preview/[^\n]*\{\n(.*?)\n    \}", ROUTES, re.S)
    assert locations
    for body in locations:
        assert body.lstrip().startswith("if ($bluegreen_preview_allowed = 0) { return 404; }"), body


def test_the_platforms_headers_are_stripped_from_clients_and_upstreams():
    for name in PROXY_HEADERS:
        assert f"proxy_hide_header {name};" in HEADERS, name
        if name != PROXY_PREVIEW_HEADER:   # set per location: from inside only, or the preview's
            assert f'proxy_set_header {name} "";' in HEADERS, name
    # The server includes them, and so does every location that sets request headers of its own
    # (which drops the server's).
    assert "proxy_http_version 1.1;\n    include /etc/nginx/proxy-headers.conf;" in ROUTES
    checked = 0
    for block in re.findall(r"\n    location [^\n]*\{\n(.*?)\n    \}", ROUTES, re.S):
        if "proxy_set_header" in block:
            assert "include /etc/nginx/proxy-headers.conf;" in block, block
            checked += 1
    assert checked == 1   # the preview location


def test_no_other_platform_header_is_named_anywhere():
    # A new X-Bluegreen-* name must join PROXY_HEADERS, or clients and upstreams could send it.
    found = set()
    for top in ("components", "delivery", "images", "services", "policies"):
        for folder, _, files in os.walk(os.path.join(ROOT, top)):
            for name in files:
                with open(os.path.join(folder, name), encoding="utf-8", errors="ignore") as handle:
                    found |= set(re.findall(r"X-Bluegreen-[A-Za-z-]*[A-Za-z]", handle.read()))
    assert found <= set(PROXY_HEADERS), found - set(PROXY_HEADERS)


def test_nginx_and_consul_template_run_under_runit_with_tini_as_pid_1():
    dockerfile = read("Dockerfile")
    assert 'ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/entrypoint"]' in dockerfile
    entrypoint = read("entrypoint")
    # runsvdir supervises; the entrypoint only waits on it (and drains first on SIGTERM), so the
    # container ends when runsvdir does.
    assert "runsvdir /etc/bluegreen/sv &" in entrypoint
    assert entrypoint.rstrip().endswith("wait $supervisor")
    for service, command in (("nginx", "exec nginx -g 'daemon off;'"),
                             ("consul-template", "exec consul-template -config")):
        path = os.path.join(IMAGE, "sv", service, "run")
        assert os.access(path, os.X_OK), f"{path} is not executable"
        assert command in read("sv", service, "run")


def test_a_stopping_proxy_fails_its_health_first_and_serves_on_while_the_address_moves():
    entrypoint, routes = read("entrypoint"), read("routes.conf.ctmpl")
    assert "trap 'touch /run/bluegreen/stopping; sleep" in entrypoint
    assert "if (-f /run/bluegreen/stopping) { return 503" in routes
    # The VRRP sidecar asks exactly there, every 100 ms.
    assert "PROXY_HEALTH" in read("vrrp") and "while sleep 0.1" in read("vrrp")


def test_reloads_go_through_one_script_that_tolerates_a_restarting_nginx():
    for script in ("apply-config", "apply-aliases"):
        body = read(script)
        assert "reload-nginx" in body and "nginx.pid" not in body, script


# --- every request counted: the access log line and the mtail program that reads it ----------

MTAIL = read("bluegreen.mtail")


def mtail_pattern() -> re.Pattern:
    """The mtail program's line pattern (RE2 and Python agree on this one)."""
    (pattern,) = re.findall(r"^/(\^.*\$)/ \{$", MTAIL, re.M)
    return re.compile(pattern)


def log_line(**values: str) -> str:
    """An access log line as nginx writes it: the bluegreen log_format with `values` substituted
    for its variables."""
    (fmt,) = re.findall(r"log_format bluegreen '([^']*)';", ROUTES)
    return re.sub(r"\$(\w+)", lambda m: values[m.group(1)], fmt)


LINE = dict(bluegreen_environment="production", bluegreen_service="vizconfig",
            bluegreen_colour="green", bluegreen_traffic="preview", status="503",
            bluegreen_status_class="5xx", request_time="0.042")


def test_the_access_log_line_is_one_mtail_counts_with_its_labels():
    match = mtail_pattern().fullmatch(log_line(**LINE))
    assert match, log_line(**LINE)
    assert match.groupdict() == {"environment": "production", "service": "vizconfig",
                                 "colour": "green", "traffic": "preview",
                                 "status": "5xx", "seconds": "0.042"}
    counter = re.search(r"^counter bluegreen_requests_total by (.*)$", MTAIL, re.M).group(1)
    assert counter.split(", ") == ["environment", "service", "colour", "traffic", "status"]


def test_requests_no_route_answered_are_not_logged():
    # The server-level defaults are empty: the access log's `if=` skips them, and mtail's
    # pattern would not match a line without a colour either.
    for variable in ("environment", "service", "colour", "traffic"):
        assert f'    set $bluegreen_{variable} "";' in ROUTES
    assert "if=$bluegreen_service;" in ROUTES
    assert not mtail_pattern().fullmatch(log_line(**{**LINE, "bluegreen_colour": ""}))


def test_every_route_location_names_its_environment_service_and_traffic():
    for kind, body in re.findall(r"location (/preview)?/\{\{ \$env \}\}/\{\{ \$route \}\}/ \{\n(.*?)\n    \}",
                                 ROUTES, re.S):
        assert "set $bluegreen_environment {{ $env }};" in body
        assert "set $bluegreen_service {{ $svc }};" in body
        assert f"set $bluegreen_traffic {'preview' if kind else 'stable'};" in body
    # A preview call that falls back to the live colour is counted on the colour that answered.
    fallback = re.search(r"location @[^\n]*--live \{\n(.*?)\n    \}", ROUTES, re.S).group(1)
    assert "set $bluegreen_colour $bluegreen_live;" in fallback


def test_the_access_log_and_mtail_run_only_with_a_metrics_address():
    assert '{{- if env "PROXY_METRICS_LISTEN" }}' in ROUTES
    entrypoint = read("entrypoint")
    assert "touch /etc/bluegreen/sv/mtail/down /etc/bluegreen/sv/access-log/down" in entrypoint
    for service in ("mtail", "access-log"):
        assert os.access(os.path.join(IMAGE, "sv", service, "run"), os.X_OK)
    assert os.access(os.path.join(IMAGE, "rotate-access-log"), os.X_OK)
    assert "rotate-access-log" in read("sv", "access-log", "run")
    assert re.search(r"^COPY [^\n]*rotate-access-log[^\n]* /usr/local/bin/$", read("Dockerfile"), re.M)
    assert "exec mtail -progs /etc/bluegreen/mtail -logs /var/log/bluegreen/access.log" in \
        read("sv", "mtail", "run")
    assert "COPY bluegreen.mtail /etc/bluegreen/mtail/" in read("Dockerfile")
