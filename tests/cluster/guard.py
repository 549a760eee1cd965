"""The cluster tests' shared guard: a testbed (runtime.testbed) needs root on Linux, sshd and rsync."""

from __future__ import annotations

import os

import pytest


def testbed_or_skip() -> None:
    """Skip where no testbed can be made (what :func:`runtime.testbed.hosts.require` refuses), fail in CI."""
    from runtime.testbed import TestbedError
    from runtime.testbed.hosts import require

    try:
        require()
    except TestbedError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{exc} — in CI these tests must run, not skip", pytrace=False)
        pytest.skip(str(exc))
