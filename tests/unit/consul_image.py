"""The consul image's scripts (images/consul/*.py) loaded as the image runs them: top-level
modules that import the project's package (the image installs it)."""

from __future__ import annotations

import importlib.util
import os
import sys

from unit_harness import ROOT

IMAGE = os.path.join(ROOT, "images", "consul")


def load_script(filename: str, module_name: str):
    """images/consul/`filename` as a module called `module_name`."""
    spec = importlib.util.spec_from_file_location(module_name, os.path.join(IMAGE, filename))
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
