"""The filter playground's arithmetic: a convolution of one image with one kernel, and how big its output is.

Along one axis a convolution with kernel k, stride s, zero padding p and dilation d over n pixels has
⌊(n + 2p − d(k−1) − 1) / s⌋ + 1 outputs (`cnnlab.scratch.windows.output_size`, which the NumPy engine uses too).
When the division is not exact PyTorch drops the last, incomplete window; the playground says so rather than
rounding silently.
"""

from __future__ import annotations

import numpy as np
import torch

from cnnlab.scratch.windows import output_size


def arithmetic(size: int, kernel: int, stride: int, padding: int, dilation: int) -> dict:
    """The output size along one axis, the formula with these numbers, and whether it divides exactly."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    formula = f"({size} + 2·{padding} − {dilation}·({kernel}−1) − 1) / {stride} + 1"
    answer = {"input": size, "kernel": kernel, "stride": stride, "padding": padding, "dilation": dilation,
              "numerator": span, "formula": formula}
    if span < 0:
        reach = dilation * (kernel - 1) + 1
        return {**answer, "valid": False, "output": 0, "exact": False, "dropped": 0,
                "reason": f"no window fits: the {'dilated ' if dilation > 1 else ''}kernel spans {reach} pixels, "
                          f"the padded input only {size + 2 * padding}"}
    out = output_size(size, kernel, stride, padding, dilation)
    dropped = span % stride
    answer.update(valid=True, output=out, exact=dropped == 0, dropped=dropped)
    if dropped:
        answer["reason"] = (f"{span}/{stride} is not an integer: the last window would start {stride - dropped} "
                            f"pixel(s) past the end, so it is dropped (⌊{span}/{stride}⌋ = {span // stride}) and "
                            f"the last {dropped} pixel(s) of the padded input are never read")
    return answer


def convolve(image: np.ndarray, kernel: np.ndarray, padding: str | int, stride: int = 1,
             dilation: int = 1) -> np.ndarray:
    """Cross-correlate (what CNN layers compute) a 2-D image with a 2-D kernel; `same` pads with zeros."""
    x = torch.as_tensor(image, dtype=torch.float32)[None, None]
    k = torch.as_tensor(kernel, dtype=torch.float32)[None, None]
    return torch.nn.functional.conv2d(x, k, stride=stride, padding=padding, dilation=dilation)[0, 0].numpy()
