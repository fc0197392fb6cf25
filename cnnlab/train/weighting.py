"""Class weights for the cross-entropy, from how often each class occurs in the training labels.

On mnist-scenes 96% of the pixels are background: with the plain per-pixel mean, the digits get 4% of the
gradient, and a network first learns "everything is background" and then spends most of its steps learning which
digit a stroke is. Weighting each pixel's loss by its class's frequency^-1/2 (`inverse-sqrt-frequency`) moves that
gradient to the digits; full inverse frequency (`inverse-frequency`, "balanced") over-corrects: background pixels
then weigh so little that outlines blur (docs/segmentation.md has the measurements). The weights are scaled so that
the mean weight over the training labels is 1, which keeps the loss, and so the learning rate, on the same scale.

The weighting has a price: a model trained on it learns p(class | pixel) multiplied by the class's weight, so it
calls digit the faint pixels next to a stroke that are more often background. Logit adjustment (Menon et al.,
"Long-tail learning via logit adjustment", 2021) undoes that after training: subtracting log(weight) from the
logits turns them back into logits for the training frequencies. The torch engine does it when asked
(`logit_adjustment`): it evaluates with the shifted logits and folds the shift into the saved model's output bias.
The weighting's benefit, the gradient it gives the digits during training, stays.
"""

from __future__ import annotations

import torch

from cnnlab.train.config import CLASS_WEIGHTINGS



def class_weights(kind: str, labels: torch.Tensor, num_classes: int) -> torch.Tensor | None:
    """float32 [num_classes] weights (None for `none`) from the class frequencies in `labels` (any shape).

    A class absent from the labels gets weight 0: it has no pixels to weigh, and 1/0 would poison the mean.
    """
    power = CLASS_WEIGHTINGS[kind]
    if power is None:
        return None
    # bincount takes the stored uint8 pixel labels as they are: no int64 copy of every training pixel
    counts = torch.bincount(labels.flatten().cpu(), minlength=num_classes)[:num_classes].double()
    frequency = counts / counts.sum()
    weights = torch.where(counts > 0, frequency.clamp(min=1e-12).pow(-power), 0.0)
    return (weights / (weights * frequency).sum()).float()
