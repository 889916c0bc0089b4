r"""Pretrained-embedding features: global pooling of a frozen timm backbone.

An ImageNet network, frozen, turns each radiograph into a fixed vector; a linear model on
those vectors (``osteolens classic cv --model linear``) is a strong baseline on small data
sets, where fine-tuning the whole network overfits.

Per image (already cropped to its ROI by the extraction, never histogram-equalised: the
extraction's ``equalise`` is a radiomics step and this family opts out of it):

1. *to a square* of side ``input_size``, bilinear with anti-aliasing
   (``torch.nn.functional.interpolate(..., antialias=True)``, which matches PIL's bilinear
   downscale). ``resize="stretch"`` (default) resizes both sides to ``input_size``;
   ``resize="pad"`` keeps the aspect ratio: the longer side to ``input_size``, then the
   shorter one padded with zeros (black, the radiograph background), centred. Stretching
   was chosen by grouped 5-fold CV on the bone-age set (78 hands, 788 x 1024, linear probe,
   512 px): pooled MAE 18.5 months stretched against 21.5 padded: padding spends a quarter of
   the input on a blank border, and the ImageNet features tolerate the 1.3x distortion.
2. *normalise*: :math:`(x - \mu) / \sigma` with the weights' own input normalisation
   (:func:`osteolens.models.weights.imagenet_normalisation`, averaged over RGB for the
   one-channel network; EfficientNet-Lite: :math:`\mu = \sigma = 0.5`).
3. *embed*: the one-channel network (timm sums the RGB kernels of the first convolution, so
   a grey image gives the features of the RGB image ``(x, x, x)``), in eval mode without
   gradients, on a batch of images.
4. *pool*: over the spatial positions of the last feature map (``forward_features``: for
   EfficientNet the 1280-channel head convolution) the mean (``avg``) and/or the maximum
   (``max``) of each channel; ``extra_stage`` appends the same pooling of one earlier stage
   (an index into the model's ``feature_info``; efficientnet_lite0: 0-4 = 16, 24, 40, 112,
   320 channels at strides 2-32).
5. ``hflip``: the mean of the pooled vectors of the image and of its left-right mirror.

Columns (EfficientNet-Lite: 1280 channels): ``cnn_avg_0000 ... cnn_avg_1279``, ``cnn_max_0000 ...`` (channel index, four
digits, in ``pooling`` order), then ``cnn_stage3_avg_0000 ...`` for ``extra_stage=3``.

The network is built once per process and parameter set (module cache) and never per
image. Results are deterministic: the same images give bit-identical features run after
run; a different batch composition can change the last float32 digits (the convolution
kernels block differently), never more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from osteolens.errors import ConfigError, TransformError
from osteolens.features.base import FeatureFamily, register_feature_family

POOLINGS = ("avg", "max")


@dataclass
class _LoadedNet:
    """A frozen network with its input normalisation and weight provenance."""

    module: Any
    mean: float
    std: float
    n_stages: int
    weights: dict[str, Any]


_NETS: dict[tuple[str, str | None], _LoadedNet] = {}


def load_network(model: str, weights: str | None) -> _LoadedNet:
    """The frozen one-channel ``model`` with ``weights``, built once per process.

    ``weights``: ``imagenet`` (the packaged weights), a file path, or None for a random
    initialisation drawn with seed 0 (a control, and for tests).

    Raises:
        ConfigError: the model is not a timm network with intermediate features.
    """
    key = (model, None if weights is None else str(weights))
    if key in _NETS:
        return _NETS[key]
    import torch

    from osteolens.models.backbones import build_backbone
    from osteolens.models.weights import imagenet_normalisation

    if weights is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            backbone = build_backbone(model, in_chans=1)
        provenance: dict[str, Any] = {"spec": None, "source": "random initialisation (torch seed 0)"}
    else:
        backbone = build_backbone(model, in_chans=1, weights=weights)
        provenance = dict(getattr(backbone, "weights_info", None) or {"spec": str(weights)})
    module = backbone.module
    if not hasattr(module, "forward_intermediates") or not hasattr(module, "forward_features"):
        raise ConfigError(
            "cnn.model", f"'{model}' has no forward_features / forward_intermediates.",
            "use a timm network (e.g. efficientnet_lite0, tf_efficientnet_lite0, resnet18).",
        )
    module.eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    mean, std = imagenet_normalisation(model)
    net = _LoadedNet(module, float(np.mean(mean)), float(np.mean(std)), len(getattr(module, "feature_info", []) or []), provenance)
    _NETS[key] = net
    return net


RESIZES = ("stretch", "pad")


def stretch_square(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` resized (bilinear, anti-aliased) to ``size x size``, aspect ratio not kept; float32.

    An image already ``size x size`` is returned unchanged.

    Example:
        >>> stretch_square(np.ones((4, 8), np.float32), 4).shape
        (4, 4)
    """
    image = _grey(image)
    if image.shape == (size, size):
        return image
    return _resize(image, (size, size))


def _grey(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise TransformError(f"the cnn family needs a 2-D image, got shape {image.shape}; pass Radiograph.pixels.")
    return image


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear, anti-aliased resize of a float32 image to ``(height, width)``."""
    import torch
    import torch.nn.functional as F

    if image.shape == size:
        return image
    tensor = torch.from_numpy(np.ascontiguousarray(image))[None, None]
    return F.interpolate(tensor, size=size, mode="bilinear", align_corners=False, antialias=True)[0, 0].numpy()


def fit_square(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` resized (bilinear, anti-aliased) so its longer side is ``size``, then
    zero-padded, centred, to ``size x size``; float32. An image already ``size x size`` is
    returned unchanged (so fitting twice is fitting once).

    Example:
        >>> fit_square(np.ones((4, 8), np.float32), 4)[:, 0].tolist()
        [0.0, 1.0, 1.0, 0.0]
    """
    image = _grey(image)
    if image.shape == (size, size):
        return image
    height, width = image.shape
    scale = size / max(height, width)
    new = (max(1, min(size, round(height * scale))), max(1, min(size, round(width * scale))))
    out = np.zeros((size, size), dtype=np.float32)
    top, left = (size - new[0]) // 2, (size - new[1]) // 2
    out[top : top + new[0], left : left + new[1]] = _resize(image, new)
    return out


@register_feature_family("cnn")
class CNNFamily(FeatureFamily):
    """Global average / max pooling of a frozen pretrained CNN (ImageNet embeddings).

    See the module docstring for the preprocessing and the columns. The mask is not used:
    the network sees the ROI crop (``--roi mask / rectangle / box``) or the whole image.

    Args:
        model: timm model name. ``tf_efficientnet_lite0`` (default; lite1, lite2 too) is
            exactly the network of the packaged ImageNet weights; ``efficientnet_lite0``
            carries the same weights on timm's symmetric padding, close but not identical
            (bone-age linear probe, 5-fold MAE: 18.5 months against 20.6).
        weights: ``imagenet`` (packaged, offline), a weight file (``.safetensors`` / ``.pth``),
            or None for a seeded random initialisation (a control).
        input_size: side of the square network input, pixels.
        resize: ``stretch`` (both sides to ``input_size``) or ``pad`` (aspect kept, zero pad).
        pooling: ``avg``, ``max`` or ``avg,max`` (both, concatenated in that order).
        extra_stage: index into the model's ``feature_info`` of one earlier stage whose
            pooling is appended; None for the last feature map only.
        hflip: average the features of the image and of its horizontal mirror.
        batch_size: images per forward pass.
    """

    batched: ClassVar[bool] = True
    equalised: ClassVar[bool] = False

    def __init__(
        self,
        model: str = "tf_efficientnet_lite0",
        weights: str | None = "imagenet",
        input_size: int = 512,
        resize: str = "stretch",
        pooling: str = "avg,max",
        extra_stage: int | None = None,
        hflip: bool = False,
        batch_size: int = 16,
    ) -> None:
        self.model = model
        self.weights = weights
        self.input_size = input_size
        self.resize = resize
        self.pooling = pooling
        self.extra_stage = extra_stage
        self.hflip = hflip
        self.batch_size = batch_size
        if not isinstance(input_size, int) or input_size < 32:
            raise ConfigError("cnn.input_size", f"input_size={input_size!r}.", "use an integer of at least 32 pixels (e.g. 224, 512).")
        if resize not in RESIZES:
            raise ConfigError("cnn.resize", f"resize={resize!r}.", "use stretch or pad.")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError("cnn.batch_size", f"batch_size={batch_size!r}.", "use a positive integer (e.g. 16).")
        if extra_stage is not None and (not isinstance(extra_stage, int) or extra_stage < 0):
            raise ConfigError("cnn.extra_stage", f"extra_stage={extra_stage!r}.", "use a stage index (0 = the shallowest) or none.")
        pools = self.pools
        if not pools or len(set(pools)) != len(pools) or set(pools) - set(POOLINGS):
            raise ConfigError("cnn.pooling", f"pooling={pooling!r}.", "use avg, max or avg,max.")

    @property
    def pools(self) -> list[str]:
        """The pooling names, in column order."""
        return [p.strip() for p in str(self.pooling).split(",") if p.strip()]

    def network(self) -> _LoadedNet:
        """The frozen network (built on first use, then cached for the process)."""
        net = load_network(self.model, self.weights)
        if self.extra_stage is not None and self.extra_stage >= net.n_stages:
            raise ConfigError("cnn.extra_stage", f"'{self.model}' has stages 0-{net.n_stages - 1}, not {self.extra_stage}.", "pick one of those.")
        return net

    def prepare(self, image: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, None]:
        """The network input before normalisation: the image brought to the square
        (:func:`stretch_square` or :func:`fit_square`); idempotent."""
        square = stretch_square if self.resize == "stretch" else fit_square
        return square(image, self.input_size), None

    def compute(self, image: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
        return self.compute_batch([image], [mask])[0]

    def compute_batch(self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray | None]) -> list[dict[str, float]]:
        """Features of several images, ``batch_size`` per forward pass."""
        names = self.feature_names()
        rows: list[dict[str, float]] = []
        for start in range(0, len(images), self.batch_size):
            chunk = np.stack([self.prepare(image)[0] for image in images[start : start + self.batch_size]])
            values = self.embed(chunk).astype(np.float64)
            rows.extend(dict(zip(names, row.tolist(), strict=True)) for row in values)
        return rows

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """``[N, F]`` pooled features of ``[N, S, S]`` fitted images (hflip averaged when on)."""
        import torch

        net = self.network()
        x = (torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))[:, None] - net.mean) / net.std
        with torch.no_grad():
            features = self._pooled(net.module, x)
            if self.hflip:
                features = (features + self._pooled(net.module, torch.flip(x, dims=[3]))) / 2
        return features.numpy()

    def _pooled(self, module: Any, x: Any) -> Any:
        import torch

        if self.extra_stage is None:
            maps = [module.forward_features(x)]
        else:
            last, (stage,) = module.forward_intermediates(x, indices=[self.extra_stage])
            maps = [last, stage]
        ops = {"avg": lambda m: m.mean(dim=(2, 3)), "max": lambda m: m.amax(dim=(2, 3))}
        return torch.cat([ops[p](m) for m in maps for p in self.pools], dim=1)

    def feature_names(self) -> list[str]:
        """Column names, in the order of :meth:`embed`'s columns."""
        net = self.network()
        info = net.module.feature_info
        channels = [int(net.module.num_features)]
        prefixes = ["cnn"]
        if self.extra_stage is not None:
            channels.append(int(info[self.extra_stage]["num_chs"]))
            prefixes.append(f"cnn_stage{self.extra_stage}")
        return [f"{prefix}_{p}_{c:04d}" for prefix, n in zip(prefixes, channels, strict=True) for p in self.pools for c in range(n)]

    def provenance(self) -> dict[str, Any]:
        """The weights actually loaded (source, file, sha256) and the input normalisation."""
        net = self.network()
        return {"weights": net.weights, "normalisation": {"mean": net.mean, "std": net.std}}
