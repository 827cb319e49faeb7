"""A PyTorch reference of the original BackgroundMattingV2 architecture, for parity tests only.

Written from the architecture facts the project keeps about the original (reference/ORIGINAL.md),
with torch.nn only (torchvision is not a dependency): ResNet-50/101 (torchvision v1.5 bottlenecks,
layer4 dilated for output stride 16), MobileNetV2 (6-channel stem, last block dropped, features.14
unstrided, 15-17 dilated), ASPP with rates 3/6/9 and a pooling branch, the 4-stage decoder,
``MattingBase`` and ``MattingRefine`` with the refiner in 'sampling', 'thresholding' and 'full'
modes and kernel size 3 or 1. Module and attribute names match the original, so ``state_dict()``
has the original's keys, shapes and order (tests/data/state_dict_keys/*.tsv) and the released
checkpoints would load into it.

One deliberate difference: patches are cropped with ``unfold`` and written back by indexing a
(B, H/4, W/4, C, 4, 4) view, which is right for any batch size. The original's alternative
``gather``/``scatter_element`` methods index wrongly for batch > 1 and are not reproduced.
Like the original, 'sampling' raises when ``refine_sample_pixels // 16`` exceeds the number of
quarter-resolution cells (``topk``: "selected index k out of range").

:func:`randomize_` gives every weight and BatchNorm statistic a seeded random, non-default value
(see its docstring for how it keeps the outputs informative and the top-k selection well defined).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

BACKBONES = ("resnet50", "resnet101", "mobilenetv2")
RESNET_LAYERS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}
# MobileNetV2 inverted-residual settings (expansion t, channels c, repeats n, stride s), width 1.0.
MOBILENETV2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                        (6, 160, 3, 2), (6, 320, 1, 1))


def _resize(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


# --------------------------------------------------------------------------------------- ResNet


class Bottleneck(nn.Module):
    """torchvision v1.5 bottleneck: the stride sits on the 3x3 conv."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNetEncoder(nn.Module):
    """6-channel ResNet whose layer4 is dilated (output stride 16); returns x4, x3, x2, x1, x0."""

    def __init__(self, variant: str = "resnet50", in_channels: int = 6):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self._inplanes, self._dilation = 64, 1
        blocks = RESNET_LAYERS[variant]
        self.layer1 = self._make_layer(64, blocks[0])
        self.layer2 = self._make_layer(128, blocks[1], stride=2)
        self.layer3 = self._make_layer(256, blocks[2], stride=2)
        self.layer4 = self._make_layer(512, blocks[3], stride=2, dilate=True)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1, dilate: bool = False) -> nn.Sequential:
        # As torchvision's replace_stride_with_dilation: block 0 keeps the previous dilation, the rest
        # use the doubled one, and the stride (block 0 and its downsample) becomes 1.
        previous_dilation = self._dilation
        if dilate:
            self._dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self._inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self._inplanes, planes * Bottleneck.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * Bottleneck.expansion),
            )
        layers = [Bottleneck(self._inplanes, planes, stride, downsample, dilation=previous_dilation)]
        self._inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self._inplanes, planes, dilation=self._dilation) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor):
        x0 = x
        x = self.relu(self.bn1(self.conv1(x)))
        x1 = x
        x = self.maxpool(x)
        x = self.layer1(x)
        x2 = x
        x = self.layer2(x)
        x3 = x
        x = self.layer3(x)
        x4 = self.layer4(x)
        return x4, x3, x2, x1, x0


# ---------------------------------------------------------------------------------- MobileNetV2


class ConvBNReLU6(nn.Sequential):
    """torchvision's ConvBNReLU: conv (no bias) + BN + ReLU6, padding = dilation * (k - 1) / 2."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, stride: int = 1, groups: int = 1,
                 dilation: int = 1):
        padding = dilation * (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, dilation=dilation, groups=groups,
                      bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(),
        )


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int, dilation: int = 1):
        super().__init__()
        hidden = int(round(cin * expand_ratio))
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(cin, hidden, kernel_size=1))
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden, dilation=dilation),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2Encoder(nn.Module):
    """MobileNetV2 features 0..17 with a 6-channel stem, output stride 16; returns x4, x3, x2, x1, x0."""

    def __init__(self, in_channels: int = 6):
        super().__init__()
        features: list[nn.Module] = [ConvBNReLU6(in_channels, 32, stride=2)]
        cin = 32
        for t, c, n, s in MOBILENETV2_SETTINGS:
            for i in range(n):
                index = len(features)
                stride = s if i == 0 else 1
                # features.14 loses its stride and 15..17 dilate instead (output stride 16).
                if index == 14:
                    stride = 1
                dilation = 2 if index >= 15 else 1
                features.append(InvertedResidual(cin, c, stride, t, dilation=dilation))
                cin = c
        self.features = nn.Sequential(*features)

    def forward(self, x: torch.Tensor):
        x0 = x
        x = self.features[0](x)
        x = self.features[1](x)
        x1 = x
        for i in (2, 3):
            x = self.features[i](x)
        x2 = x
        for i in (4, 5, 6):
            x = self.features[i](x)
        x3 = x
        for i in range(7, 18):
            x = self.features[i](x)
        return x, x3, x2, x1, x0


# ------------------------------------------------------------------------------ ASPP, decoder


class ASPPPooling(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        for module in self:
            x = module(x)
        return _resize(x, size)


class ASPP(nn.Module):
    def __init__(self, cin: int, rates=(3, 6, 9), cout: int = 256):
        super().__init__()
        branches: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())]
        for rate in rates:
            branches.append(nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=rate, dilation=rate, bias=False), nn.BatchNorm2d(cout), nn.ReLU()))
        branches.append(ASPPPooling(cin, cout))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(nn.Conv2d(len(branches) * cout, cout, 1, bias=False), nn.BatchNorm2d(cout),
                                     nn.ReLU(), nn.Dropout(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))


class Decoder(nn.Module):
    """Upsample to each skip's exact size, concat [x, skip], 3x3 conv; conv4 (with bias) gives 37 channels."""

    def __init__(self, channels=(256, 128, 64, 48, 37), feature_channels=(512, 256, 64, 6)):
        super().__init__()
        self.conv1 = nn.Conv2d(feature_channels[0] + channels[0], channels[1], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels[1])
        self.conv2 = nn.Conv2d(feature_channels[1] + channels[1], channels[2], 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels[2])
        self.conv3 = nn.Conv2d(feature_channels[2] + channels[2], channels[3], 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels[3])
        self.conv4 = nn.Conv2d(feature_channels[3] + channels[3], channels[4], 3, padding=1, bias=True)
        self.relu = nn.ReLU()

    def forward(self, x4, x3, x2, x1, x0):
        x = self.relu(self.bn1(self.conv1(torch.cat([_resize(x4, x3.shape[2:]), x3], dim=1))))
        x = self.relu(self.bn2(self.conv2(torch.cat([_resize(x, x2.shape[2:]), x2], dim=1))))
        x = self.relu(self.bn3(self.conv3(torch.cat([_resize(x, x1.shape[2:]), x1], dim=1))))
        return self.conv4(torch.cat([_resize(x, x0.shape[2:]), x0], dim=1))


# ------------------------------------------------------------------------------------ models


class MattingBase(nn.Module):
    """Backbone + ASPP + decoder. ``forward(src, bgr) -> (pha, fgr, err, hid)``."""

    def __init__(self, backbone: str = "resnet50"):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, not {backbone!r}")
        if backbone == "mobilenetv2":
            self.backbone = MobileNetV2Encoder(6)
            self.aspp = ASPP(320, (3, 6, 9))
            self.decoder = Decoder((256, 128, 64, 48, 37), (32, 24, 16, 6))
        else:
            self.backbone = ResNetEncoder(backbone, 6)
            self.aspp = ASPP(2048, (3, 6, 9))
            self.decoder = Decoder((256, 128, 64, 48, 37), (512, 256, 64, 6))

    def coarse(self, src: torch.Tensor, bgr: torch.Tensor) -> torch.Tensor:
        """The decoder's raw 37 channels for a source/background pair."""
        x4, *skips = self.backbone(torch.cat([src, bgr], dim=1))
        return self.decoder(self.aspp(x4), *skips)

    def forward(self, src: torch.Tensor, bgr: torch.Tensor):
        x = self.coarse(src, bgr)
        pha = x[:, 0:1].clamp(0.0, 1.0)
        fgr = (x[:, 1:4] + src).clamp(0.0, 1.0)
        err = x[:, 4:5].clamp(0.0, 1.0)
        hid = x[:, 5:].relu()
        return pha, fgr, err, hid


class Refiner(nn.Module):
    """Refines selected 4x4 full-resolution patches (or the whole image in 'full' mode)."""

    MODES = ("full", "sampling", "thresholding")

    def __init__(self, mode: str, sample_pixels: int, threshold: float, kernel_size: int = 3,
                 prevent_oversampling: bool = True):
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"refine mode must be one of {self.MODES}, not {mode!r}")
        if kernel_size not in (1, 3):
            raise ValueError(f"refine kernel size must be 1 or 3, not {kernel_size}")
        self.mode = mode
        self.sample_pixels = sample_pixels
        self.threshold = threshold
        self.kernel_size = kernel_size
        self.prevent_oversampling = prevent_oversampling
        self.conv1 = nn.Conv2d(42, 24, kernel_size, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        self.conv2 = nn.Conv2d(24, 16, kernel_size, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.conv3 = nn.Conv2d(22, 12, kernel_size, bias=False)
        self.bn3 = nn.BatchNorm2d(12)
        self.conv4 = nn.Conv2d(12, 4, kernel_size, bias=True)
        self.relu = nn.ReLU()

    def forward(self, src, bgr, pha, fgr, err, hid):
        """``pha``, ``fgr`` (residual), ``err``, ``hid`` are the coarse outputs. Returns pha, fgr residual, ref."""
        h_full, w_full = src.shape[2:]
        half, quarter = (h_full // 2, w_full // 2), (h_full // 4, w_full // 4)
        src_bgr = torch.cat([src, bgr], dim=1)
        if self.mode == "full":
            return self._refine_full(src, src_bgr, pha, fgr, hid, half, quarter)
        ref = self.select_refinement_regions(_resize(err, quarter))
        idx = torch.nonzero(ref.squeeze(1))
        idx = (idx[:, 0], idx[:, 1], idx[:, 2])
        out = _resize(torch.cat([pha, fgr], dim=1), (h_full, w_full))
        if idx[0].numel() > 0:
            pad_half, pad_full = (3, 2) if self.kernel_size == 3 else (0, 0)
            x = self.crop_patch(_resize(torch.cat([hid, pha, fgr], dim=1), half), idx, 2, pad_half)
            y = self.crop_patch(_resize(src_bgr, half), idx, 2, pad_half)
            x = self.relu(self.bn1(self.conv1(torch.cat([x, y], dim=1))))
            x = self.relu(self.bn2(self.conv2(x)))
            x = F.interpolate(x, size=8 if self.kernel_size == 3 else 4, mode="nearest")
            y = self.crop_patch(src_bgr, idx, 4, pad_full)
            x = self.relu(self.bn3(self.conv3(torch.cat([x, y], dim=1))))
            out = self.replace_patch(out, self.conv4(x), idx)
        return out[:, :1], out[:, 1:], ref

    def _refine_full(self, src, src_bgr, pha, fgr, hid, half, quarter):
        x = _resize(torch.cat([hid, pha, fgr], dim=1), half)
        y = _resize(src_bgr, half)
        if self.kernel_size == 3:
            x, y = F.pad(x, (3, 3, 3, 3)), F.pad(y, (3, 3, 3, 3))
        x = self.relu(self.bn1(self.conv1(torch.cat([x, y], dim=1))))
        x = self.relu(self.bn2(self.conv2(x)))
        h_full, w_full = src.shape[2:]
        if self.kernel_size == 3:
            x = F.interpolate(x, size=(h_full + 4, w_full + 4), mode="nearest")
            y = F.pad(src_bgr, (2, 2, 2, 2))
        else:
            x = F.interpolate(x, size=(h_full, w_full), mode="nearest")
            y = src_bgr
        x = self.relu(self.bn3(self.conv3(torch.cat([x, y], dim=1))))
        x = self.conv4(x)
        ref = torch.ones((src.shape[0], 1) + tuple(quarter), dtype=src.dtype, device=src.device)
        return x[:, :1], x[:, 1:], ref

    def select_refinement_regions(self, err: torch.Tensor) -> torch.Tensor:
        """0/1 map (B, 1, H/4, W/4) of the cells to refine."""
        if self.mode == "thresholding":
            return err.gt(self.threshold).to(err.dtype)
        b, _, h, w = err.shape
        flat = err.view(b, -1)
        idx = flat.topk(self.sample_pixels // 16, dim=1, sorted=False).indices
        ref = torch.zeros_like(flat).scatter_(1, idx, 1.0)
        if self.prevent_oversampling:
            ref = ref * flat.gt(0).to(flat.dtype)
        return ref.view(b, 1, h, w)

    @staticmethod
    def crop_patch(x: torch.Tensor, idx, size: int, padding: int) -> torch.Tensor:
        """(N, C, size + 2p, size + 2p) windows at rows [size*y - p, size*(y+1) + p) of each selected cell."""
        if padding:
            x = F.pad(x, (padding,) * 4)
        window = size + 2 * padding
        # (B, H, W, C) -> (B, nH, nW, C, window, window); indexing with (b, y, x) is per-image, any batch.
        patches = x.permute(0, 2, 3, 1).unfold(1, window, size).unfold(2, window, size)
        return patches[idx[0], idx[1], idx[2]]

    @staticmethod
    def replace_patch(x: torch.Tensor, patches: torch.Tensor, idx) -> torch.Tensor:
        """``x`` with the 4x4 block of each selected cell replaced by the matching patch."""
        b, c, h, w = x.shape
        blocks = x.reshape(b, c, h // 4, 4, w // 4, 4).permute(0, 2, 4, 1, 3, 5).clone()
        blocks[idx[0], idx[1], idx[2]] = patches
        return blocks.permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


class MattingRefine(MattingBase):
    """Coarse network at ``backbone_scale`` + refiner. ``forward(src, bgr)`` returns
    ``(pha, fgr, pha_sm, fgr_sm, err_sm, ref_sm)`` like the original."""

    def __init__(self, backbone: str = "resnet50", backbone_scale: float = 1 / 4, refine_mode: str = "sampling",
                 refine_sample_pixels: int = 80_000, refine_threshold: float = 0.1, refine_kernel_size: int = 3,
                 refine_prevent_oversampling: bool = True):
        if backbone_scale > 1 / 2:
            raise ValueError("backbone_scale cannot be larger than 1/2")
        super().__init__(backbone)
        self.backbone_scale = backbone_scale
        self.refiner = Refiner(refine_mode, refine_sample_pixels, refine_threshold, refine_kernel_size,
                               refine_prevent_oversampling)

    def forward(self, src: torch.Tensor, bgr: torch.Tensor):
        if src.shape != bgr.shape:
            raise ValueError("src and bgr must have the same shape")
        h, w = src.shape[2:]
        if h % 4 or w % 4:
            raise ValueError("src and bgr must have height and width divisible by 4")
        # = F.interpolate(scale_factor=backbone_scale, recompute_scale_factor=True) in the original.
        small = (math.floor(h * self.backbone_scale), math.floor(w * self.backbone_scale))
        src_sm, bgr_sm = _resize(src, small), _resize(bgr, small)
        x = self.coarse(src_sm, bgr_sm)
        pha_sm = x[:, 0:1].clamp(0.0, 1.0)
        fgr_sm = x[:, 1:4]  # residual; the refiner takes it unclipped
        err_sm = x[:, 4:5].clamp(0.0, 1.0)
        hid_sm = x[:, 5:].relu()
        pha, fgr, ref_sm = self.refiner(src, bgr, pha_sm, fgr_sm, err_sm, hid_sm)
        pha = pha.clamp(0.0, 1.0)
        fgr = (fgr + src).clamp(0.0, 1.0)
        fgr_sm = (src_sm + fgr_sm).clamp(0.0, 1.0)
        return pha, fgr, pha_sm, fgr_sm, err_sm, ref_sm


def build_model(model_type: str = "refine", backbone: str = "resnet50", **refine_kwargs) -> nn.Module:
    """``MattingRefine`` ('refine') or ``MattingBase`` ('base'), in eval mode."""
    if model_type == "base":
        model = MattingBase(backbone)
    elif model_type == "refine":
        model = MattingRefine(backbone, **refine_kwargs)
    else:
        raise ValueError(f"model_type must be 'base' or 'refine', not {model_type!r}")
    return model.eval()


# ------------------------------------------------------------------------------- randomisation

# Output-head settings applied by randomize_ (see its docstring): per channel group of decoder.conv4 /
# refiner.conv4, the weight standard deviation factor (relative to the fan-in scaled init) and the bias.
ERR_CHANNEL = 4
HEAD_WEIGHT_FACTOR = 0.2
ALPHA_BIAS = 0.5
ERR_BIAS = 0.5
RESIDUAL_BRANCH_FACTOR = 0.3
HEAD_BIAS_JITTER = 0.02


@torch.no_grad()
def randomize_(model: nn.Module, seed: int = 0, err_bias: float = ERR_BIAS) -> nn.Module:
    """Give every conv weight/bias and BatchNorm weight/bias/running statistic a random, non-default value.

    Seeded and deterministic (a private ``torch.Generator``; the global RNG is untouched).

    * Conv weights: normal with std ``sqrt(2 / fan_in)`` (He), so ReLU activations keep their scale
      through 100+ layers. Conv biases: normal, std 0.1.
    * BatchNorm: weight uniform in [0.8, 1.2], bias normal (std 0.1), running_mean normal (std 0.1),
      running_var uniform in [0.7, 1.4] (positive, never the default 0/1). Ranges are narrow so the
      product of ~100 unmatched normalisations neither explodes nor vanishes.
    * Residual branches: the last BatchNorm weight of every residual block is further scaled by
      ``RESIDUAL_BRANCH_FACTOR``. Eval-mode BatchNorm with random statistics does not renormalise,
      so each block multiplies the residual stream's scale by (1 + branch gain); undamped, ResNet-101's
      23-block layer3 grows activations ~100x and saturates every output.
    * Output heads (decoder.conv4, refiner.conv4): the alpha/foreground/error channels get weights
      scaled by ``HEAD_WEIGHT_FACTOR`` (std ~0.04-0.1 pre-activation) and biases ``ALPHA_BIAS`` for
      alpha, 0 for the foreground residual and ``err_bias`` for the error channel (each plus
      normal noise of std ``HEAD_BIAS_JITTER``). Reason: alpha and
      error are clipped to [0, 1]; with full-scale weights most values would saturate at exactly 0 or
      1, comparisons would only test the clip, and the error map would be full of exact ties at 1.0,
      for which top-k selection (sampling mode) has no well-defined answer. With the default
      ``err_bias=0.5`` err_sm lies strictly inside (0, 1) with distinct values (a test checks this),
      so the selected cells are determined by the values. ``err_bias`` below 0 (e.g. -0.2)
      makes part of err_sm exactly 0 on purpose, to exercise ``prevent_oversampling`` (ties at 0 are
      harmless there: those cells are dropped whatever top-k picked).
    """
    generator = torch.Generator().manual_seed(seed)

    def normal(tensor: torch.Tensor, std: float, mean: float = 0.0) -> None:
        tensor.copy_(torch.randn(tensor.shape, generator=generator) * std + mean)

    def uniform(tensor: torch.Tensor, low: float, high: float) -> None:
        tensor.copy_(torch.rand(tensor.shape, generator=generator) * (high - low) + low)

    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            fan_in = module.weight[0].numel()
            normal(module.weight, math.sqrt(2.0 / fan_in))
            if module.bias is not None:
                normal(module.bias, 0.1)
        elif isinstance(module, nn.BatchNorm2d):
            uniform(module.weight, 0.8, 1.2)
            normal(module.bias, 0.1)
            normal(module.running_mean, 0.1)
            uniform(module.running_var, 0.7, 1.4)
            module.num_batches_tracked.fill_(int(torch.randint(1, 1000, (), generator=generator)))
    for module in model.modules():
        if isinstance(module, Bottleneck):
            module.bn3.weight *= RESIDUAL_BRANCH_FACTOR
        elif isinstance(module, InvertedResidual) and module.use_res_connect:
            module.conv[-1].weight *= RESIDUAL_BRANCH_FACTOR
    heads = [model.decoder.conv4] + ([model.refiner.conv4] if hasattr(model, "refiner") else [])
    for conv in heads:
        # Channels 0 alpha, 1:4 foreground residual, (decoder only) 4 error; the rest stay as drawn.
        informative = 5 if conv is model.decoder.conv4 else 4
        conv.weight[:informative] *= HEAD_WEIGHT_FACTOR
        target = torch.tensor([ALPHA_BIAS, 0.0, 0.0, 0.0, err_bias][:informative])
        conv.bias[:informative] = target + HEAD_BIAS_JITTER * torch.randn(informative, generator=generator)
    return model


def random_model(model_type: str = "refine", backbone: str = "resnet50", seed: int = 0,
                 err_bias: float = ERR_BIAS, **refine_kwargs) -> nn.Module:
    """``build_model`` + ``randomize_``, skipping PyTorch's default initialisation (built on the meta
    device, then every tensor is drawn by randomize_): the same values, a second faster for ResNet-101."""
    with torch.device("meta"):
        model = build_model(model_type, backbone, **refine_kwargs)
    return randomize_(model.to_empty(device="cpu"), seed=seed, err_bias=err_bias).eval()


def random_inputs(batch: int, height: int, width: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A source/background pair in [0, 1] that differs in a block, like a subject in front of a background."""
    generator = torch.Generator().manual_seed(seed)
    bgr = torch.rand((batch, 3, height, width), generator=generator)
    src = bgr.clone()
    top, left = height // 4, width // 4
    src[:, :, top:height - top, left:width - left] = torch.rand(
        (batch, 3, height - 2 * top, width - 2 * left), generator=generator)
    return src, bgr


def topk_margin(err: torch.Tensor, k: int) -> float:
    """Smallest gap, over the images of a batch, between the k-th and (k+1)-th largest error values.

    Sampling mode selects the top k cells; if two implementations compute err to within e, they
    select the same cells whenever this margin exceeds 2e. Parity tests should assert it first.
    """
    flat = err.reshape(err.shape[0], -1)
    if k >= flat.shape[1]:
        return math.inf
    top = flat.topk(k + 1, dim=1).values
    return float((top[:, k - 1] - top[:, k]).min())
