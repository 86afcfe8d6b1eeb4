"""The consul image's scripts (images/consul/*.py) loaded as the image runs them: beside its own
modules (consul_http) and the project's modules bootstrap/provision.sh copies in."""

from __future__ import annotations

import importlib.util
import os
import sys

from components import naming
from components.model import analysis, election, hooks, rollout, scoreboard
from unit_harness import ROOT

IMAGE = os.path.join(ROOT, "images", "consul")
CARRIED = {"naming": naming, "analysis": analysis, "rollout": rollout, "election": election,
           "hooks": hooks, "scoreboard": scoreboard}


def load_script(filename: str, module_name: str):
    """images/consul/`filename` as a module called `module_name`."""
    for name, module in CARRIED.items():
        sys.modules.setdefault(name, module)
    if IMAGE not in sys.path:
        sys.path.append(IMAGE)
    spec = importlib.util.spec_from_file_location(module_name, os.path.join(IMAGE, filename))
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
