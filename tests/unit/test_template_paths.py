"""The proxy's consul-template templates read the KV paths components/naming.py makes and join
upstream names with its PROXY_JOINER: a change on one side only fails here, not only in the
end-to-end tests. Every `bluegreen/...` path a template reads is matched against naming.py."""

from __future__ import annotations

import glob
import os
import re

from bluegreen.components import naming
from unit_harness import ROOT

TEMPLATES = sorted(glob.glob(os.path.join(ROOT, "images", "proxy", "*.ctmpl")))
# A path a template names: literal, or a printf format whose %s are environment, service.
PATH = re.compile(r'(?:tree|key|keyOrDefault|ls|safeTree|safeLs)\s+(?:\(printf\s+)?"(bluegreen/[^"]*)"')
ENV, SERVICE = "ENV", "SERVICE"

# What naming.py makes for each path a template may read, with ENV and SERVICE filled in.
EXPECTED = {
    "bluegreen/aliases": naming.alias_key(ENV, SERVICE).rsplit(f"/{ENV}/", 1)[0],
    "bluegreen/aliases/%s/%s": naming.alias_key(ENV, SERVICE),
    "bluegreen/routes/%s/%s": naming.route_key(ENV, SERVICE),
    "bluegreen/bake/%s/%s": naming.bake_key(ENV, SERVICE),
    "bluegreen/history/%s/%s/": naming.history_prefix(ENV, SERVICE),
    "bluegreen/audit/%s/%s/": naming.audit_prefix(ENV, SERVICE),
    "bluegreen/catalogue": naming.catalogue_key(ENV, SERVICE).rsplit(f"/{ENV}/", 1)[0],
    "bluegreen/proxy/drain-timeout": naming.drain_timeout_key(),
    "bluegreen/proxy/bridge-listen": naming.bridge_listen_key(),
    "bluegreen/proxy/preview-from": naming.preview_from_key(),
    "bluegreen/splits/%s/%s": naming.split_key(ENV, SERVICE),
    "bluegreen/delivery/%s/%s": naming.delivery_key(ENV, SERVICE),
    "bluegreen/proxy/prometheus": naming.prometheus_address_key(),
    "bluegreen/proxy/proxies": naming.proxies_key(),
}


def template_paths() -> set[str]:
    found = set()
    for path in TEMPLATES:
        with open(path, encoding="utf-8") as handle:
            found.update(PATH.findall(handle.read()))
    return found


def test_the_templates_are_found():
    names = {os.path.basename(t) for t in TEMPLATES}
    assert {"upstreams.conf.ctmpl", "routes.conf.ctmpl", "catalogue.json.ctmpl"} <= names
    assert len(template_paths()) >= 6


def test_every_kv_path_a_template_reads_is_one_naming_makes():
    for path in template_paths():
        assert path in EXPECTED, f"a template reads {path}, which naming.py does not make"
        filled = path.replace("%s", ENV, 1).replace("%s", SERVICE, 1)
        assert filled == EXPECTED[path], f"{path}: naming.py makes {EXPECTED[path]}"


def test_upstreams_are_joined_as_naming_joins_them():
    with open(os.path.join(ROOT, "images", "proxy", "upstreams.conf.ctmpl"), encoding="utf-8") as handle:
        text = handle.read()
    joiner = naming.PROXY_JOINER
    assert f"upstream {{{{ $env }}}}{joiner}{{{{ $svc }}}}{joiner}{{{{ $colour }}}}" in text


def test_split_markers_and_cookie_are_where_naming_says():
    proxy = os.path.join(ROOT, "images", "proxy")
    with open(os.path.join(proxy, "routes.conf.ctmpl"), encoding="utf-8") as handle:
        routes = handle.read()
    with open(os.path.join(proxy, "apply-aliases"), encoding="utf-8") as handle:
        apply = handle.read()
    with open(os.path.join(proxy, "split.conf"), encoding="utf-8") as handle:
        nginx = handle.read()
    for config in ("nginx.conf", "nginx-candidate.conf"):   # what `nginx -t` checks has it too
        with open(os.path.join(proxy, config), encoding="utf-8") as handle:
            assert "include /etc/nginx/split.conf;" in handle.read(), config
    assert f"-f {naming.SPLIT_DIR}/{{{{ $env }}}}{naming.PROXY_JOINER}{{{{ $svc }}}}." in routes
    assert f"splits={naming.SPLIT_DIR}\n" in apply
    assert f"$cookie_{naming.SPLIT_COOKIE} " in nginx and f'"{naming.SPLIT_COOKIE}=$request_id;' in nginx
