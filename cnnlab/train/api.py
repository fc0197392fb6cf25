"""What `import cnnlab` offers, over the Trainer and run folders: `cnnlab.train(...)`, `cnnlab.open(path)`,
`cnnlab.runs()` and `cnnlab.inspect(model)`, and what they return: a `Run` (a run folder you can ask things in
Python) and a `Model` (a model of your own, asked the same things).

    import cnnlab
    run = cnnlab.train(epochs=1, train_limit=5000)   # as `cnnlab train --epochs 1 --train-limit 5000`
    run.evaluate()                                    # Scores: accuracy, loss, per-class accuracy, confusion
    run.predict("my_digit.png")                       # its class and probabilities
    run.show.features(0)                              # a Figure: test image 0 through every layer
    cnnlab.inspect(MyNet(), weights="net.safetensors").show.filters()

The command line runs the same functions: `cnnlab evaluate` and `cnnlab predict` print what `evaluate` and
`predict` return (cnnlab.train.inference), `cnnlab show KIND` saves what `show.KIND()` returns (cnnlab.viz.show).
"""

from __future__ import annotations

import base64
import copy
import functools
import html
from pathlib import Path

from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.train import inference
from cnnlab.train import runs as folders
from cnnlab.train.config import recipe_config
from cnnlab.train.user_model import UserModel
from cnnlab.viz.show import Show


NOTEBOOK = "notebook:"  # what a model given as an object is named after, in place of FILE.py


class Answers:
    """What a run and a model of your own both answer in Python, from what they answer the commands (name, info,
    config, test_split(), build_model())."""

    @functools.cached_property
    def model(self) -> nn.Module:
        """The trained torch model (`nn.Module`), in eval mode."""
        return self.build_model("last")

    @functools.cached_property
    def show(self) -> Show:
        """The pictures: .filters(), .features(x), .saliency(x, method=...), .occlusion(x), .deconv(), .dream(),
        .curves(), .confusion(), .mistakes(), each a matplotlib Figure with its numbers in `fig.numbers`
        (cnnlab.viz.show)."""
        shown = Show(self, "last")
        shown._model = self.model  # one model for the answers and the pictures
        return shown

    def predict(self, images, top: int = 3):
        """The answer for an image (a file path, a PIL image, an array or tensor of pixels), or a list of answers
        for a list of them: the class and the `top` most probable classes with their probabilities (for a
        segmentation, the pixels of each class). Images are prepared as the dataset's were (`cnnlab predict`).

        >>> answer = run.predict(cnnlab.data.load("mnist", "test", limit=1).images[0])
        >>> answer["class"], len(answer["probabilities"])
        ('7', 3)
        """
        if top < 1:
            raise ConfigError(f"top must be at least 1, got {top}")
        many = isinstance(images, (list, tuple))
        answers = inference.predict(self, list(images) if many else [images])
        for answer in answers:
            if "probabilities" in answer:
                ranked = sorted(answer["probabilities"].items(), key=lambda item: -item[1])[:top]
                answer["probabilities"] = dict(ranked)
        return answers if many else answers[0]

    def evaluate(self, split: str = "test", limit: int | None = None, tta: bool = False,
                 batch_size: int | None = None, checkpoint: str = "last") -> inference.Scores:
        """Its numbers on `split` of its dataset (the first `limit` images), as `cnnlab evaluate` prints them:
        `.accuracy`, `.loss`, `.per_class`, `.confusion` (segmentation: `.mean_iou`, IoU per class); `tta`
        averages each image's shifted views; `checkpoint` "best": a run's best epoch's weights.

        >>> scores = run.evaluate(limit=1000)
        >>> scores.accuracy > 0.9, len(scores.per_class)
        (True, 10)
        """
        return inference.evaluate([self], checkpoint, split, limit, batch_size, tta)

    def summary(self):
        """Its model layer by layer: shapes, receptive fields, parameters, MACs (an HTML table in Jupyter).

        >>> run.summary().totals[1][0]
        'parameters'
        """
        from cnnlab.models.zoo import summarize

        shape = getattr(self, "input_shape", None)  # a model of your own has one; a run's is its test images'
        if shape is None:
            images = self.test_split(limit=1).images
            shape = (1, *images.shape[1:]) if images.ndim == 3 else tuple(images.shape[1:])
        return summarize(self.model, tuple(shape), f"{self.name}: input {'x'.join(map(str, shape))}")


class Run(Answers, folders.Run):
    """A run folder (`cnnlab.open(path)`, `cnnlab.train(...)`): its `.config`, its per-epoch `.history`, its
    `.model`, and what it answers: `.evaluate()`, `.predict(image)`, `.show.*()`, `.summary()`. In Jupyter, a card:
    model, dataset, its best number, its curves."""

    @property
    def history(self) -> list[dict]:
        """One record per epoch, as metrics.jsonl holds them: train/test loss and accuracy, learning rate,
        seconds, images/s (Keras's `History.history`, by epoch rather than by key)."""
        return self.metrics()

    def _headline(self) -> str:
        metric = self.task.metric
        history = self.history
        if not history:
            return "no finished epoch"
        best = max(row[metric.key] for row in history)
        seconds = sum(row["seconds"] for row in history)
        return (f"{len(history)}/{self.config.epochs} epochs, {metric.name} {metric.format(history[-1][metric.key])} "
                f"(best {metric.format(best)}), {seconds:.0f} s")

    def __repr__(self) -> str:
        return f"<Run {self.name}: {self.caption} on {self.config.dataset}; {self._headline()}>"

    def _repr_html_(self) -> str:
        curves = self.path / "curves.png"
        picture = (f"<br><img width='420' src='data:image/png;base64,{base64.b64encode(curves.read_bytes()).decode()}'>"
                   if curves.is_file() else "")
        return (f"<div style='border:1px solid #bbb;border-radius:6px;padding:6px 10px;display:inline-block'>"
                f"<b>{html.escape(self.name)}</b><br>{html.escape(self.caption)} on "
                f"{html.escape(self.config.dataset)}, recipe {html.escape(self.config.recipe)}<br>"
                f"{html.escape(self._headline())}<br><small>{html.escape(str(self.path))}</small>{picture}</div>")


class Model(Answers, UserModel):
    """A model of your own (`cnnlab.inspect(model_or_file)`), answering what a run does but its training."""

    @property
    def caption(self) -> str:
        if self.spec.startswith(NOTEBOOK) and self.weights is None:  # a module the notebook may have trained
            return "your model, with its weights when asked"
        return super().caption

    def __repr__(self) -> str:
        return f"<Model {self.name}: {self.caption}; {self.dataset} inputs {'x'.join(map(str, self.input_shape))}>"


class RunList(list):
    """Runs, shown in Jupyter as a table."""

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{html.escape(r.name)}</td><td>{html.escape(r.config.model)}</td>"
                       f"<td>{html.escape(r.config.dataset)}</td><td>{html.escape(r._headline())}</td></tr>"
                       for r in self)
        return f"<table><tr><th>run</th><th>model</th><th>dataset</th><th>result</th></tr>{rows}</table>"


def train(recipe: str = "default", *, name: str | None = None, runs_dir: str | Path | None = None,
          progress: bool = True, resume: str | Path | None = None, **settings) -> Run:
    """Train as `cnnlab train` does and return the Run: the `recipe` ("default", "fast", "best", "fashion",
    "segmentation", ...) with `settings`, every training option by its flag's name (epochs, lr, model, dataset,
    train_limit, ...), into runs_dir/name (default runs/ and a name from model, dataset and time); `resume`
    continues an interrupted run. A progress bar per epoch shows in a terminal and in Jupyter.

    >>> run = cnnlab.train(epochs=1, train_limit=512, test_limit=256, runs_dir=tmp, progress=False)
    >>> run.config.epochs, len(run.history)
    (1, 1)
    """
    from cnnlab.train.trainer import Trainer

    if resume is not None:
        if settings or name:
            raise ConfigError("resume continues a run with its own config.json; drop the other settings")
        trainer = Trainer.resume(resume, progress=progress)
    else:
        trainer = Trainer(recipe_config(recipe, **settings), name=name, runs_dir=runs_dir, progress=progress)
    return Run.open(trainer.fit().run_dir)


def open(path: str | Path) -> Run:  # noqa: A001 - cnnlab.open(path), as the API names it
    """The run folder at `path` (or its name under runs/), as a Run.

    >>> cnnlab.open(run.path).name == run.name
    True
    """
    return Run.open(path)


def runs(runs_dir: str | Path | None = None) -> RunList:  # noqa: F811 - cnnlab.runs(), as `cnnlab runs`
    """Every run folder in `runs_dir` (default runs/ or $CNNLAB_RUNS), oldest name first, as `cnnlab runs` lists
    them; a table in Jupyter.

    >>> run.name in [r.name for r in cnnlab.runs(run.path.parent)]
    True
    """
    return RunList(Run(r.path, r.config) for r in folders.list_runs(runs_dir))


def inspect(model, weights: str | Path | None = None, dataset: str = "mnist", class_names: str | None = None,
            input_shape: tuple[int, int, int] | None = None) -> Model:
    """A model of your own, to look inside as a run: `model` a torch module (or a class or function that builds
    one with no arguments), or "FILE.py:NAME" (as the commands' `--model FILE.py:NAME`); `weights` a
    .safetensors or state-dict file loaded into it; `dataset` what it was trained on (its test images, classes,
    normalization; "none": your own images only, with `input_shape`). Its `.show`, `.predict()`, `.evaluate()`,
    `.summary()` work as a Run's.

    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
    ...                           torch.nn.Linear(4 * 26 * 26, 10))
    >>> mine = cnnlab.inspect(net)
    >>> mine.show.filters().numbers["kernels"].shape
    (4, 1, 3, 3)
    """
    if isinstance(model, (str, Path)):
        return Model.open(str(model), weights, dataset, class_names, input_shape)
    if isinstance(model, nn.Module):
        # a copy, as the module is when asked: looking inside never changes the notebook's own model (its mode,
        # its weights, the output checks cnnlab hooks onto what it builds)
        factory, label = (lambda: copy.deepcopy(model)), type(model).__name__
    elif callable(model):
        factory, label = model, getattr(model, "__name__", type(model).__name__)
    else:
        raise ConfigError(f"cnnlab.inspect: expected a torch module, a class or function that builds one, or "
                          f"'FILE.py:NAME'; got a {type(model).__name__}")
    return Model.open(f"{NOTEBOOK}{label}", weights, dataset, class_names, input_shape, factory=factory)
