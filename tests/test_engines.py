"""The Keras and PyTensor engines against PyTorch: the same model from the same initial weights gives the same logits,
loss and gradients, the optimizers take PyTorch's steps, training learns, and a killed run resumes exactly.

Gradients are compared within 1e-4 (float32: both engines sum the same products in other orders). The PyTensor engine
compiles its graphs to C; a test session starts from an empty compile cache shared by its workers (tests/conftest.py):
the first compilation of the engine's training step took 40-300 s on the 2-core machines, later ones reuse its ops.
So the math of PyTensor's graphs (logits, gradients, optimizer updates) is checked uncompiled (`uncompiled()`:
PyTensor's Python implementation of each op, the graph as built), and compiled C code runs where training is tested:
learning MNIST, the killed run's resume, the command matrix and the lab.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from cnnlab.errors import MissingDependency
from cnnlab.models import get_model
from cnnlab.scratch.gradcheck import relative_error
from cnnlab.train.config import recipe_config
from cnnlab.train.distributed import World
from cnnlab.train.torch_engine import TorchEngine
from cnnlab.train.trainer import Trainer, make_engine

from conftest import killed_run, metrics_without_timings, run_in_process

ENGINES = ["keras", "pytensor"]


def uncompiled():
    """PyTensor's mode that runs a graph as built, by its Python linker: no compilation (PyTensor 3's default mode,
    Numba, compiled one gradient graph of LeNet-5 for minutes), and no rewriting either. FAST_COMPILE's rewrites took
    1-4 s a graph, and merged products into n-ary multiplications, which NumPy has no ufunc for: Python then
    multiplied element by element (780,000 calls in one optimizer test). 6-7 s an optimizer test before, ~1 s now."""
    from pytensor.compile.mode import Mode

    return Mode(linker="py", optimizer=None)
# The tests that compile the PyTensor engine's training step to C run on one xdist worker, one after the other
# (`make test` runs --dist loadgroup): the first compiles, the others find its ops in the shared compile cache,
# and no worker waits on PyTensor's compile lock while the other compiles.
COMPILED_C = pytest.mark.xdist_group("pytensor-c")
TRAINED_ENGINES = ["keras", pytest.param("pytensor", marks=COMPILED_C)]
# The lab's models: simple-cnn with every option that computes deterministically (dropout's masks are each engine's
# own), LeNet-5's partial connections, trained subsampling and scaled tanh, and the MLP baseline.
MODELS = [("simple-cnn", {}), ("simple-cnn", {"batch_norm": True}), ("lenet5", {}), ("mlp", {})]


def batch(n: int = 8, side: int = 28):
    generator = torch.Generator().manual_seed(1)
    return torch.randn(n, 1, side, side, generator=generator), torch.randint(0, 10, (n,), generator=generator)


def engines_pair(engine: str, model_name: str, options: dict, **settings):
    """The engine and a float32 torch engine, built from one model with the same initial weights."""
    config = recipe_config(engine=engine, model=model_name, model_options=options, precision="fp32", **settings)
    torch.manual_seed(0)
    side = 32 if model_name == "lenet5" else 28
    model = get_model(model_name, input_size=side, **options)
    reference = get_model(model_name, input_size=side, **options)
    reference.load_state_dict(model.state_dict())
    built = make_engine(config, (1, side, side), 100, torch.device("cpu"), World(), model)
    torch_config = recipe_config(model=model_name, model_options=options, precision="fp32", channels_last=False,
                                 **settings)
    return built, TorchEngine(torch_config, reference, 100, torch.device("cpu")), side


def engine_gradients(engine: str, model: torch.nn.Module, name: str, x, y):
    """Training-mode logits, summed loss and each parameter's gradient (torch names and layout) of `model` translated
    into `engine` (its graph or Keras model only: no optimizer, nothing else compiled)."""
    if engine == "pytensor":
        import pytensor
        import pytensor.tensor as pt

        from cnnlab.train.pytensor_engine import Graph, cross_entropy_sum

        graph = Graph(model, name, seed=0)
        xs, ys = pt.tensor4(dtype="float32", shape=(None, *x.shape[1:])), pt.lvector()  # as the engine's input
        logits = graph(xs, training=True)
        loss = cross_entropy_sum(logits, ys)
        names = [name for name, shared in graph.shared.items() if shared in graph.trainable]
        f = pytensor.function([xs, ys], [logits, loss, *pytensor.grad(loss, graph.trainable)], mode=uncompiled())
        logits, loss, *grads = f(x.numpy(), y.numpy())
        return logits, float(loss), dict(zip(names, grads))
    from cnnlab.train.keras_engine import keras_model  # first: it sets KERAS_BACKEND=torch before Keras loads

    import keras

    sequential, variables = keras_model(model, name, tuple(x.shape[1:]))
    for torch_name, variable, to_keras, _ in variables:
        value = model.state_dict()[torch_name]
        variable.assign((to_keras(value) if to_keras else value).contiguous())
    logits = sequential(x, training=True)
    loss = -keras.ops.take_along_axis(keras.ops.log_softmax(logits, axis=1), y[:, None], axis=1).sum()
    loss.backward()
    grads = {torch_name: (to_torch(v.value.grad) if to_torch else v.value.grad).numpy()
             for torch_name, v, _, to_torch in variables if v.trainable}
    return logits.detach().numpy(), float(loss.detach()), grads


@pytest.mark.parametrize("model_name, options", MODELS, ids=lambda v: v if isinstance(v, str) else "-".join(v) or "")
@pytest.mark.parametrize("engine", ENGINES)
def test_logits_loss_and_every_gradient_match_torch(engine, model_name, options):
    torch.manual_seed(0)
    side = 32 if model_name == "lenet5" else 28
    model = get_model(model_name, input_size=side, **options).train()
    x, y = batch(side=side)
    logits, loss, grads = engine_gradients(engine, model, model_name, x, y)
    expected = model(x)
    expected_loss = torch.nn.functional.cross_entropy(expected, y, reduction="sum")
    expected_loss.backward()
    assert relative_error(logits, expected.detach().numpy()) <= 1e-5
    assert loss == pytest.approx(expected_loss.item(), rel=1e-5)
    expected_grads = {name: p.grad.numpy() for name, p in model.named_parameters()}
    assert sorted(grads) == sorted(expected_grads)
    for name, grad in expected_grads.items():
        assert relative_error(grads[name], grad) <= 1e-4, name


@pytest.mark.parametrize("kernel, stride, padding, dilation", [
    ((5, 5), (1, 1), (0, 0), (1, 1)), ((3, 3), (2, 2), (1, 1), (1, 1)), ((2, 3), (2, 1), (2, 1), (1, 1)),
    ((3, 2), (1, 2), (1, 0), (2, 3)), ((1, 1), (1, 1), (0, 0), (1, 1))],
    ids=["5x5", "strided-padded", "rectangular", "dilated", "1x1"])
def test_pytensor_convolution_and_its_gradients_equal_torchs(kernel, stride, padding, dilation):
    """The engine's im2col convolution (the windows cut in two passes: rows, then columns) against torch's, with
    every stride, padding and dilation the engine takes: the output and the gradients of the input, the kernel
    and the bias, in float32 (the engine's: PyTensor's pad returns floatX whatever its input), uncompiled
    (`uncompiled()`)."""
    import pytensor
    import pytensor.tensor as pt

    from cnnlab.train.pytensor_engine import conv2d

    x = torch.randn(2, 3, 11, 10, dtype=torch.float32, requires_grad=True)
    weight = torch.randn(4, 3, *kernel, dtype=torch.float32, requires_grad=True)
    bias = torch.randn(4, dtype=torch.float32, requires_grad=True)
    expected = torch.nn.functional.conv2d(x, weight, bias, stride, padding, dilation)
    weights = torch.randn(expected.shape, dtype=torch.float32)
    (expected * weights).sum().backward()
    h, w, b = pt.tensor4(dtype="float32"), pt.tensor(dtype="float32", shape=weight.shape), pt.vector(dtype="float32")
    out = conv2d(h, w, b, stride, padding, dilation)
    loss = (out * weights.permute(0, 2, 3, 1).numpy()).sum()
    f = pytensor.function([h, w, b], [out, *pytensor.grad(loss, [h, w, b])], mode=uncompiled())
    got, grad_x, grad_w, grad_b = f(x.detach().permute(0, 2, 3, 1).numpy(), weight.detach().numpy(),
                                    bias.detach().numpy())
    for mine, theirs in [(got.transpose(0, 3, 1, 2), expected), (grad_x.transpose(0, 3, 1, 2), x.grad),
                         (grad_w, weight.grad), (grad_b, bias.grad)]:
        np.testing.assert_allclose(mine, theirs.detach().numpy(), rtol=1e-5, atol=1e-5)


POOLS = {"max": torch.nn.functional.max_pool2d, "average": torch.nn.functional.avg_pool2d,
         "sum": lambda x, k, s: torch.nn.functional.avg_pool2d(x, k, s) * k * k}


@pytest.mark.parametrize("kernel, stride, side", [(2, 2, 12), (3, 2, 11), (2, 2, None)],
                         ids=["tiling", "overlapping", "tiling-unknown-size"])
def test_pytensor_pooling_and_its_gradient_equal_torchs(kernel, stride, side):
    """Both of the engine's pooling paths, each mode: windows that tile a map of known size are pooled by one
    reduction over a reshape; others (overlapping, or a size known only at run time) by the maximum or sum of
    shifted views. The graphs run uncompiled (`uncompiled()`): this checks their math, in float64."""
    import pytensor
    import pytensor.tensor as pt

    from cnnlab.train.pytensor_engine import pool2d

    # continuous values: no ties within a window, whose gradient each library places its own way
    x = torch.randn(3, 5, side or 12, side or 12, dtype=torch.float64, requires_grad=True)
    h = pt.tensor4(dtype="float64", shape=(None, side, side, 5))
    for mode, torch_pool in POOLS.items():
        x.grad = None
        expected = torch_pool(x, kernel, stride)
        weights = torch.randn(expected.shape, dtype=torch.float64)
        (expected * weights).sum().backward()
        pooled = pool2d(h, (kernel, kernel), (stride, stride), mode)
        loss = (pooled * weights.permute(0, 2, 3, 1).numpy()).sum()
        f = pytensor.function([h], [pooled, pytensor.grad(loss, h)], mode=uncompiled())
        out, grad = f(x.detach().permute(0, 2, 3, 1).numpy())
        np.testing.assert_allclose(out.transpose(0, 3, 1, 2), expected.detach().numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(grad.transpose(0, 3, 1, 2), x.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("settings", [
    dict(optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    dict(optimizer="sgd", lr=0.05, momentum=0.9, nesterov=False),
    dict(optimizer="adam", lr=2e-3, weight_decay=1e-3),
    dict(optimizer="adamw", lr=2e-3, weight_decay=5e-2),
], ids=["sgd-nesterov-decay", "sgd-momentum", "adam-decay", "adamw"])
@pytest.mark.parametrize("engine", ENGINES)
def test_optimizer_steps_are_pytorchs(engine, settings, monkeypatch):
    """Three steps of simple-cnn with batch norm (so the running statistics are updated too), a schedule that changes
    the learning rate every step: the engine's weights and losses follow torch.optim's."""
    if engine == "pytensor":
        from cnnlab.train import pytensor_engine

        monkeypatch.setattr(pytensor_engine, "MODE", uncompiled())  # the updates' math; C: the training tests
    built, reference, side = engines_pair(engine, "simple-cnn", {"batch_norm": True}, schedule="onecycle", **settings)
    x, y = batch(16)
    for _ in range(3):
        loss, _ = built.train_batch(x, y)
        expected_loss, _ = reference.train_batch(x, y)
        assert float(loss) == pytest.approx(float(expected_loss), rel=1e-5)
    assert built.lr == pytest.approx(reference.lr, rel=1e-6)
    weights, expected = built.weights(), reference.weights()
    assert list(weights) == list(expected)
    for name, value in expected.items():
        # Keras's moving variance is the batch's biased variance (torch's running_var the unbiased): n/(n-1) apart.
        tolerance = 2e-3 if engine == "keras" and name.endswith("running_var") else 1e-4
        assert relative_error(weights[name].double().numpy(), value.double().numpy()) <= tolerance, name


@pytest.mark.slow
@pytest.mark.parametrize("engine", TRAINED_ENGINES)
def test_engine_learns_mnist_and_saves_torch_weights(engine, tmp_path):
    config = recipe_config(engine=engine, epochs=1, train_limit=2000, test_limit=1000, threads=1, device="cpu")
    trainer = Trainer(config, name=engine, runs_dir=tmp_path, progress=False)
    result = trainer.fit()
    # 2,000 images, one epoch of 32 steps, 1,000 test images: measured 77.1-81.1% (keras) and 77.1-81.3% (pytensor)
    # over seeds 0-4 x 1 and 2 threads (the torch engine's range too: the same steps); an untrained net scores ~10%.
    assert result.final_test_acc >= 0.7
    from cnnlab.train.runs import Run

    model = Run.open(result.run_dir).build_model()
    x = trainer.test_data.normalize(trainer.test_data.images[:64])
    with torch.no_grad():
        np.testing.assert_allclose(model(x).numpy(), trainer.engine.logits(x).numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("engine", TRAINED_ENGINES)
def test_a_killed_run_resumes_as_if_never_stopped(engine, tmp_path):
    settings = dict(engine=engine, model_options={"dropout": 0.25}, epochs=2, train_limit=320, test_limit=100,
                    batch_size=32, threads=1, device="cpu")
    config = recipe_config(**settings)
    whole = Trainer(config, name="whole", runs_dir=tmp_path, progress=False).fit()
    killed_run(config, "killed", tmp_path)
    Trainer.resume(tmp_path / "killed", progress=False).fit()
    assert metrics_without_timings(tmp_path / "killed") == metrics_without_timings(whole.run_dir)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_model_the_engine_cannot_build_is_one_line(engine, capsys, tmp_path):
    code, _, err = run_in_process(capsys, "train", "--engine", engine, "--model", "resnet20", "--train-limit", 64,
                                  "--test-limit", 64, "--quiet", "--runs-dir", tmp_path)
    assert code == 2 and err.count("\n") == 1
    assert f"the {engine} engine cannot build resnet20" in err


def test_a_missing_package_is_one_line_saying_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "keras", None)  # import keras now fails as if it were not installed
    monkeypatch.delitem(sys.modules, "cnnlab.train.keras_engine", raising=False)
    message = r"--engine keras needs the package keras: pip install 'cnnlab\[labs\]'"
    with pytest.raises(MissingDependency, match=message):
        engines_pair("keras", "mlp", {})


def test_cnnlab_and_the_other_engines_never_import_the_lab_packages():
    """Keras, PyTensor and ONNX load only for the commands that use them: not for `import cnnlab`, the parser, or a
    torch or scratch training."""
    code = ("import sys, cnnlab; from cnnlab.cli import build_parser; build_parser(); "
            "from cnnlab.train.config import recipe_config; from cnnlab.train.trainer import Trainer\n"
            "for engine in ('torch', 'scratch'):\n"
            "    Trainer(recipe_config(engine=engine, train_limit=64, test_limit=64, epochs=1, threads=1),"
            " progress=False, save=False).fit()\n"
            "print(sorted(m for m in ('keras', 'pytensor', 'onnx', 'onnxruntime', 'onnxscript') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_the_pytensor_engine_keeps_pytensors_blas_warning_quiet():
    """pip's PyTensor links no BLAS and says so in five lines the first time its setting is read; the engine reads
    it, quietly, when it loads, so that nothing else (the lab, a compilation) prints them."""
    code = "import cnnlab.train.pytensor_engine, pytensor; pytensor.config.blas__ldflags"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stderr == ""
