"""What `cnnlab show` draws and `run.show` returns: every picture of what a trained model learned and computes, as a
matplotlib Figure (Jupyter shows it in the notebook; `fig.savefig` writes it) with the numbers it draws in
`fig.numbers`.

    show = run.show                     # a Run's, or cnnlab.inspect(model).show for a model of your own
    show.filters()                      # the first conv layer's kernels beside the hand-crafted filters
    fig = show.features(7)              # test image 7 through every conv and pool layer
    fig.numbers["maps"]["conv1"]        # its feature maps, [C, H, W]
    show.saliency("my_digit.png", method="grad-cam")

An input `x` is a test image's number, an image file, a PIL image, or an array or tensor of pixels
(`Task.prepare_any`, cnnlab.tasks). The subject is anything that answers what a run does (name, caption,
info, test_split(), build_model(); evaluate() and history for the training figures): a run folder, or a model
from the user's own code.
"""

from __future__ import annotations

import random
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from cnnlab.data.preprocess import normalize
from cnnlab.errors import ConfigError

SALIENCY_METHODS = ("all", "gradient", "integrated-gradients", "grad-cam")


def _returned(fig, **numbers):
    """The figure, closed for pyplot (a notebook shows it once, as the value returned), with its numbers."""
    plt.close(fig)
    fig.numbers = numbers
    return fig


def deconv_features(text, channels: int, rng) -> list[int]:
    """A count of random features (an int, or its text) or a list of feature numbers ("3,7" or [3, 7])."""
    try:
        if isinstance(text, (list, tuple)):
            chosen = [int(v) for v in text]
        elif isinstance(text, str) and "," in text:
            chosen = [int(v) for v in text.split(",") if v.strip()]
        else:
            count = int(text)
            chosen = sorted(rng.sample(range(channels), min(count, channels))) if count >= 1 else []
    except ValueError:
        raise ConfigError(f"--features {text!r}: a count or a comma list of feature numbers") from None
    if not chosen or not all(0 <= f < channels for f in chosen):
        raise ConfigError(f"--features {text!r}: the layer has features 0..{channels - 1}")
    return chosen


class Show:
    """The pictures of one subject (a run, or a model of your own) at one of its checkpoints."""

    def __init__(self, subject, checkpoint: str = "last"):
        self.subject, self.checkpoint = subject, checkpoint
        self._model = None

    @property
    def model(self) -> torch.nn.Module:
        if self._model is None:
            self._model = self.subject.build_model(self.checkpoint)
        return self._model

    def input(self, x) -> tuple[np.ndarray, str, int | None]:
        """(uint8 image the model sees, a caption, the test image's number or None) for `x`: a test image's number,
        an image file, a PIL image, or an array or tensor of pixels."""
        subject = self.subject
        info = subject.info
        if x is None:
            raise ConfigError("give an IMAGE file or --index N (a test image)")
        if not isinstance(x, (int, np.integer)) or isinstance(x, bool):
            image, name = subject.task.prepare_any(x, info, subject.input_shape)
            return image, name, None
        index = int(x)
        # a generated dataset (mnist-scenes) makes only the images asked for
        test = subject.test_split(limit=index + 1 if info.load else None)
        if not 0 <= index < len(test.labels):
            raise ConfigError(f"--index {index}: the {info.name} test set has images 0..{len(test.labels) - 1}")
        return test.images[index], f"{subject.task.caption(info, test.labels, index)} of {info.name}", index

    def _tensor(self, image) -> torch.Tensor:
        info = self.subject.info
        x = torch.from_numpy(normalize(image, info.mean, info.std))
        return x[None, None] if x.ndim == 2 else x[None]

    def _unlike(self, x, image: np.ndarray, logits: torch.Tensor) -> str:
        """For a classifier's input given as a picture (not a test image) unlike the images it was trained on, why
        (cnnlab.viz.familiarity); else ""."""
        from cnnlab.viz.familiarity import Familiarity

        if isinstance(x, (int, np.integer)) or logits.dim() != 1:
            return ""
        familiarity = Familiarity.of(self.subject, self.model)
        return familiarity.judge(image, logits).describe() if familiarity else ""

    # -- looking inside -------------------------------------------------------------------------------------------
    def filters(self, layer: str | None = None):
        """The learned kernels of a conv layer (default: the first) as an image grid, with the hand-crafted filters
        beside a first layer. `fig.numbers`: layer, kernels [out, in, k, k].

        >>> fig = run.show.filters()
        >>> fig.numbers["layer"], fig.numbers["kernels"].shape
        ('conv1', (16, 1, 5, 5))
        """
        from cnnlab.viz.activations import conv_layer
        from cnnlab.viz.handcrafted import by_short_name
        from cnnlab.viz.kernels import plot_kernels

        name, conv = conv_layer(self.model, layer)
        fig = plot_kernels(name, conv, by_short_name())
        fig.text(0.5, -0.01, f"{self.subject.name} ({self.subject.caption})", ha="center", fontsize=8)
        return _returned(fig, layer=name, kernels=conv.weight.detach().cpu().numpy())

    def features(self, x, max_maps: int = 16):
        """The feature maps of every conv and pool layer for one input `x`, the first `max_maps` channels of each.
        `fig.numbers`: maps {layer: [C, H, W] array}, logits.

        >>> fig = run.show.features(0)      # test image 0
        >>> list(fig.numbers["maps"])
        ['conv1', 'pool1', 'conv2', 'pool2']
        """
        from cnnlab.viz.activations import feature_maps
        from cnnlab.viz.features import plot_feature_maps

        if max_maps < 1:
            raise ConfigError(f"--max-maps must be at least 1, got {max_maps}")
        image, caption, _ = self.input(x)
        maps, logits = feature_maps(self.model, self._tensor(image))
        subject = self.subject
        unlike = self._unlike(x, image, logits)
        title = f"Feature maps of {subject.name} ({subject.caption}) for {caption}: " \
                f"{subject.task.verdict(logits, subject.info)[1]}" + (", unlike its training images" if unlike else "")
        fig = plot_feature_maps(image, maps, max_maps, title)
        return _returned(fig, maps={name: out.numpy() for name, out in maps}, logits=logits.numpy(),
                         unlike=unlike)

    def saliency(self, x, method: str = "all", target: int | None = None, layer: str | None = None,
                 baseline: str = "mean", steps: int = 64):
        """Which pixels the class `target` (default: the predicted one) depends on: gradient saliency, integrated
        gradients from the `baseline` image ("mean" or "black") in `steps` points, and Grad-CAM at `layer`
        (default: after the last conv layer); `method` draws one of them ("gradient", "integrated-gradients",
        "grad-cam") or "all". `fig.numbers`: target, and the maps drawn.

        >>> fig = run.show.saliency(0, method="grad-cam")
        >>> fig.numbers["grad-cam"].shape
        (28, 28)
        """
        from cnnlab.viz.saliency import (grad_cam, gradient_saliency, integrated_gradients, plot_saliency,
                                         plot_saliency_map, target_scores)

        if method not in SALIENCY_METHODS:
            raise ConfigError(f"saliency method {method!r}: expected one of {', '.join(SALIENCY_METHODS)}")
        if baseline not in ("mean", "black"):
            raise ConfigError(f"--baseline {baseline!r}: expected mean or black")
        if steps < 1:
            raise ConfigError(f"--steps must be at least 1, got {steps}")
        subject, model = self.subject, self.model
        info = subject.info
        image, caption, _ = self.input(x)
        inputs = self._tensor(image)
        with torch.no_grad():
            logits = model(inputs)[0]
        task = subject.task
        predicted, said = task.verdict(logits, info)
        unlike = self._unlike(x, image, logits)
        said += ", unlike its training images" if unlike else ""
        target = predicted if target is None else target
        targets = task.targets(info)  # the classes, then whatever else the task's output holds
        if not 0 <= target < len(targets):
            more = "".join(f", {i} {name}" for i, name in enumerate(targets) if i >= info.num_classes)
            raise ConfigError(f"--target {target}: classes are 0..{info.num_classes - 1}{more}")
        caption = f"{subject.name}: {task.question(info, target)} — {caption}, {said}"
        maps = {}
        if method in ("all", "gradient"):
            maps["gradient"] = gradient_saliency(model, inputs, target)
        if method in ("all", "grad-cam"):
            maps["grad-cam"], cam_layer = grad_cam(model, inputs, target, layer)
        if method in ("all", "integrated-gradients"):
            # normalized, the dataset's mean pixel is 0 (each channel's) and black is -mean / std
            black = torch.from_numpy(normalize(np.zeros(inputs.shape[1:], np.uint8), info.mean, info.std))[None]
            start_image = torch.zeros_like(inputs) if baseline == "mean" else black
            maps["integrated-gradients"] = integrated_gradients(model, inputs, target, start_image, steps)
            with torch.no_grad():  # completeness: the attributions should sum to this difference
                score, start = target_scores(model(torch.cat([inputs, start_image])), target).tolist()
            path = f"the {baseline} image, {steps} steps (Δscore {score - start:.3g})"
        if method == "all":
            fig = plot_saliency(image, maps["gradient"], maps["grad-cam"], cam_layer, caption,
                                (maps["integrated-gradients"], path))
        else:
            where = {"grad-cam": f" at {cam_layer}" if method == "grad-cam" else "",
                     "integrated-gradients": f" from {path}" if method == "integrated-gradients" else ""}
            fig = plot_saliency_map(image, maps[method], method + where.get(method, ""), caption)
        return _returned(fig, target=target, unlike=unlike, **maps)

    def occlusion(self, x, target: int | None = None, size: int = 8, stride: int = 2, fill: str = "mean",
                  layer: str | None = None):
        """What the prediction becomes as a `size`-pixel square (the dataset's mean pixel, or grey) hides each part
        of `x` (Zeiler & Fergus): the probability of `target` (default: a test image's label, else the predicted
        class), the most probable class, and the strongest feature map of `layer`. `fig.numbers`: the maps.

        >>> fig = run.show.occlusion(0, size=8, stride=4)
        >>> fig.numbers["probability"].shape
        (6, 6)
        """
        from cnnlab.viz.occlusion import occlusion, plot_occlusion

        subject = self.subject
        info, task = subject.info, subject.task
        task.refuse("occlusion", subject.name)
        if fill not in ("mean", "grey"):
            raise ConfigError(f"--fill {fill!r}: expected mean or grey")
        image, caption, index = self.input(x)
        inputs = self._tensor(image)
        with torch.no_grad():
            predicted, said = task.verdict(self.model(inputs)[0], info)
        if target is None:  # the paper maps the true class: a test image's label, else what the model predicts
            target = task.label_target(subject.test_split().labels[index]) if index is not None else predicted
        # the square's pixel value per channel, 0-255: the dataset's mean (normalized: 0), or mid-grey
        channels = inputs.shape[1]
        pixel = np.broadcast_to(np.asarray(info.mean if fill == "mean" else 0.5, np.float32) * 255, (channels,))
        filler = torch.from_numpy(normalize(pixel.reshape(channels, 1, 1), info.mean, info.std))
        result = occlusion(self.model, inputs, target, size, stride, filler, layer, probabilities=task.probabilities)
        caption = f"{subject.name}: occlusion of {caption}, {said}; {fill} square, stride {stride}"
        fig = plot_occlusion(image, result, list(info.classes), caption,
                             pixel.reshape(channels, 1, 1) if np.ndim(image) == 3 else float(pixel[0]))
        return _returned(fig, target=target, probability=result.probability, top_class=result.top_class,
                         activation=result.activation, layer=result.layer, channel=result.channel)

    def deconv(self, layers: list[str] | str | None = None, features=4, method: str = "deconvnet",
               limit: int | None = None, seed: int = 0):
        """The lecture's visualization figure (Zeiler & Fergus): for `features` of each conv layer in `layers`
        (default: every one; a count of random features, or their numbers), the 9 test images (of the first
        `limit`) that excite it most, each activation projected back to pixels (`method` "deconvnet" or
        "guided-backprop") beside its patch. `fig.numbers`: hits per layer and feature, images searched, seconds.

        >>> fig = run.show.deconv(layers="conv1", features=[0], limit=200)
        >>> len(fig.numbers["hits"]["conv1"][0])
        9
        """
        from cnnlab.models.receptive import receptive_fields
        from cnnlab.viz import deconv
        from cnnlab.viz.activations import NormalizedImages, conv_layers

        subject = self.subject
        info = subject.info
        subject.task.refuse("deconv", subject.name)
        if limit is not None and limit < 1:
            raise ConfigError(f"--limit must be at least 1, got {limit}")
        if method not in ("deconvnet", "guided-backprop"):
            raise ConfigError(f"--method {method!r}: expected deconvnet or guided-backprop")
        model = self.model
        test = subject.test_split()
        pixels = test.images[:limit] if limit else test.images
        x = NormalizedImages(pixels, info.mean, info.std)  # read and normalized a batch at a time
        names = (layers.split(",") if isinstance(layers, str) else list(layers)) if layers else \
            [name for name, _ in conv_layers(model)]
        fields = receptive_fields(model, tuple(x.shape[1:]))
        sections, start = [], time.perf_counter()
        for layer in names:
            path = deconv.layers_up_to(model, x[:1], layer)  # one-line error for a layer it cannot undo
            chosen = deconv_features(features, path[-1][1].out_channels, random.Random(f"{seed}:{layer}"))
            hits = deconv.top_activations(model, layer, x, chosen)
            where = {f: deconv.boxes(model, layer, tuple(x.shape[1:]), hits[f]) for f in chosen}
            sections.append({"layer": layer, "hits": hits, "field": fields[layer].describe(),
                             # the projection and the patch of the same receptive field, side by side
                             "projected": {f: deconv.crop(deconv.projections(model, layer, x, f, hits[f], method),
                                                          where[f]) for f in chosen},
                             "crops": {f: deconv.crop([pixels[h.image] for h in hits[f]], where[f]) for f in chosen}})
        seconds = time.perf_counter() - start
        title = (f"{subject.name}: top 9 of {len(x):,} {info.name} test images per feature, {method} "
                 f"projections and their patches ({seconds:.1f} s)")
        fig = deconv.figure(sections, title)
        return _returned(fig, hits={s["layer"]: s["hits"] for s in sections}, images=len(x), seconds=seconds)

    def dream(self, layer: str | None = None, features: int = 16, steps: int = 128, seed: int = 0,
              progress=None):
        """Inputs optimized to excite each of the first `features` feature maps of `layer` (default: the last conv
        layer), in `steps` steps; `progress(step)` is called after each. `fig.numbers`: images, activations.

        >>> fig = run.show.dream(features=2, steps=4)
        >>> fig.numbers["images"].shape
        (2, 1, 28, 28)
        """
        from cnnlab.viz.activations import conv_layer, conv_layers
        from cnnlab.viz.dream import DreamSettings, dream, feature_activation, plot_dream

        model = self.model
        found = conv_layers(model)
        name, conv = conv_layer(model, layer or (found[-1][0] if found else None))
        if not 1 <= features <= conv.out_channels:
            raise ConfigError(f"--features must be 1..{conv.out_channels} for layer {name!r}, got {features}")
        if steps < 1:
            raise ConfigError(f"--steps must be at least 1, got {steps}")
        channels = list(range(features))
        subject = self.subject
        shape = subject.input_shape  # the inputs it was trained on
        images = dream(model, name, channels, shape, DreamSettings(steps=steps, seed=seed), progress)
        with torch.no_grad():
            reached = feature_activation(model, name, images)[torch.arange(len(channels)), channels]
        title = (f"{subject.name}: inputs that excite {name}'s feature maps (mean rectified activation reached; "
                 f"{steps} steps)")
        fig = plot_dream(images, channels, reached.tolist(), title)
        return _returned(fig, layer=name, images=images.numpy(), activations=reached.numpy())

    # -- training figures ------------------------------------------------------------------------------------
    def curves(self):
        """Loss and accuracy per epoch of the training. `fig.numbers`: history (one record per epoch).

        >>> fig = run.show.curves()
        >>> len(fig.numbers["history"])
        1
        """
        from cnnlab.viz.training import curves_figure

        history = self.subject.metrics()
        if not history:
            raise ConfigError(f"{self.subject.name}: no training history (a model cnnlab did not train)")
        return _returned(curves_figure(history, self.subject.name), history=history)

    def confusion(self, limit: int | None = None):
        """The confusion matrix on the test set (its first `limit` images). `fig.numbers`: confusion [K, K] (rows:
        true class), accuracy.

        >>> fig = run.show.confusion(limit=500)
        >>> int(fig.numbers["confusion"].sum())
        500
        """
        from cnnlab.viz.training import confusion_figure

        scores = self.subject.evaluate(limit=limit, checkpoint=self.checkpoint)
        confusion = scores.confusion.numpy()
        return _returned(confusion_figure(scores.confusion, scores.classes), confusion=confusion,
                         accuracy=scores.accuracy)

    def mistakes(self, count: int = 24, limit: int | None = None):
        """The `count` test images (of the first `limit`) the model got wrong with the highest confidence, with
        their true and predicted classes. `fig.numbers`: indices of those images in the test set.

        >>> fig = run.show.mistakes(count=8, limit=500)
        >>> len(fig.numbers["indices"]) <= 8
        True
        """
        from cnnlab.viz.training import mistakes_figure, most_confident_mistakes

        self.subject.task.refuse("mistakes", self.subject.name)
        scores = self.subject.evaluate(limit=limit, checkpoint=self.checkpoint)
        fig = mistakes_figure(scores.data.images, scores.evaluation, scores.classes, count)
        return _returned(fig, indices=most_confident_mistakes(scores.evaluation, count).tolist())
