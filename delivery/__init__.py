"""Delivery: the seed's eleven steps as one command, rollbacks and PR previews.

Built on the Pulumi Automation API with the same components the stacks use, so a pipeline run and
a plain `pulumi up` of a stack deploy through one code path:

    python -m bluegreen.delivery pipeline SERVICE_REPO_DIR --version V [--integration S] [--production S]
    python -m bluegreen.delivery rollback SERVICE --stack S
    python -m bluegreen.delivery preview [--stack S ...] [--base REF] [--markdown FILE]

(`./bg pipeline|rollback|preview ...` runs these after the set-up.) See delivery/README.md.
"""

import os

REPO = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
