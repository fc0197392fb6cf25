import math

import pytest
import torch
import torch.nn.functional as F

from cnnlab.errors import ConfigError
from cnnlab.models import get_model, list_models
from cnnlab.models.segmentation import FCN, LearnedUpsample, bilinear_kernel
from cnnlab.tasks.classification import confusion_matrix
from cnnlab.tasks.segmentation import iou_per_class

SEGMENTATION_MODELS = list_models(task="segmentation")


def test_the_segmentation_models_are_registered_for_segmentation():
    assert set(SEGMENTATION_MODELS) == {"fcn-32s", "fcn-16s", "fcn-8s", "unet"}


@pytest.mark.parametrize("bias", [False, True])  # the FCNs' last upsampling has a bias (zero at first)
@pytest.mark.parametrize("factor", [2, 4, 8, 32])
def test_bilinear_initialization_is_bilinear_upsampling_exactly(factor, bias):
    x = torch.randn(2, 3, 5, 7, generator=torch.Generator().manual_seed(factor))
    expected = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    upsampled = LearnedUpsample(3, factor, bias=bias)(x)
    assert upsampled.shape == expected.shape
    torch.testing.assert_close(upsampled, expected, atol=1e-6, rtol=0)  # float32 rounding only, borders included


def test_bilinear_kernel_values():
    # factor 2: the classic FCN kernel, outer product of (1/4, 3/4, 3/4, 1/4)
    ramp = torch.tensor([0.25, 0.75, 0.75, 0.25])
    torch.testing.assert_close(bilinear_kernel(2), torch.outer(ramp, ramp))
    assert bilinear_kernel(8).sum().item() == pytest.approx(64.0)  # each input pixel spreads over f*f outputs


@pytest.mark.parametrize("name", SEGMENTATION_MODELS)
@pytest.mark.parametrize("size", [(64, 84), (30, 50)])
def test_models_label_every_pixel_of_any_size(name, size):
    torch.manual_seed(0)
    model = get_model(name, num_classes=11).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, *size))
    assert out.shape == (2, 11, *size) and torch.isfinite(out).all()


@pytest.mark.parametrize("size", [(64, 84), (30, 50)])
def test_space_to_depth_unet_keeps_every_pixel(size):
    """space_to_depth=2: the network runs at half resolution, but the folding loses no input pixel and unfolds a
    score per output pixel: changing one input pixel changes the scores of the block that holds it, and a shift
    per class added to the f*f biases of that class shifts every pixel's score of that class alone."""
    torch.manual_seed(0)
    model = get_model("unet", num_classes=11, widths=(8, 16), space_to_depth=2, batch_norm=False).eval()
    x = torch.randn(1, 1, *size, requires_grad=True)
    out = model(x)
    assert out.shape == (1, 11, *size)
    out[0, 3, 5, 7].backward()
    assert x.grad[0, 0, 5, 7] != 0 and x.grad[0, 0, 4, 6] != 0  # its own pixel and its block's other pixels
    shift = torch.arange(11.0)
    with torch.no_grad():
        model.classify.bias += shift.repeat_interleave(4)
        torch.testing.assert_close(model(x) - out, shift.view(1, 11, 1, 1).expand_as(out), atol=1e-5, rtol=0)
    with pytest.raises(ConfigError, match="model .unet.: space_to_depth must be a positive integer, got 0"):
        get_model("unet", space_to_depth=0)


def test_fcn_skips_start_as_no_ops():
    # FCN-16s at initialization: the zero-initialized pool4 scores add nothing, so the output is the stride-32
    # scores upsampled bilinearly x2 and then x16 (as in the paper, training starts from the coarser net).
    torch.manual_seed(0)
    fcn16 = FCN(skips=(4,)).eval()
    x = torch.randn(1, 1, 64, 96)
    with torch.no_grad():
        coarse = fcn16.score(fcn16.head(torch.nn.Sequential(*fcn16.stages)(x)))
        direct = F.interpolate(F.interpolate(coarse, scale_factor=2, mode="bilinear"), scale_factor=16,
                               mode="bilinear")
        torch.testing.assert_close(fcn16(x), direct, atol=1e-5, rtol=0)


def test_fcn_rejects_skips_out_of_order():
    with pytest.raises(ValueError, match="coarse to fine"):
        FCN(skips=(3, 4))


def test_confusion_and_iou_against_hand_computed_values():
    target = torch.tensor([[0, 0, 1, 1],
                           [0, 2, 2, 1]])
    predicted = torch.tensor([[0, 1, 1, 1],
                              [0, 2, 0, 0]])
    confusion = confusion_matrix(predicted, target, 4)
    assert confusion.tolist() == [[2, 1, 0, 0],
                                  [1, 2, 0, 0],
                                  [1, 0, 1, 0],
                                  [0, 0, 0, 0]]
    iou = iou_per_class(confusion)
    # class 0: TP 2, FP 2 (a 1 and a 2 called 0), FN 1 -> 2/5; class 1: TP 2, FP 1, FN 1 -> 2/4;
    # class 2: TP 1, FN 1 -> 1/2; class 3 is nowhere: NaN, left out of the mean
    assert iou[:3].tolist() == [0.4, 0.5, 0.5] and math.isnan(iou[3])
    assert iou.nanmean().item() == pytest.approx((0.4 + 0.5 + 0.5) / 3)


def test_iou_of_a_perfect_and_of_an_all_background_prediction():
    target = torch.tensor([0, 0, 0, 3, 3, 5])
    assert iou_per_class(confusion_matrix(target, target, 6)).nanmean().item() == 1.0
    iou = iou_per_class(confusion_matrix(torch.zeros(6, dtype=torch.long), target, 6))
    assert iou[0].item() == 0.5 and iou[3].item() == 0 and iou[5].item() == 0
