"""The autodiff machinery itself: accumulation, shared sub-expressions, no_grad, dtypes, errors."""

import subprocess
import sys

import numpy as np
import pytest

from cnnlab.scratch import ShapeError, Tensor, gradcheck, no_grad
from cnnlab.scratch.gradcheck import GradientMismatch


def test_a_value_used_twice_gets_both_gradients():
    x = Tensor(np.array([3.0]), requires_grad=True)
    y = x * x + x  # dy/dx = 2x + 1
    y.backward()
    np.testing.assert_allclose(x.grad, [7.0])


def test_gradients_accumulate_across_backward_calls_until_cleared():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    (x * 2.0).sum().backward()
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad, [5.0, 5.0])


def test_deep_graphs_do_not_hit_the_recursion_limit():
    x = Tensor(np.array([1.0]), requires_grad=True, dtype=np.float64)
    y = x
    for _ in range(5000):
        y = y * 1.0001
    y.backward()
    np.testing.assert_allclose(x.grad, [1.0001**5000])


def test_no_grad_records_nothing():
    x = Tensor(np.ones(3), requires_grad=True)
    with no_grad():
        y = (x * 2.0).exp()
    assert not y.requires_grad and y._parents == ()


def test_float32_stays_float32_with_python_scalars():
    x = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    y = (2.0 * x + 1) / 3.0 - 0.5
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32


def test_integer_data_becomes_float32():
    assert Tensor([1, 2, 3]).dtype == np.float32


def test_backward_errors_say_what_is_wrong():
    with pytest.raises(ShapeError, match="does not require grad"):
        Tensor(np.ones(2)).sum().backward()
    with pytest.raises(ShapeError, match="explicit gradient for a non-scalar of shape \\(2,\\)"):
        (Tensor(np.ones(2), requires_grad=True) * 2.0).backward()


def test_gradcheck_catches_a_wrong_gradient():
    def wrong_square(x):  # forward x^2, backward claims 3x
        return Tensor.from_op(x.data**2, (x,), lambda g: (3 * x.data * g,))

    with pytest.raises(GradientMismatch, match=r"gradient of input 0 \(shape \(3, 2\)\): relative error"):
        gradcheck(wrong_square, np.arange(6.0).reshape(3, 2))
    assert gradcheck(lambda x: x * x, np.arange(6.0).reshape(3, 2)) < 1e-8


def test_the_engine_never_imports_torch():
    code = "import sys, cnnlab.scratch, cnnlab.viz.handcrafted; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
