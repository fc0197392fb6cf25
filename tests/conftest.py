import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """No test reads or writes the user's ~/.cache/cnnlab."""
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def fashion_data_dir() -> str:
    """Fashion-MNIST is not bundled: CI and developers find it in ../shared/data or $CNNLAB_DATA."""
    for candidate in (os.environ.get("CNNLAB_DATA"), SHARED_DATA):
        if candidate and (Path(candidate) / "fashion-mnist").is_dir():
            return str(candidate)
    pytest.skip("Fashion-MNIST files not found (set CNNLAB_DATA to a folder holding fashion-mnist/)")
