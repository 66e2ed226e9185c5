"""Command-line tools: momask-generate, momask-import-official, momask-bench."""
from __future__ import annotations

import argparse
import logging
import math
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # the model loads after every argument is checked
    from momask_model.generation.momask import MoMask
    from momask_model.generation.results import GenerationResult

log = logging.getLogger("momask")

SEED_MAX = 2**32 - 1
#: Where `--mcap` finds its writer: momask_ros registers one (setup.py entry point), so this package
#: stays free of ROS imports and of imports of the package built on top of it.
ROBOT_STREAM_WRITERS = "momask_model.robot_stream_writers"


class UsageError(ValueError):
    """A bad command-line argument: printed as one line, exit status 2, before any model work."""


class RobotStreamWriter(Protocol):
    """What the ``mcap`` entry point of `ROBOT_STREAM_WRITERS` loads: a writer of the robot stream of
    generated motions, with a check of its own options (``--robot``, ``--robot-description``) that runs
    before the model loads."""

    def __call__(self, args: argparse.Namespace, model: "MoMask", result: "GenerationResult", texts: list[str]) -> int:
        """Write the bags; returns the exit status."""

    def check(self, args: argparse.Namespace) -> None:
        """Raise ``ValueError`` (one line) when the options cannot work."""


def checked_device(spec: str) -> str:
    """The ``--device`` value checked by the one device parser (`select_device`), as a string.

    Raises:
        UsageError: an unknown device name, or one that is not available here.
    """
    from momask_model.generation.loading import DEVICE_CHOICES, DeviceError, DeviceUnavailable, select_device

    try:
        return str(select_device(spec))
    except DeviceError:
        raise UsageError(f"--device {spec!r} is not a device; use {DEVICE_CHOICES}") from None
    except DeviceUnavailable as exc:
        raise UsageError(f"--device: {exc}") from None


def check_writable(path: Path, flag: str, suffixes: tuple[str, ...]) -> Path:
    """``path`` has one of ``suffixes`` and a file can be created there (its folders are made now).

    Raises:
        UsageError: naming the flag, the path and the reason.
    """
    if path.suffix.lower() not in suffixes:
        raise UsageError(f"{flag} {path}: the file name must end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise UsageError(f"{flag} {path} is a folder; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".momask-write-test-"):
            pass
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot write there ({exc.strerror or exc})") from None
    return path


def check_generate_args(args: argparse.Namespace) -> None:
    """Every momask-generate argument that can be judged without the model (raises `UsageError`)."""
    from momask_model.generation.results import text_problem
    from momask_model.motion.render import VIDEO_SUFFIXES

    for text in args.text:
        problem = text_problem(text)
        if problem:
            raise UsageError(f"--text {text[:60]!r} {problem}")
    if args.seed is not None and not 0 <= args.seed <= SEED_MAX:
        raise UsageError(f"--seed {args.seed}: a seed is an integer from 0 to {SEED_MAX}")
    if args.timesteps is not None and args.timesteps < 1:
        raise UsageError(f"--timesteps {args.timesteps}: at least 1 step")
    for flag, value in (("--cond-scale", args.cond_scale), ("--res-cond-scale", args.res_cond_scale)):
        if value is not None and not (value >= 0 and math.isfinite(value)):
            raise UsageError(f"{flag} {value}: guidance scales are >= 0 (1 = text only, more = stronger guidance)")
    if args.temperature is not None and not (args.temperature > 0 and math.isfinite(args.temperature)):
        raise UsageError(f"--temperature {args.temperature}: must be > 0")
    if args.bundle is not None and not args.bundle.is_file():
        raise UsageError(f"--bundle {args.bundle}: no such file")
    if args.text_weights is not None and args.text_weights != "openai" and not Path(args.text_weights).exists():
        raise UsageError(f"--text-weights {args.text_weights}: no such file or folder (or use 'openai')")
    check_writable(args.out, "--out", (".npz",))
    if args.video is not None:
        check_writable(args.video, "--video", VIDEO_SUFFIXES)
    if args.bvh is not None:
        check_writable(args.bvh, "--bvh", (".bvh",))
    if args.mcap is not None:
        check_writable(args.mcap, "--mcap", (".mcap",))


def _parse_generate(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="momask-generate", description="Text -> 3D human motion with MoMask.")
    p.add_argument("--text", action="append", required=True,
                   help="prompt; repeat for a batch. Options per prompt (length=3s seed=4) and sequences "
                        "('a person walks length=3s | a person jumps') as the node's commands")
    p.add_argument("--seed", type=int, default=None, help=f"0..{SEED_MAX}; default: random")
    p.add_argument("--bundle", type=Path, default=None, help="bundle checkpoint (default: packaged demo model)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] | mps")
    p.add_argument("--out", type=Path, required=True, help="output .npz (features, joints, lengths, texts)")
    p.add_argument("--video", type=Path, default=None, help="stick-figure preview .mp4 or .gif")
    p.add_argument("--bvh", type=Path, default=None,
                   help="BVH export of the first motion (.bvh; reproduces the joint positions exactly)")
    p.add_argument("--mcap", type=Path, default=None,
                   help="also retarget onto --robot and write what momask_node would publish (JointState at "
                        "50 Hz, JointTrajectory, base pose, skeleton markers, status) as a ROS 2 MCAP bag; "
                        "a batch writes <stem>_<i>.mcap")
    p.add_argument("--robot", default="default", help="robot profile for --mcap: default, h1, g1, menagerie:<name> "
                                                      "or a profile YAML")
    p.add_argument("--robot-description", default=None, help="MJCF/URDF of the robot for --mcap (h1, g1: "
                                                             "your copy of Unitree's file)")
    p.add_argument("--timesteps", type=int, default=None, help=">= 1 (default: the bundle's, 10)")
    p.add_argument("--cond-scale", type=float, default=None, help="masked-transformer guidance, >= 0")
    p.add_argument("--res-cond-scale", type=float, default=None, help="residual-transformer guidance, >= 0")
    p.add_argument("--temperature", type=float, default=None, help="> 0")
    p.add_argument("--reference", action="store_true", help="run the reference loop instead of the fast path")
    p.add_argument("--text-weights", default=None,
                   help="override the text encoder's weights: CLIP file or 'openai', sentence-encoder folder/zip")
    p.add_argument("--allow-out-of-scope", action="store_true",
                   help="generate even when the bundle refuses a text (out of scope, or unknown words)")
    from momask_model.cli.requests import add_request_arguments

    add_request_arguments(p)
    return p.parse_args(argv)


def generate_main(argv: list[str] | None = None) -> int:
    """Entry point of `momask-generate`: bad arguments are one line on stderr and exit status 2, all
    of them found before the model loads (the bundle's config is read on its own for that)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = _parse_generate(argv)
    from momask_model.generation.bundle import BundleError, load_bundle, read_bundle_config
    from momask_model.generation.loading import default_bundle_path
    from momask_model.cli.requests import RequestError, RequestLimits, plan_request, save_request, serve

    bundle = args.bundle or default_bundle_path()
    try:
        check_generate_args(args)
        device = checked_device(args.device)
        config, meta = read_bundle_config(bundle)
        plan = plan_request(RequestLimits.of_bundle(config, meta), args)
        writer = _robot_stream_writer(args) if args.mcap else None
    except (UsageError, RequestError, BundleError) as exc:
        print(f"momask-generate: error: {exc}", file=sys.stderr)
        return 2
    from momask_model.motion.bvh import BvhExportError, save_bvh
    from momask_model.generation.results import GenerationError
    from momask_model.motion.render import save_video
    from momask_model.text.scope import check_text
    from momask_model.text.base import TextEncoderError

    try:
        model = load_bundle(bundle, device, text_weights=args.text_weights)
    except (BundleError, TextEncoderError) as exc:
        print(f"momask-generate: error: {exc}", file=sys.stderr)
        return 2
    # The node's rule (momask_model.text.scope.check_text), per segment: refuse what the bundle says it cannot do.
    refused = [r for r in (check_text(model, t) for t in plan.texts) if r is not None]
    for rejection in refused:
        if args.allow_out_of_scope:
            log.warning("%s: %s (generating anyway: --allow-out-of-scope)", rejection.reason, rejection.message)
        else:
            print(f"momask-generate: error: {rejection.reason}: {rejection.message}", file=sys.stderr)
    if refused and not args.allow_out_of_scope:
        print("momask-generate: error: nothing generated; pass --allow-out-of-scope to generate anyway",
              file=sys.stderr)
        return 2
    sampling = dict(timesteps=args.timesteps, cond_scale=args.cond_scale, res_cond_scale=args.res_cond_scale,
                    temperature=args.temperature)
    try:
        request = serve(model, plan, args, sampling)
    except (GenerationError, RequestError, ValueError) as exc:
        print(f"momask-generate: error: {exc}", file=sys.stderr)
        return 2
    result = request.result
    save_request(args.out, request)
    log.info("wrote %s (%d motion(s), lengths %s frames at %g fps)", args.out, len(result.lengths),
             [int(n) for n in result.lengths], result.fps)
    _, joints0 = result.motion(0)
    if args.video:
        save_video(joints0, args.video, fps=result.fps, title=request.texts[0], marks=request.marks)
        log.info("wrote %s", args.video)
    if args.bvh:
        try:
            save_bvh(joints0, args.bvh, fps=result.fps)
        except BvhExportError as exc:  # e.g. a KIT bundle (21 joints): the motion itself is written
            print(f"momask-generate: error: --bvh: {exc}", file=sys.stderr)
            return 2
        log.info("wrote %s", args.bvh)
    if writer is not None:
        # one text per motion: a sequence is one motion, named by its whole prompt
        texts = request.texts if len(request.texts) == len(result.lengths) else [" | ".join(request.texts)]
        return writer(args, model, result, texts)
    return 0


def _robot_stream_writer(args: argparse.Namespace) -> RobotStreamWriter:
    """The ``--mcap`` writer momask_ros registers, its own options (the robot) already checked.

    Raises:
        UsageError: no writer is installed, or it refuses its options.
    """
    from importlib.metadata import entry_points

    found = list(entry_points(group=ROBOT_STREAM_WRITERS, name="mcap"))
    try:
        if not found:
            raise ImportError(f"no '{ROBOT_STREAM_WRITERS}' entry point named 'mcap' is installed")
        writer: RobotStreamWriter = found[0].load()
    except ImportError as exc:
        raise UsageError(f"--mcap needs the momask_ros package and the ROS 2 message packages "
                         f"(requirements.txt): {exc}") from None
    try:
        writer.check(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return writer


def import_official_main(argv: list[str] | None = None) -> int:
    """Entry point of `momask-import-official` (official released checkpoints -> bundle)."""
    from momask_model.official.importer import main

    return main(argv)


def bench_main(argv: list[str] | None = None) -> int:
    """Entry point of `momask-bench` (generation latency/throughput, no checkpoint needed)."""
    from momask_model.cli.bench import main

    return main(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(generate_main())
