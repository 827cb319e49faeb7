"""Evaluating a model: test sets (a built dataset or folders), the test-time protocol, batched
inference, scoring with the same functions as the folder mode, and saving predictions
(:func:`evaluate_model`, the ``bgm-jax eval --model --dataset`` mode)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from bgm_jax.errors import InputError
from bgm_jax.evaluation import metrics
from bgm_jax.evaluation.files import (
    UnreadableFile,
    index_images,
    read_alpha,
    read_colour,
    read_or_unreadable,
)
from bgm_jax.evaluation.perturb import NOISE_READINGS, composite_test_input
from bgm_jax.evaluation.report import EvalReport
from bgm_jax.evaluation.score import (
    QUANTIZE_MODES,
    crop_to_multiple_of_4,
    quantize_alpha,
    score_sample,
)

# The paper's evaluation settings for photos (METRICS.md): backbone scale 1/4 and k = 20,000 refined
# 4x4 patches, i.e. 320,000 sample pixels.
PAPER_PHOTO_BACKBONE_SCALE = 0.25
PAPER_PHOTO_SAMPLE_PIXELS = 320_000
# An AIM / Distinctions-646 test sample comes with 5 backgrounds, all of its size: one batch each on an
# accelerator. On a CPU batching only costs: 5 images of 2048x2048 (ResNet-50) took 61 to 66 s and
# 10.8 GB at batch 5 against 41 to 48 s and under 4 GB one at a time (docs/evaluation.md).
ACCELERATOR_BATCH = 5
MODEL_INPUT_FEATURES = ("fgr", "pha", "bgr")
TEST_SET_FOLDERS = ("fgr", "pha", "bgr")
BACKGROUND_FIT = "cover"  # shorter side fitted, centre crop: how training fits backgrounds too
PREDICTION_FOLDERS = {"pha": "pha", "fgr": "fgr", "gt_pha": "gt_pha", "gt_fgr": "gt_fgr"}
TESTSETS_WITH_BACKGROUNDS = (
    "matting_testset/aim",
    "matting_testset/distinctions646",
    "matting_testset/photomatte85",
    "synthetic_matting/<config>",
    "photo_matting/<config>",
)


class TestSampleError(Exception):
    """One test sample that cannot be used; the run goes on and reports it by name."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, name: str, problem: str):
        super().__init__(f"{name}: {problem}")
        self.name = name
        self.problem = problem


@dataclass
class TestSample:
    """One test sample as stored: clean ``fgr`` (HxWx3), ``pha`` (HxW, the ground truth), a clean
    background ``bgr`` of any size, and ``record_seed``, from which its perturbation is drawn."""

    __test__ = False
    name: str
    fgr: np.ndarray
    pha: np.ndarray
    bgr: np.ndarray
    record_seed: int


@dataclass
class TestInput:
    """A test sample after the protocol: the model's inputs ``src`` (the composite over the clean
    background) and ``bgr`` (the perturbed background), both float32 HxWx3 in [0, 1], and the ground
    truth, all cropped top-left to multiples of 4."""

    __test__ = False
    name: str
    src: np.ndarray
    bgr: np.ndarray
    gt_pha: np.ndarray
    gt_fgr: np.ndarray


def perturbation_seed(record_seed: int, run_seed: int = 0) -> int:
    """The seed of one test image's background perturbation: its record's seed mixed with the run's.

    Mixing (rather than using the record seed as it is) keeps the perturbation's random stream apart
    from any generator seeded with the same number (the synthetic datasets store the seed their sample
    was drawn from), and ``run_seed`` gives other, equally valid draws of the same test set.
    """
    entropy = [int(record_seed) % 2**63, int(run_seed) % 2**63]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint32)[0])


def fit_background(bgr: np.ndarray, height: int, width: int) -> np.ndarray:
    """``bgr`` resized to cover ``height x width`` (shorter side fitted, bilinear, centre crop), as the
    training pipeline fits backgrounds; returned unchanged when it already has that size."""
    if bgr.shape[:2] == (height, width):
        return bgr
    from bgm_jax.datasets.images import decode_to_canvas

    return decode_to_canvas(np.asarray(bgr, np.uint8), "RGB", (height, width), BACKGROUND_FIT)[0]


def protocol_input(sample: TestSample, *, seed: int = 0, noise: str = "std") -> TestInput:
    """Apply the test-time protocol (supplement D.2) to one sample.

    The background is fitted to the sample's size, everything is cropped top-left to multiples of 4
    (the size the model processes and the metrics score), the composite ``pha * fgr + (1 - pha) * bgr``
    is made in float32 with the clean background, and the background given to the model is perturbed
    (:func:`perturb_background`) from ``perturbation_seed(sample.record_seed, seed)``.
    """
    fgr, pha = np.asarray(sample.fgr), np.asarray(sample.pha)
    if pha.ndim == 3 and pha.shape[-1] == 1:
        pha = pha[..., 0]
    if fgr.ndim != 3 or fgr.shape[-1] != 3 or pha.ndim != 2:
        raise TestSampleError(sample.name, f"foreground {fgr.shape} / alpha {pha.shape}: expected HxWx3 and HxW")
    if fgr.shape[:2] != pha.shape:
        raise TestSampleError(sample.name, f"foreground is {fgr.shape[:2]} but alpha is {pha.shape}")
    bgr = fit_background(sample.bgr, *pha.shape)
    fgr, pha, bgr = crop_to_multiple_of_4(fgr), crop_to_multiple_of_4(pha), crop_to_multiple_of_4(bgr)
    if pha.size == 0:
        raise TestSampleError(sample.name, f"smaller than 4x4 ({sample.pha.shape[:2]}); the model needs 4x4 or more")
    src, seen_bgr = composite_test_input(fgr, pha, bgr, perturbation_seed(sample.record_seed, seed), noise=noise)
    return TestInput(sample.name, src, seen_bgr, pha, fgr)


class DatasetTestSet:
    """The records of a prepared dataset split (tfds ArrayRecord) that has ``fgr``, ``pha`` and ``bgr``.

    Names: ``name@background`` for ``matting_testset`` records, ``name`` for records with a name only,
    the zero-padded clip (and ``clip/frame`` in video sets) for ``synthetic_matting``, else the record
    index (``photo_matting``). The record's ``seed`` feature is the perturbation's record seed (the
    index without one).
    """

    def __init__(self, source, description: str):
        self.source = source
        self.description = description
        self.problems: list[tuple[str, str]] = []
        last = source[len(source) - 1] if len(source) else {}
        self._video = int(last.get("frame", 0)) > 0  # records are in clip, frame order

    def __len__(self) -> int:
        return len(self.source)

    def record_name(self, record: dict, index: int) -> str:
        if "name" in record:
            name = _text(record["name"])
            return f"{name}@{_text(record['background'])}" if "background" in record else name
        if "clip" in record:
            clip = f"{int(record['clip']):06d}"
            return f"{clip}/{int(record.get('frame', 0)):05d}" if self._video else clip
        return f"{index:06d}"

    def load(self, index: int) -> TestSample:
        from bgm_jax.datasets.images import decode

        record = self.source[index]
        name = self.record_name(record, index)
        try:
            fgr, pha, bgr = decode(record["fgr"], "RGB"), decode(record["pha"], "L"), decode(record["bgr"], "RGB")
        except InputError as e:
            raise TestSampleError(name, f"record {index} of {self.description}: {e}") from None
        return TestSample(name, fgr, pha, bgr, int(record.get("seed", index)))


class FolderTestSet:
    """A folder ``ROOT/{fgr,pha,bgr}/**`` of images paired by relative path without extension
    (.png/.jpg/.jpeg, as in the folder mode); backgrounds may have any size. Names that are missing a
    partner are problems. The record seed is the CRC-32 of the name, so a sample's perturbation does
    not depend on which other files are there."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.description = str(root)
        if not self.root.is_dir():
            raise InputError(f"--dataset-dir {root}: not a directory; give a folder holding fgr/, pha/ and bgr/")
        missing = [name for name in TEST_SET_FOLDERS if not (self.root / name).is_dir()]
        if missing:
            raise InputError(
                f"--dataset-dir {root}: no {', '.join(f'{m}/' for m in missing)} folder; expected "
                "ROOT/fgr/, ROOT/pha/ and ROOT/bgr/ with images paired by relative path"
            )
        self.indexes = {name: index_images(self.root / name) for name in TEST_SET_FOLDERS}
        self.problems = []
        for folder, index in self.indexes.items():
            for key, paths in index.ambiguous.items():
                names = ", ".join(str(p) for p in paths)
                self.problems.append((key, f"ambiguous {folder}: several files share this name ({names}); keep one"))
        keys = [set(index.files) for index in self.indexes.values()]
        self.keys = sorted(set.intersection(*keys))
        for key in sorted(set.union(*keys) - set(self.keys)):
            lacking = [f"{f}/" for f, index in self.indexes.items() if key not in index.files]
            if not any(key in index.ambiguous for index in self.indexes.values()):
                self.problems.append((key, f"no {' and no '.join(lacking)} image under {self.root}"))
        if not self.keys and not self.problems:
            raise InputError(f"--dataset-dir {root}: no .png/.jpg/.jpeg images in fgr/, pha/ and bgr/")

    def __len__(self) -> int:
        return len(self.keys)

    def load(self, index: int) -> TestSample:
        import zlib

        key = self.keys[index]
        try:
            fgr = read_or_unreadable(read_colour, self.indexes["fgr"].files[key])
            pha = read_or_unreadable(read_alpha, self.indexes["pha"].files[key])
            bgr = read_or_unreadable(read_colour, self.indexes["bgr"].files[key])
        except UnreadableFile as e:
            raise TestSampleError(key, str(e)) from None
        return TestSample(key, fgr, pha, bgr, zlib.crc32(key.encode("utf-8")))


def _text(value) -> str:
    if isinstance(value, np.ndarray):
        value = value.item()
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def open_test_set(
    dataset: str | os.PathLike | None = None,
    *,
    data_dir: str | os.PathLike | None = None,
    split: str = "test",
    dataset_dir: str | os.PathLike | None = None,
) -> DatasetTestSet | FolderTestSet:
    """A test set for :func:`evaluate_model`: a prepared dataset by name (with ``data_dir``) or by its
    directory, or (``dataset_dir``) a folder of ``fgr/``, ``pha/`` and ``bgr/`` images.

    The dataset needs backgrounds: ``matting_testset/*`` (each test sample paired with backgrounds, as
    in the paper), ``synthetic_matting/*`` or ``photo_matting/*``. Anything unusable raises
    :class:`InputError`.
    """
    if (dataset is None) == (dataset_dir is None):
        raise InputError("give one test set: --dataset NAME (a prepared dataset) or --dataset-dir DIR (image folders)")
    if dataset_dir is not None:
        return FolderTestSet(dataset_dir)
    from bgm_jax.datasets import catalog

    path = Path(dataset).expanduser()
    if path.is_dir() and not (path / "dataset_info.json").is_file():
        if all((path / name).is_dir() for name in TEST_SET_FOLDERS):
            raise InputError(f"--dataset {dataset}: a folder of fgr/, pha/ and bgr/ images; give it with --dataset-dir")
        raise InputError(
            f"--dataset {dataset}: not a prepared dataset directory (no dataset_info.json); give a dataset name "
            "with --data-dir, the directory build-dataset wrote (<data-dir>/<name>/<config>/<version>), "
            "or a folder of fgr/, pha/ and bgr/ images with --dataset-dir"
        )
    if path.is_dir():
        source = catalog.open_split(path, split)
        description = f"{path} [{split}]"
    else:
        _check_dataset_name(str(dataset))
        if data_dir is None:
            raise InputError(
                f"--dataset {dataset}: give --data-dir, the folder "
                f"`bgm-jax build-dataset {dataset} --data-dir DIR` wrote to"
            )
        if not Path(data_dir).expanduser().is_dir():
            raise InputError(f"--data-dir {data_dir}: not a directory; give the folder build-dataset wrote to")
        source = catalog.open_split(str(dataset), split, Path(data_dir).expanduser())
        description = f"{dataset} [{split}] in {data_dir}"
    features = set(source.dataset_info.features.keys())
    lacking = [name for name in MODEL_INPUT_FEATURES if name not in features]
    if lacking:
        raise InputError(
            f"--dataset {dataset}: records have no {', '.join(lacking)} (features: {', '.join(sorted(features))}); "
            f"the model needs a background per sample: use {', '.join(TESTSETS_WITH_BACKGROUNDS)}"
        )
    if len(source) == 0:
        raise InputError(f"--dataset {description}: the split has no records")
    return DatasetTestSet(source, description)


def _check_dataset_name(name: str) -> None:
    from bgm_jax.datasets.builders import BUILDERS

    if name.partition("/")[0] not in BUILDERS:
        raise InputError(
            f"--dataset {name}: no such dataset and no such directory; test sets with backgrounds: "
            f"{', '.join(TESTSETS_WITH_BACKGROUNDS)} (build one with bgm-jax build-dataset), or use "
            "--dataset-dir DIR for a folder of fgr/, pha/ and bgr/ images"
        )


class PredictionWriter:
    """Writes what :func:`evaluate_model` scored, so ``bgm-jax eval --pred`` can score it again:
    ``ROOT/pha/NAME.png`` and ``ROOT/fgr/NAME.png`` (the predictions as scored) and ``ROOT/gt_pha``,
    ``ROOT/gt_fgr`` (the ground truth as scored, cropped to multiples of 4).

    8-bit predictions (``round``/``floor``) are written as they were scored, so re-scoring gives the
    same numbers. Unquantised (``none``) alpha is written as 16-bit PNG and foreground as rounded
    8-bit, which re-scores to within those precisions. Every file is written under a temporary name
    and renamed when complete.
    """

    def __init__(self, root: str | os.PathLike, *, overwrite: bool = False):
        self.root = Path(root)
        self.overwrite = overwrite
        if self.root.exists() and not self.root.is_dir():
            raise InputError(f"--save-pred {root}: is a file; give a folder to write the predictions to")
        if not overwrite:
            used = [f"{f}/" for f in PREDICTION_FOLDERS.values() if _non_empty_dir(self.root / f)]
            if used:
                raise InputError(
                    f"--save-pred {root}: already holds {', '.join(used)}; choose an empty folder or pass "
                    "--overwrite (files of other names stay and would be re-scored too)"
                )

    def path(self, kind: str, name: str) -> Path:
        relative = PurePosixPath(name + ".png")  # name + suffix: a dot in the name stays part of it
        if relative.is_absolute() or ".." in relative.parts:
            raise InputError(f"sample name {name!r} would be written outside {self.root}; rename the sample")
        return self.root / PREDICTION_FOLDERS[kind] / Path(*relative.parts)

    def write(self, name: str, pred_pha, pred_fgr, gt_pha, gt_fgr) -> None:
        from bgm_jax.io.outputs import to_uint8, to_uint16, write_image

        def as_stored(alpha):
            alpha = np.asarray(alpha)
            return alpha if alpha.dtype in (np.uint8, np.uint16) else to_uint16(alpha)

        for kind, pixels in (
            ("pha", as_stored(pred_pha)),
            ("fgr", to_uint8(pred_fgr)),
            ("gt_pha", as_stored(gt_pha)),
            ("gt_fgr", to_uint8(gt_fgr)),
        ):
            write_image(self.path(kind, name), pixels, overwrite=self.overwrite)

    def rescore_command(self, trimap_mode: str, quantize: str) -> str:
        """The ``bgm-jax eval`` command that scores the written files again."""
        d = {k: self.root / f for k, f in PREDICTION_FOLDERS.items()}
        return (
            f"bgm-jax eval --pred {d['pha']} --gt {d['gt_pha']} --fgr-pred {d['fgr']} --fgr-gt {d['gt_fgr']} "
            f"--trimap-mode {trimap_mode} --quantize {quantize}"
        )


def default_batch_size() -> int:
    """Images run together by default: 1 on a CPU, :data:`ACCELERATOR_BATCH` on an accelerator."""
    import jax

    return 1 if jax.default_backend() == "cpu" else ACCELERATOR_BATCH


def _non_empty_dir(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


@dataclass
class _Batch:
    inputs: list[TestInput]
    problems: list[tuple[str, str]]


def protocol_batches(test_set, batch_size: int, *, seed: int = 0, noise: str = "std"):
    """The test set's samples through :func:`protocol_input`, in order, grouped into runs of up to
    ``batch_size`` consecutive inputs of one size; samples that fail travel along as problems."""
    batch: list[TestInput] = []
    problems: list[tuple[str, str]] = []
    for index in range(len(test_set)):
        try:
            item = protocol_input(test_set.load(index), seed=seed, noise=noise)
        except TestSampleError as e:
            problems.append((e.name, e.problem))
            continue
        if batch and item.src.shape != batch[0].src.shape:
            yield _Batch(batch, problems)
            batch, problems = [], []
        batch.append(item)
        if len(batch) == batch_size:
            yield _Batch(batch, problems)
            batch, problems = [], []
    if batch or problems:
        yield _Batch(batch, problems)


def run_model_batch(matting, inputs: list[TestInput], widths: dict[tuple[int, ...], int]):
    """Run ``matting`` on equally sized inputs; returns its (device) result for the padded batch.

    ``widths`` remembers the batch size each image size ran at: a shorter batch of a size seen before
    is padded (repeating its last input) to that width, so it reuses the compiled function instead of
    compiling another; the padded rows are simply not read.
    """
    shape = inputs[0].src.shape
    width = max(len(inputs), widths.get(shape, 0))
    widths[shape] = width
    rows = inputs + [inputs[-1]] * (width - len(inputs))
    src = np.stack([x.src for x in rows])
    bgr = np.stack([x.bgr for x in rows])
    return matting(src, bgr)


def evaluate_model(
    matting: Callable,
    test_set,
    *,
    trimap_mode: str = "closing",
    quantize: str = "round",
    batch_size: int | None = None,
    seed: int = 0,
    noise: str = "std",
    writer: PredictionWriter | None = None,
    sources: dict[str, str] | None = None,
    settings: dict[str, object] | None = None,
    progress: Callable[[int], object] | None = None,
) -> EvalReport:
    """Run ``matting`` over ``test_set`` with the test-time protocol and score it like the folder mode.

    ``matting(src, bgr)`` takes NHWC float32 batches and returns an object with ``pha`` (NHW1) and
    ``fgr`` (NHW3), as :class:`bgm_jax.inference.Matting` does. Each prediction goes through
    :func:`quantize_alpha` (alpha and foreground) and :func:`score_sample` against the ground truth,
    with trimaps generated with ``trimap_mode``; ``writer`` saves what was scored. ``batch_size``
    defaults to :func:`default_batch_size`.

    Loading and compositing run in one thread, scoring (and writing) in another, while the main thread
    dispatches the model, so on an accelerator the three overlap. ``progress(total)`` may return a
    tqdm-like bar, advanced once per image.
    """
    from bgm_jax.io.pipeline import Pipeline

    if quantize not in QUANTIZE_MODES:
        raise InputError(f"unknown quantisation {quantize!r}; use one of {', '.join(QUANTIZE_MODES)}")
    if trimap_mode not in metrics.TRIMAP_READINGS:
        raise InputError(f"unknown trimap reading {trimap_mode!r}; use one of {', '.join(metrics.TRIMAP_READINGS)}")
    if batch_size is None:
        batch_size = default_batch_size()
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    if noise not in NOISE_READINGS:
        raise InputError(f"unknown noise reading {noise!r}; use one of {', '.join(NOISE_READINGS)}")
    report = EvalReport(
        trimap=trimap_mode,
        quantize=quantize,
        trimap_source="generated from ground-truth alpha",
        sources=dict(sources or {}),
        settings=dict(settings or {}),
    )
    for name, problem in test_set.problems:
        report.add_problem(name, problem)
    bar = progress(len(test_set)) if progress is not None else None

    def score_batch(item) -> None:
        batch, result = item
        for name, problem in batch.problems:
            report.add_problem(name, problem)
        if bar is not None and batch.problems:
            bar.update(len(batch.problems))
        if result is None:
            return
        pred_phas, pred_fgrs = np.asarray(result.pha), np.asarray(result.fgr)  # waits for the device
        for x, pred_pha, pred_fgr in zip(batch.inputs, pred_phas, pred_fgrs):
            pred_pha = quantize_alpha(pred_pha[..., 0], quantize)
            pred_fgr = quantize_alpha(pred_fgr, quantize)
            try:
                report.add(x.name, score_sample(pred_pha, x.gt_pha, trimap_mode, pred_fgr, x.gt_fgr))
                if writer is not None:
                    writer.write(x.name, pred_pha, pred_fgr, x.gt_pha, x.gt_fgr)
            except InputError as e:
                report.add_problem(x.name, str(e))
            if bar is not None:
                bar.update(1)

    widths: dict[tuple[int, ...], int] = {}
    batches = protocol_batches(test_set, batch_size, seed=seed, noise=noise)
    try:
        # depth 1: a batch of 2K composites is hundreds of MB; one waiting is enough to keep up
        with Pipeline(batches, sink=score_batch, depth=1) as pipe:
            for batch in pipe:
                result = run_model_batch(matting, batch.inputs, widths) if batch.inputs else None
                pipe.put((batch, result))
    finally:
        if bar is not None:
            bar.close()
    return report
