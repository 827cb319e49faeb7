"""A blinded A/B user study of two methods' results, as in the paper's supplement (F, Figures 4-7).

  bgm-jax study create STUDY.sqlite --originals DIR --results-a DIR --results-b DIR [--name-a A --name-b B]
      pairs every original with the two results of the same relative path (extension free), checks
      them all (missing or extra results, unreadable files, size mismatches: one report, nothing
      created) and writes the study file.
  bgm-jax study serve STUDY.sqlite [--host 127.0.0.1] [--port 8000]
      serves the rating page: raters enter a name (or a token from --raters), see the original and
      the two results left and right (placement random per rater and example, fixed on reload) and
      rate on five levels; votes are stored in the study file and can be changed.
  bgm-jax study report STUDY.sqlite [--out DIR]
      per-example mean scores (-10 = A much better ... +10 = B much better), the overall mean with a
      bootstrap 95 % interval, per-rater counts; with --out also examples.csv, raters.csv,
      report.json and chart.png.

See docs/study.md.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys

from bgm_jax.cli.common import positive_int
from bgm_jax.errors import InputError

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = parser.add_subparsers(dest="study_command", metavar="ACTION", required=True)

    create = sub.add_parser("create", help="pair and check the images and write a study file",
                            description="Pair originals with two methods' results and write a study file.")
    create.add_argument("study", metavar="STUDY", help="the study file to write (SQLite, e.g. study.sqlite)")
    create.add_argument("--originals", required=True, metavar="DIR", help="folder of original images")
    create.add_argument("--results-a", required=True, metavar="DIR",
                        help="method A's results, same relative paths (negative scores favour A)")
    create.add_argument("--results-b", required=True, metavar="DIR",
                        help="method B's results, same relative paths (positive scores favour B)")
    create.add_argument("--name-a", default="A", metavar="NAME", help="method A's name in the report (never shown to raters)")
    create.add_argument("--name-b", default="B", metavar="NAME", help="method B's name in the report (never shown to raters)")
    create.add_argument("--title", default="Which cut-out is better?", help="the page's title")
    create.add_argument("--question", help="the question above the images (default: which result is the "
                        "better cut-out of the person in the original)")
    create.add_argument("--raters", metavar="NAMES",
                        help="comma-separated names or tokens allowed to rate (default: anyone, under any name)")
    create.add_argument("--overwrite", action="store_true", help="replace STUDY if it exists (its votes are lost)")

    serve = sub.add_parser("serve", help="serve the rating page on this machine",
                           description="Serve the rating page; votes go into the study file.")
    serve.add_argument("study", metavar="STUDY", help="a study file written by `bgm-jax study create`")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0 for the network)")
    serve.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 picks a free one)")
    serve.add_argument("--access-log", action="store_true", help="log every request")

    report = sub.add_parser("report", help="mean scores, bootstrap interval, per-rater counts; CSV/JSON/PNG",
                            description="Summarise a study's votes.")
    report.add_argument("study", metavar="STUDY", help="a study file")
    report.add_argument("--out", metavar="DIR", help="write examples.csv, raters.csv, report.json and chart.png here")
    report.add_argument("--bootstrap", type=positive_int, default=10_000, metavar="N",
                        help="bootstrap draws for the 95%% interval (default: 10000)")
    report.add_argument("--seed", type=int, default=0, help="seed of the bootstrap draws (default: 0)")
    report.add_argument("--overwrite", action="store_true", help="replace report files in --out")


def run(args: argparse.Namespace) -> int:
    return {"create": run_create, "serve": run_serve, "report": run_report}[args.study_command](args)


def run_create(args: argparse.Namespace) -> int:
    from bgm_jax.study.pairing import find_examples, format_notes
    from bgm_jax.study.storage import DEFAULT_QUESTION, create_study

    examples = find_examples(args.originals, args.results_a, args.results_b)
    raters = [r for r in args.raters.split(",") if r.strip()] if args.raters is not None else None
    path = create_study(
        args.study, examples, method_a=args.name_a, method_b=args.name_b, title=args.title,
        question=args.question or DEFAULT_QUESTION, raters=raters, overwrite=args.overwrite,
    )
    for note in format_notes(examples):
        print(f"note: {note}", file=sys.stderr)
    who = f"{len(raters)} listed raters" if raters else "any rater name"
    print(f"{path}: study of {len(examples)} examples, {args.name_a} (A) vs {args.name_b} (B), {who}; "
          f"next: bgm-jax study serve {path}")
    return 0


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except (OSError, OverflowError) as e:
        sock.close()
        reason = getattr(e, "strerror", None) or str(e)
        raise InputError(f"cannot listen on {host}:{port} ({reason}); choose another --port or --host") from None
    sock.listen(128)
    return sock


def run_serve(args: argparse.Namespace) -> int:
    from bgm_jax.study.storage import Study

    try:
        import uvicorn

        from bgm_jax.study.app import create_app
    except ImportError as e:
        raise InputError(f"serving a study needs the 'study' extra ({e.name} is missing): "
                         "pip install 'bgm-jax[study]'") from None
    study = Study(args.study)
    folder = study.path.absolute().parent
    if not os.access(study.path, os.W_OK) or not os.access(folder, os.W_OK):
        # votes are written into the file, and SQLite's WAL files are created next to it
        raise InputError(f"{args.study}: the study file and its folder {folder} must be writable to store votes")
    problems = study.verify_images()
    if problems:
        listed = "\n".join(f"  - {p}" for p in problems[:40])
        raise InputError(f"{args.study}: {len(problems)} registered images are missing or changed since the study "
                         f"was created; restore them or create a new study:\n{listed}")
    loopback = args.host in LOOPBACK_HOSTS
    sock = _listen(args.host, args.port)
    port = sock.getsockname()[1]
    shown_host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"{args.study}: {len(study.examples)} examples, {len(study.votes())} votes so far; "
          f"rating page at http://{shown_host}:{port}/ (Ctrl-C stops)", flush=True)
    if not loopback:
        print("note: listening beyond this machine; anyone who reaches this address can rate"
              + ("" if study.settings.raters else " (create the study with --raters to limit who)"), flush=True)
    app = create_app(study, allowed_hosts=list(LOOPBACK_HOSTS) if loopback else None)
    config = uvicorn.Config(app, log_level="warning", access_log=args.access_log)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn shuts down gracefully, then re-raises the Ctrl-C it caught
        pass
    votes = study.votes()
    print(f"stopped; {len(votes)} votes from {len({v.rater for v in votes})} raters are in {args.study}")
    return 0


def run_report(args: argparse.Namespace) -> int:
    from bgm_jax.study.report import study_report, write_report
    from bgm_jax.study.storage import Study

    report = study_report(Study(args.study), n_bootstrap=args.bootstrap, seed=args.seed)
    print("\n".join(report.lines()))
    if args.out:
        for path in write_report(report, args.out, overwrite=args.overwrite):
            print(f"wrote {path}")
    return 0
