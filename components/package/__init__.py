"""The component package `bluegreen`: Platform and Service as resources any Pulumi language can
use (PulumiPlugin.yaml, `pulumi package add`). Each is an adapter: it builds the typed, validated
configuration the Python program builds from stack config, and registers the same components."""

import importlib.metadata
import os
import tomllib

from bluegreen.components.naming import PACKAGE_NAME

# The repository: manifest paths a Service is given relative resolve here by default.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))


def input_error(resource: str, name: str, error: ValueError) -> ValueError:
    """A configuration error of a package resource, naming the resource and its input (the
    stack-file field it stands for, without the bluegreen. prefix) instead of a stack file."""
    field, problem = getattr(error, "field", None), getattr(error, "problem", None)
    if field is None or problem is None:
        return ValueError(f"{resource} {name!r}: {error}")
    return ValueError(f"{resource} {name!r}: {field.removeprefix('bluegreen.')}: {problem}")


def package_version() -> str:
    """The package's version: pyproject.toml's, in a checkout; the installed distribution's."""
    pyproject = os.path.join(ROOT, "pyproject.toml")
    if os.path.exists(pyproject):
        with open(pyproject, "rb") as handle:
            return tomllib.load(handle)["project"]["version"]
    return importlib.metadata.version(PACKAGE_NAME)
