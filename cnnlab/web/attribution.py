"""What in the input drives the model: occlusion of the drawn digit, and a feature map's top test images.

- Occlusion (Zeiler & Fergus 2014, Fig. 7; `cnnlab.viz.occlusion`): a grey square (the dataset's mean pixel) slides
  over the input, and each position's class probability makes a map.
- Top activations (`cnnlab.viz.deconv`): the 9 test images that excite a conv feature map most, each with its
  strongest activation projected back to pixels by the deconvnet. The search over the test set is made once per
  source and layer, for all the layer's features at once, in chunks whose progress the page can poll, and cached.
"""

from __future__ import annotations

import copy
import threading

import numpy as np
import torch

from cnnlab.data import load_dataset
from cnnlab.errors import ConfigError
from cnnlab.models.receptive import field_box, receptive_fields
from cnnlab.tasks.task import TOP_ACTIVATIONS
from cnnlab.viz import deconv
from cnnlab.viz.activations import normalize_input
from cnnlab.viz.occlusion import occlusion
from cnnlab.web.sources import Loaded

TOP = 9
CHUNK = 1000  # test images per step of the search (progress is reported between steps)
_searching = threading.Lock()


def occlusion_maps(loaded: Loaded, digit: np.ndarray, size: int, stride: int, target: int | None) -> dict:
    """The probability of `target` (default: the predicted class) and the most probable class, for each position of
    a size x size square of the mean pixel."""
    task = loaded.task
    task.refuse("occlusion", loaded.source)
    x = normalize_input(digit, loaded.info.mean, loaded.info.std)
    with loaded.lock, torch.no_grad():  # occlusion hooks a conv layer of the shared model
        if target is None:
            target = int(task.probabilities(loaded.model(x))[0].argmax())
        if not 0 <= target < len(loaded.info.classes):
            raise ConfigError(f"target {target}: classes are 0..{len(loaded.info.classes) - 1}")
        result = occlusion(loaded.model, x, target, size, stride, probabilities=task.probabilities)
    return {"target": target, "size": size, "starts": result.starts.tolist(),
            "probability": result.probability.tolist(), "top_class": result.top_class.tolist(),
            "unoccluded": result.unoccluded_probability}


def top_activations(loaded: Loaded, layer: str, feature: int) -> dict:
    """Feature `feature` of conv layer `layer`: its top-9 test images (first search: the whole test set, all the
    layer's features, cached), each with where the activation is, its value, its receptive field and its deconvnet
    projection."""
    loaded.task.refuse(TOP_ACTIVATIONS, loaded.source)
    if (layer, feature) in loaded.answers:  # asked again: the same answer, at once
        return loaded.answers[layer, feature]
    with _searching:  # one search at a time: a second request for the same layer then finds it cached
        tops = loaded.tops.get(layer) or _search(loaded, layer)
    with loaded.lock:  # the projections run the shared model's layers; no other request's hooks may see them
        if not 0 <= feature < len(tops):
            raise ConfigError(f"layer {layer!r}: feature {feature} is outside its {len(tops)} feature maps")
        hits, images = zip(*tops[feature]) if tops[feature] else ((), ())
        x = normalize_input(np.stack(images), loaded.info.mean, loaded.info.std)[0][:, None] if images else None
        local = [deconv.Hit(h.value, i, h.y, h.x) for i, h in enumerate(hits)]
        projected = deconv.projections(loaded.model, layer, x, feature, local) if images else []
        if images and loaded.fields is None:
            loaded.fields = receptive_fields(loaded.model, (1, *images[0].shape))
        field = loaded.fields[layer] if images else None
    loaded.answers[layer, feature] = {
        "layer": layer, "feature": feature, "features": len(tops), "searched": loaded.progress[layer][1],
        "hits": [{"index": h.image, "value": h.value, "y": h.y, "x": h.x, "image": image.tolist(),
                  "box": list(field_box(field, h.y, h.x, *image.shape)),
                  "projection": [[round(float(v), 6) for v in row] for row in p]}
                 for h, image, p in zip(hits, images, projected)]}
    return loaded.answers[layer, feature]


def _search(loaded: Loaded, layer: str) -> list[list[tuple[deconv.Hit, np.ndarray]]]:
    """The search runs on a copy of the model, so that the page's other requests on it (a drawing's activations)
    do not wait for it: only the copying holds the model's lock."""
    if loaded.refusal:
        raise ConfigError(f"{loaded.source}: {loaded.refusal}")
    split = load_dataset(loaded.info.name, "test", loaded.data_dir, download=False, quiet=True)
    if split.images.ndim != 3:
        raise ConfigError(f"{loaded.info.name}: top activations need single-channel test images")
    first = normalize_input(split.images[:1][0], loaded.info.mean, loaded.info.std)
    with loaded.lock:
        channels = deconv.layers_up_to(loaded.model, first, layer)[-1][1].out_channels  # one-line error otherwise
        model = copy.deepcopy(loaded.model)
    features = list(range(channels))
    total = len(split.images)
    best: dict[int, list[deconv.Hit]] = {f: [] for f in features}
    for start in range(0, total, CHUNK):
        loaded.progress[layer] = (start, total)
        chunk = normalize_input(split.images[start:start + CHUNK], loaded.info.mean, loaded.info.std)[0][:, None]
        found = deconv.top_activations(model, layer, chunk, features, TOP)
        for f in features:  # the best of each chunk's best are the best overall
            merged = best[f] + [deconv.Hit(h.value, h.image + start, h.y, h.x) for h in found[f]]
            best[f] = sorted(merged, key=lambda h: (-h.value, h.image))[:TOP]
    loaded.progress[layer] = (total, total)
    loaded.tops[layer] = [[(h, split.images[h.image]) for h in best[f]] for f in features]
    return loaded.tops[layer]


def progress(loaded: Loaded, layer: str) -> dict:
    done, total = loaded.progress.get(layer, (0, 0))
    return {"layer": layer, "done": done, "total": total, "cached": layer in loaded.tops}
