import pytest
import torch

from cnnlab.schedules import lr_factor


def torch_lrs(make_scheduler, steps: int, lr: float = 0.1) -> list[float]:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=lr)
    scheduler = make_scheduler(optimizer)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_onecycle_matches_torch():
    total = 200
    expected = torch_lrs(lambda o: torch.optim.lr_scheduler.OneCycleLR(
        o, max_lr=0.1, total_steps=total, pct_start=0.25, cycle_momentum=False), total)
    ours = [0.1 * lr_factor("onecycle", s, total, warmup=0.25) for s in range(total)]
    assert ours == pytest.approx(expected, rel=1e-6, abs=1e-12)


def test_step_matches_steplr_stepped_per_epoch():
    steps_per_epoch, epochs = 7, 5
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.7)
    for epoch in range(epochs):
        for step in range(steps_per_epoch):
            ours = lr_factor("step", epoch * steps_per_epoch + step, epochs * steps_per_epoch,
                             steps_per_epoch=steps_per_epoch, step_size=2, gamma=0.7)
            assert ours == pytest.approx(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()


def test_cosine_without_warmup_matches_torch():
    total = 50
    expected = torch_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=total), total, lr=1.0)
    assert [lr_factor("cosine", s, total) for s in range(total)] == pytest.approx(expected, abs=1e-9)


def test_cosine_warmup_rises_linearly_then_decays():
    values = [lr_factor("cosine", s, 100, warmup=0.1) for s in range(100)]
    assert values[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert all(a >= b for a, b in zip(values[10:], values[11:]))


def test_unknown_schedule():
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        lr_factor("linear", 0, 10)
