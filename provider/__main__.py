"""The component package's provider (PulumiPlugin.yaml): hosts Platform and Service as
bluegreen:index:<Name> for programs in any Pulumi language."""

import os
import sys

# The repository's own modules, not whichever copy the virtualenv has installed: the language
# host runs this directory, so only provider/ would be on sys.path.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bluegreen.components.naming import PACKAGE_NAME  # noqa: E402
from bluegreen.components.package import package_version  # noqa: E402
from bluegreen.components.package.platform import Platform  # noqa: E402
from bluegreen.components.package.service import Service  # noqa: E402
from pulumi.provider.experimental import component_provider_host  # noqa: E402

if __name__ == "__main__":
    component_provider_host([Platform, Service], name=PACKAGE_NAME, version=package_version())
