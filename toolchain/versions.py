"""Version checks for tools found on PATH (toolchain/build.sh).

    python3 toolchain/versions.py at-least "$(pulumi version)" 3.259.0   # exit 0 when new enough
    python3 toolchain/versions.py exactly "$(consul version)" 1.16.3     # exit 0 when the same

The first argument is a tool's version output (e.g. `Consul v1.16.3` + more lines,
`consul-template v0.41.4 (abc1234)`, `v3.259.0`); its first semantic version is compared.
A pre-release (3.260.0-alpha.1) ranks below its release, as in semantic versioning.
"""

from __future__ import annotations

import re
import sys

VERSION = re.compile(r"v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?")


def parse(text: str) -> tuple | None:
    """The first version in `text` as a sortable key, or None when there is none."""
    match = VERSION.search(text)
    if not match:
        return None
    major, minor, patch, pre = match.groups()
    # A release sorts above any pre-release of the same version; pre-release parts compare
    # numerically when numeric, else as text, numeric parts first (semver rule 11).
    pre_key = (1,) if pre is None else (0, *((0, int(p), "") if p.isdigit() else (1, 0, p)
                                            for p in pre.split(".")))
    return int(major), int(minor), int(patch), pre_key


def at_least(found: str, pinned: str) -> bool:
    have, want = parse(found), parse(pinned)
    if want is None:
        raise ValueError(f"pinned version {pinned!r} is not a version")
    return have is not None and have >= want


def exactly(found: str, pinned: str) -> bool:
    have, want = parse(found), parse(pinned)
    if want is None:
        raise ValueError(f"pinned version {pinned!r} is not a version")
    return have == want


def main(argv: list[str]) -> int:
    checks = {"at-least": at_least, "exactly": exactly}
    if len(argv) != 3 or argv[0] not in checks:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    return 0 if checks[argv[0]](argv[1], argv[2]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
