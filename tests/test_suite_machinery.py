"""The suite's own machinery, which `make test` relies on to build each costly thing once."""

from __future__ import annotations

import pytest


@pytest.mark.xdist_group("suite-machinery")
def test_an_xdist_group_reaches_the_scheduler(request):
    """Under `make test` (--dist loadgroup) a test's xdist_group is in its node id, which is what the scheduler
    reads to send a group's tests to one worker (the PyTensor compilation, the module-scoped runs and browsers
    are built once there). pytest 9.2 dropped it silently (pytest-xdist#1386): every group was split over the
    workers, and each built its own. Run without xdist, there are no groups to check."""
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("not run by xdist with --dist loadgroup (`make test` is)")
    assert request.node.nodeid.endswith("@suite-machinery"), (
        f"{request.node.nodeid}: xdist_group has no effect with pytest {pytest.__version__} (pyproject.toml pins "
        "pytest below 9.2)")
