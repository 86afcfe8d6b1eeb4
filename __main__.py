"""Blue/green delivery: reads this stack's config (stacks/Pulumi.<stack>.yaml) and deploys it."""

import os

from bluegreen.components.program import run

run(os.path.dirname(os.path.abspath(__file__)))
