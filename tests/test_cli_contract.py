"""One error contract for every subcommand (bgm_jax/cli/__init__.py is the only boundary):

0 success; 1 some inputs failed (named, the rest done); 2 bad usage or unusable input; 70 internal error;
130 SIGINT; 143 SIGTERM. Never a traceback unless --debug or BGM_JAX_DEBUG=1. Failed writes (disk full,
permission denied; injected here, since tests run as root) are one line and leave nothing that looks
complete; sizes that cannot fit are refused before allocating, with the estimate; a video cut short
finishes with a warning naming both counts and exit 1.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bgm_jax import cli
from bgm_jax.checkpoint import save_model
from bgm_jax.cli.common import random_variables
from bgm_jax.errors import InputError, InputWarning

ROOT = Path(__file__).resolve().parents[1]
CONFIG = {"model_type": "refine", "backbone": "mobilenetv2", "refine_kernel_size": 3}
W, H = 64, 48


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_model(tmp_path_factory.mktemp("model") / "mobilenetv2", random_variables(CONFIG, seed=5), CONFIG)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("xla")


@pytest.fixture
def folder(tmp_path):
    """Three sources and one background."""
    rng = np.random.default_rng(1)
    for name in ("a", "b", "c"):
        (tmp_path / "src").mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (H, W, 3), np.uint8)).save(tmp_path / "src" / f"{name}.png")
    Image.fromarray(rng.integers(0, 256, (H, W, 3), np.uint8)).save(tmp_path / "bgr.png")
    return tmp_path


def images(model_dir, cache_dir, folder, *extra) -> int:
    return cli.main(["images", "--model", str(model_dir), "--compilation-cache", str(cache_dir), "--src",
                     str(folder / "src"), "--bgr", str(folder / "bgr.png"), "--out", str(folder / "out"),
                     "--no-progress", *extra])


def fake_command(monkeypatch, run) -> None:
    """Register ``bgm-jax fake`` running ``run(args)``."""
    module = types.ModuleType("fake_command")
    module.add_arguments = lambda parser: parser.add_argument("--batch", type=int)
    module.run = run
    monkeypatch.setitem(sys.modules, "fake_command", module)
    monkeypatch.setitem(cli.COMMANDS, "fake", ("fake_command", "a test command"))


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


# ---------------------------------------------------------------------------------------------- the boundary


def divide_by_zero(args):
    return 1 // 0


@pytest.mark.parametrize("debug", [None, "--debug before", "--debug after", "BGM_JAX_DEBUG=1"])
def test_an_unexpected_exception_is_one_line_and_exit_70_with_the_traceback_only_when_asked(
        debug, monkeypatch, capsys):
    fake_command(monkeypatch, divide_by_zero)
    monkeypatch.delenv("BGM_JAX_DEBUG", raising=False)
    argv = ["fake"]
    if debug == "--debug before":
        argv = ["--debug", "fake"]
    elif debug == "--debug after":
        argv = ["fake", "--debug"]
    elif debug:
        monkeypatch.setenv("BGM_JAX_DEBUG", "1")
    assert cli.main(argv) == cli.EXIT_INTERNAL_ERROR == 70
    err = capsys.readouterr().err
    last = err.splitlines()[-1]
    assert last == ("bgm-jax fake: internal error (ZeroDivisionError: integer division or modulo by zero); "
                    "rerun with --debug and report it")
    assert ("Traceback (most recent call last)" in err) == bool(debug)
    if not debug:
        assert err.count("\n") == 1


def test_input_errors_exit_2_and_warnings_are_one_line(monkeypatch, capsys):
    import warnings

    def run(args):
        warnings.warn("clip.mp4: something worth knowing", InputWarning)
        raise InputError("clip.mp4: cannot be used; do this instead")

    fake_command(monkeypatch, run)
    assert cli.main(["fake"]) == 2
    assert capsys.readouterr().err == ("bgm-jax fake: warning: clip.mp4: something worth knowing\n"
                                       "bgm-jax fake: error: clip.mp4: cannot be used; do this instead\n")


def test_an_oserror_from_below_is_one_line_naming_the_file(monkeypatch, capsys):
    def run(args):
        raise PermissionError(errno.EACCES, "Permission denied", "/data/out/x.png")

    fake_command(monkeypatch, run)
    assert cli.main(["fake"]) == 2
    assert capsys.readouterr().err == ("bgm-jax fake: error: /data/out/x.png: cannot write (permission denied; "
                                       "choose a folder you can write to)\n")


def test_device_out_of_memory_found_late_names_batch_and_precision_and_what_to_try(monkeypatch, capsys):
    import jax

    def run(args):
        raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 9.1GiB.")

    fake_command(monkeypatch, run)
    assert cli.main(["fake", "--batch", "8"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bgm-jax fake: error: the device ran out of memory (batch 8): RESOURCE_EXHAUSTED")
    assert "--batch" in err and "bfloat16" in err and err.count("\n") == 1


SLEEPER = textwrap.dedent("""
    import sys, time, types
    from bgm_jax import cli
    from bgm_jax.io.atomic import atomic_output
    module = types.ModuleType("sleeper")
    module.add_arguments = lambda parser: None
    def run(args):
        with atomic_output(sys.argv[1]) as partial:
            partial.write_text("half")
            print("ready", flush=True)
            time.sleep(60)
    module.run = run
    sys.modules["sleeper"] = module
    cli.COMMANDS["sleep"] = ("sleeper", "sleeps")
    sys.exit(cli.main(["sleep"]))
""")


@pytest.mark.parametrize("sig, code, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_sigint_and_sigterm_exit_130_and_143_and_remove_the_partial_output(sig, code, word, tmp_path):
    target = tmp_path / "out.png"
    # The child starts with SIGINT at its default: a process that inherits it ignored keeps it ignored (as a
    # shell's background job does, by design), and a pytest worker can hand it down ignored (this test timed
    # out on worker gw0 in 2 of 3 clean-clone CI runs; reproduced by running pytest with SIGINT ignored).
    proc = subprocess.Popen([sys.executable, "-c", SLEEPER, str(target)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code
    assert err == f"bgm-jax sleep: {word}; partial outputs were removed\n"
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------- messages


def test_a_pytorch_file_given_as_model_says_to_convert_it_first(folder, cache_dir, capsys):
    pth = folder / "pytorch_resnet50.pth"
    pth.write_bytes(b"PK\x03\x04 not really a zip")
    assert images(pth, cache_dir, folder) == 2
    assert capsys.readouterr().err == (
        f"bgm-jax images: error: --model {pth}: this is a PyTorch checkpoint: run `bgm-jax convert {pth} "
        "MODEL_DIR` first, then pass --model MODEL_DIR\n")


def test_an_existing_output_names_the_file_and_the_option_not_python(tmp_path, capsys):
    (tmp_path / "src.png").write_bytes(b"x")
    assert cli.main(["demo", "--size", "64x48", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"bgm-jax demo: error: {tmp_path / 'src.png'}: output already exists; pass "
                                       "--overwrite to replace it or choose another output folder\n")


def test_build_dataset_prints_no_download_lines_for_a_local_build(tmp_path, capfd):
    assert cli.main(["build-dataset", "synthetic_matting/small", "--height", "32", "--width", "32", "--num-train",
                     "2", "--num-test", "1", "--data-dir", str(tmp_path)]) == 0
    out, err = capfd.readouterr()
    assert "Downloading" not in out + err and "Unknown size" not in out + err
    assert "Using custom data configuration" not in err
    assert out.startswith("prepared synthetic_matting/small_32x32_n2-1_s0 at ")


# ---------------------------------------------------------------------------------------------- writing fails


@pytest.mark.parametrize("code, reason", [(errno.ENOSPC, "no space left on the device; free some space"),
                                          (errno.EACCES, "permission denied; choose a folder you can write to")])
def test_images_that_cannot_be_written_leave_no_output_of_theirs_and_a_true_summary(
        code, reason, folder, model_dir, cache_dir, monkeypatch, capsys):
    """com is written, then pha fails (full disk; or permission denied, injected since tests run as root):
    the com file of that source is removed, so the summary's '0 of 3 written' is the whole truth (before:
    three complete com PNGs were left)."""
    from PIL import PngImagePlugin

    original = PngImagePlugin._save

    def fail_for_greyscale(image, fp, filename, *args, **kwargs):
        if image.mode == "L":
            raise OSError(code, os.strerror(code))
        return original(image, fp, filename, *args, **kwargs)

    monkeypatch.setitem(Image.SAVE, "PNG", fail_for_greyscale)
    assert images(model_dir, cache_dir, folder, "--outputs", "com,pha") == 1
    out, err = capsys.readouterr()
    assert "images: 0 of 3 written" in out and "3 failed" in out
    assert f"skipped {folder / 'src' / 'a.png'}: {folder / 'out' / 'pha' / 'a.png'}: cannot write ({reason}" in err
    assert files_under(folder / "out") == []


def test_device_out_of_memory_names_the_size_batch_and_precision_per_image(
        folder, model_dir, cache_dir, monkeypatch, capsys):
    import jax

    from bgm_jax.inference import Matting

    def out_of_memory(*args):
        raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 123456 bytes.")

    monkeypatch.setattr(Matting, "compiled_for", lambda self, *shapes: out_of_memory)
    assert images(model_dir, cache_dir, folder, "--precision", "bfloat16") == 1
    out, err = capsys.readouterr()
    assert "images: 0 of 3 written" in out
    assert (f"skipped {folder / 'src' / 'b.png'}: 64x48 at batch 1, bfloat16: the device ran out of memory "
            "(RESOURCE_EXHAUSTED: Out of memory while trying to allocate 123456 bytes.); try a smaller batch "
            "(--batch), --precision bfloat16 or a smaller image size") in err


def test_video_on_a_full_disk_is_one_line_and_leaves_no_file(folder, model_dir, cache_dir, monkeypatch, capsys):
    import av

    from bgm_jax.io.video_writer import VideoWriter

    clip = make_clip(folder / "clip.mp4", frames=6)
    writes = []

    def mux(self, packets):
        writes.append(1)
        if len(writes) > 2:
            raise av.error.OSError(errno.ENOSPC, "No space left on device", str(self._partial))
        self._container.mux(packets)

    monkeypatch.setattr(VideoWriter, "_mux", mux)
    code = cli.main(["video", "--model", str(model_dir), "--compilation-cache", str(cache_dir), "--src", str(clip),
                     "--bgr", str(folder / "bgr.png"), "--com", str(folder / "out" / "com.mp4"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert err == (f"bgm-jax video: error: {folder / 'out' / 'com.mp4'}: cannot write (no space left on the device; "
                   "free some space or choose another output folder)\n")
    assert list((folder / "out").iterdir()) == []  # neither com.mp4 nor a hidden partial


# ---------------------------------------------------------------------------------------------- memory


def test_a_size_that_cannot_fit_is_refused_before_allocating_with_the_estimate(tmp_path, capsys):
    assert cli.main(["demo", "--size", "100000x100000", "--out", str(tmp_path / "demo"),
                     "--compilation-cache", ""]) == 2
    notice, err = capsys.readouterr().err.split("\n", 1)  # the one line naming the embedded model, then the error
    assert notice.startswith("model: embedded photo-mobilenetv2")
    assert err.startswith("bgm-jax demo: error: 100000x100000 at batch 1, float32: the model needs about ")
    assert "TB of memory (estimated before allocating), more than the CPU's physical RAM (" in err
    assert "bfloat16" in err and err.count("\n") == 1
    assert not (tmp_path / "demo").exists()


def test_images_of_a_size_that_does_not_fit_are_reported_by_name_and_the_others_done(
        folder, model_dir, cache_dir, monkeypatch, capsys):
    from bgm_jax import inference, memory

    Image.fromarray(np.zeros((96, 128, 3), np.uint8)).save(folder / "src" / "big.png")
    real_check = inference.check_call_fits

    def one_megabyte_of_ram_for_the_big_size(compiled, device, *, shape, precision, resident_bytes=0):
        with monkeypatch.context() as patch:
            if shape[1] == 96:
                patch.setattr(memory, "physical_memory_bytes", lambda: 10**6)
            return real_check(compiled, device, shape=shape, precision=precision, resident_bytes=resident_bytes)

    monkeypatch.setattr(inference, "check_call_fits", one_megabyte_of_ram_for_the_big_size)
    assert images(model_dir, cache_dir, folder, "--resize-bgr") == 1
    out, err = capsys.readouterr()
    assert "images: 3 of 4 written" in out
    assert "skipped " + str(folder / "src" / "big.png") + ": 128x96 at batch 1, float32: the model needs about" in err
    assert files_under(folder / "out" / "pha") == ["a.png", "b.png", "c.png"]


def test_the_memory_estimate_is_not_below_what_a_cpu_call_really_uses():
    """Peak RSS growth of one 1024x1024 call (measured in a fresh process) stays under the estimate."""
    code = textwrap.dedent("""
        import resource, numpy as np, jax
        from bgm_jax import memory
        from bgm_jax.cli.common import random_weight_matting
        m = random_weight_matting("mobilenetv2", {}, "")
        src = np.random.default_rng(0).integers(0, 256, (1, 1024, 1024, 3), np.uint8)
        compiled = m.compiled_for(src.shape, src.dtype, src.shape, src.dtype)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        jax.block_until_ready(m(src, src).pha)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(after - before, memory.estimate_call_bytes(compiled, "cpu"), memory.xla_call_bytes(compiled))
    """)
    if not sys.platform.startswith("linux"):
        pytest.skip("ru_maxrss is in kilobytes on Linux only")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    used, estimate, xla = (int(v) for v in out.split())
    # XLA's own figure alone can be below what the CPU runtime takes (measured up to 2.4x): the margin covers it
    assert used <= estimate, (used, estimate, xla)


# ---------------------------------------------------------------------------------------------- short video


def make_clip(path: Path, frames: int) -> Path:
    from bgm_jax.io.video_writer import VideoWriter

    rng = np.random.default_rng(3)
    with VideoWriter(path, width=W, height=H, fps=25) as writer:  # MP4 with +faststart: the index comes first
        for _ in range(frames):
            writer.write(rng.integers(0, 256, (H, W, 3), np.uint8))
    return path


def test_a_video_cut_short_finishes_with_both_counts_and_exit_1_unless_expected(
        folder, model_dir, cache_dir, capsys):
    clip = make_clip(folder / "full.mp4", frames=30)
    cut = folder / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])

    def video(out, *extra):
        return cli.main(["video", "--model", str(model_dir), "--compilation-cache", str(cache_dir), "--src", str(cut),
                         "--bgr", str(folder / "bgr.png"), "--pha", str(out), "--no-progress", *extra])

    assert video(folder / "pha") == 1
    err = capsys.readouterr().err
    decoded = len(list((folder / "pha").iterdir()))
    assert 0 < decoded < 30
    assert f"warning: {cut} ended after {decoded} of the 30 frames its container claims" in err
    assert "--allow-short-video" in err
    assert video(folder / "pha2", "--allow-short-video") == 0
    assert len(list((folder / "pha2").iterdir())) == decoded
    # a complete file is not short
    assert cli.main(["video", "--model", str(model_dir), "--compilation-cache", str(cache_dir), "--src", str(clip),
                     "--bgr", str(folder / "bgr.png"), "--pha", str(folder / "pha3"), "--no-progress"]) == 0
    assert len(list((folder / "pha3").iterdir())) == 30
