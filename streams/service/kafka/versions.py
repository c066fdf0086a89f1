"""The library versions every override in this package was written against.

The overrides copy or replace internals of these exact releases; another release may rename or
reorder them without a sound. `check_versions` is called before an app is built: a worker on
other versions refuses to start and names both.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

PINNED = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0", "mode-streaming": "0.7.1"}
"""Distribution -> the version pinned in pyproject.toml (keep the two equal: a test checks)."""


class VersionMismatch(RuntimeError):
    """An installed library is not the release the overrides were written against."""


def installed(distribution: str) -> str | None:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def check_versions(pinned: dict[str, str] = PINNED) -> None:
    """Raise VersionMismatch naming each library whose installed version is not the pinned one."""
    wrong = [(name, want, installed(name)) for name, want in pinned.items() if installed(name) != want]
    if wrong:
        listed = "; ".join(f"{name} {have or 'not installed'} is installed, {want} is required"
                           for name, want, have in wrong)
        raise VersionMismatch(f"starcast's Kafka overrides are written for exact releases: {listed}. "
                              "Install the pinned versions (pip install -e .).")
