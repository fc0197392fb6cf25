import json
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


def metrics_without_timings(run_dir) -> list[dict]:
    """A run's metrics.jsonl rows without the wall-clock fields, which differ between equal runs."""
    rows = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in ("seconds", "images_per_s")} for row in rows]


def interrupt_after_first_epoch(config, name: str, runs_dir) -> None:
    """Train `config` into runs_dir/name and stop it (KeyboardInterrupt) right after its first checkpoint."""
    from cnnlab.train.trainer import Trainer

    trainer = Trainer(config, name=name, runs_dir=runs_dir, progress=False)
    save = trainer._checkpoint

    def save_then_stop(row):
        save(row)
        raise KeyboardInterrupt

    trainer._checkpoint = save_then_stop
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
