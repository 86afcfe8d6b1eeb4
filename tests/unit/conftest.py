"""Makes the project root (components/) importable, and this folder's harness.py importable as
`unit_harness`: tests/e2e has a harness.py of its own, and a plain `import harness` from here
would shadow it (or be shadowed) when both folders run in one pytest session."""

import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

if "unit_harness" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("unit_harness", os.path.join(HERE, "harness.py"))
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["unit_harness"] = _module
    _spec.loader.exec_module(_module)
