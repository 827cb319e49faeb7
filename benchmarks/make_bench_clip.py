"""Write the synthetic clip the end-to-end benchmarks use (no downloads).

    python benchmarks/make_bench_clip.py --out /tmp/bench720 --size 1280x720 --frames 60

Writes OUT/clip.mp4 (H.264, 30 fps, a subject moving over a static background, with a 440 Hz AAC
tone so the audio copy is part of the measured work) and OUT/bgr.png (the clean plate).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import av
import numpy as np
from PIL import Image

from bgm_jax.datasets.synthetic import composite, make_clip

AUDIO_RATE = 48000


def write_clip(path: Path, frames: np.ndarray, fps: int) -> None:
    height, width = frames.shape[1:3]
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps, options={"crf": "18", "preset": "medium"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = container.add_stream("aac", rate=AUDIO_RATE)
        audio.layout = "stereo"
        for image in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(video.encode(None))
        seconds = len(frames) / fps
        t = np.arange(int(seconds * AUDIO_RATE)) / AUDIO_RATE
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = AUDIO_RATE, 0
        container.mux(audio.encode(frame))
        container.mux(audio.encode(None))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    clip = make_clip(args.seed, num_frames=args.frames, height=height, width=width)
    frames = np.stack([composite(f, p, clip["bgr"]) for f, p in zip(clip["fgr"], clip["pha"])])
    write_clip(out / "clip.mp4", frames, args.fps)
    Image.fromarray(clip["bgr"]).save(out / "bgr.png")
    print(f"wrote {out / 'clip.mp4'} ({args.frames} frames {width}x{height} at {args.fps} fps) and {out / 'bgr.png'}")


if __name__ == "__main__":
    main()
