"""Composite test sets following the paper's protocol (supplement D.2).

Each AIM / Distinctions-646 test sample is paired with 5 backgrounds and each PhotoMatte85 sample with
1, drawn without replacement from a folder of backgrounds by a seeded generator, so the same inputs and
seed always give the same test set. Records hold the clean foreground, alpha and background plus a
per-record ``seed`` for the evaluation's background-only perturbation (sub-pixel shift, gamma, noise),
which is applied at evaluation time, not stored.

Inputs: ``samples_dir`` (the dataset's own layout, see ``layouts``; its test split is used) and
``backgrounds_dir`` (a backgrounds folder; all its images, every split, in name order). Pass them as
builder arguments, or put them at ``<manual_dir>/samples`` and ``<manual_dir>/backgrounds``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from bgm_jax.datasets import images, layouts
from bgm_jax.datasets.builders import base
from bgm_jax.datasets.builders.image_matting import LAYOUTS
from bgm_jax.errors import InputError

TESTSET_LAYOUT = "<manual_dir>/samples/ (the dataset's layout) + <manual_dir>/backgrounds/ (images)"


@dataclasses.dataclass(eq=False, kw_only=True)
class MattingTestsetConfig(tfds.core.BuilderConfig):
    layout: str = "aim"  # a key of image_matting.LAYOUTS
    backgrounds_per_sample: int = 5
    seed: int = 0


class MattingTestset(base.ArrayRecordBuilder):
    """Test split of foreground samples x backgrounds, chosen deterministically from a seed."""

    name = "matting_testset"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [
        MattingTestsetConfig(
            name="aim", layout="aim", backgrounds_per_sample=5, description="AIM test x 5 backgrounds."
        ),
        MattingTestsetConfig(
            name="distinctions646", layout="distinctions646", backgrounds_per_sample=5,
            description="Distinctions-646 test x 5 backgrounds.",
        ),
        MattingTestsetConfig(
            name="photomatte85", layout="photomatte85", backgrounds_per_sample=1,
            description="PhotoMatte85 x 1 background.",
        ),
    ]
    DEFAULT_BUILDER_CONFIG_NAME = "aim"
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"Layout: {TESTSET_LAYOUT}, or pass samples_dir= and backgrounds_dir=."

    def __init__(
        self,
        *,
        samples_dir: str | os.PathLike | None = None,
        backgrounds_dir: str | os.PathLike | None = None,
        include: Sequence[str] | None = None,
        **kwargs,
    ):
        """Args beyond tfds's: the two input folders (else taken from the manual directory) and
        ``include``, the sample names to keep (e.g. the 11 human samples of the paper), all when None."""
        super().__init__(**kwargs)
        self._samples_dir = samples_dir
        self._backgrounds_dir = backgrounds_dir
        self._include = None if include is None else list(include)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "Test composites: fgr, pha, bgr; name (sample), background (its name), "
                "seed (for the evaluation's background perturbation)."
            ),
            features=tfds.features.FeaturesDict(
                {
                    "fgr": base.rgb_feature(),
                    "pha": base.alpha_feature(),
                    "bgr": base.rgb_feature(),
                    "name": tfds.features.Text(),
                    "background": tfds.features.Text(),
                    "seed": tfds.features.Scalar(np.int64),
                }
            ),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        samples_dir, backgrounds_dir = self._input_dirs(dl_manager)
        list_pairs, _ = LAYOUTS[self.builder_config.layout]
        splits = list_pairs(samples_dir)
        if "test" not in splits:
            raise InputError(f"{samples_dir}: no test split found for {self.builder_config.layout}")
        pairs = self._selected(splits["test"], samples_dir)
        by_split = layouts.background_images(backgrounds_dir)
        backgrounds = sorted((img for files in by_split.values() for img in files), key=lambda img: img.name)
        plan = pair_with_backgrounds(len(pairs), len(backgrounds), self.builder_config.backgrounds_per_sample,
                                     self.builder_config.seed, backgrounds_dir)
        return {"test": self._generate_examples(pairs, backgrounds, plan)}

    def _input_dirs(self, dl_manager) -> tuple[Path, Path]:
        if self._samples_dir is not None and self._backgrounds_dir is not None:
            return Path(self._samples_dir), Path(self._backgrounds_dir)
        root = Path(self._manual_root(dl_manager, TESTSET_LAYOUT))
        return (Path(self._samples_dir) if self._samples_dir is not None else root / "samples",
                Path(self._backgrounds_dir) if self._backgrounds_dir is not None else root / "backgrounds")

    def _selected(self, pairs, samples_dir):
        if self._include is None:
            return pairs
        by_name = {p.name: p for p in pairs}
        unknown = [n for n in self._include if n not in by_name]
        if unknown:
            raise InputError(
                f"include: {len(unknown)} names are not test samples in {samples_dir} (e.g. {unknown[0]!r}); "
                f"names look like {next(iter(by_name))!r}"
            )
        return [by_name[n] for n in sorted(set(self._include))]

    def _generate_examples(self, pairs, backgrounds, plan):
        for (sample, background, seed) in plan:
            pair, bg = pairs[sample], backgrounds[background]
            yield f"{pair.name}@{bg.name}", {
                **base.matting_pair_example(pair),
                "bgr": images.bytes_for_storage(bg.path, "rgb"),
                "name": pair.name,
                "background": bg.name,
                "seed": seed,
            }


def pair_with_backgrounds(
    n_samples: int, n_backgrounds: int, per_sample: int, seed: int, backgrounds_dir: object = "backgrounds"
) -> list[tuple[int, int, int]]:
    """(sample index, background index, record seed) for every test record, in sample order.

    Each sample gets ``per_sample`` distinct backgrounds, drawn without replacement independently per
    sample, from one generator seeded with ``seed``.
    """
    if n_backgrounds < per_sample:
        raise InputError(
            f"{backgrounds_dir}: {n_backgrounds} background images, but each sample needs {per_sample} "
            "different ones; add background images"
        )
    rng = np.random.default_rng(seed)
    plan = []
    for sample in range(n_samples):
        for background in rng.choice(n_backgrounds, size=per_sample, replace=False):
            plan.append((sample, int(background), int(rng.integers(2**31 - 1))))
    return plan
