"""Command-line tools: momask-generate, momask-import-official, momask-bench."""
from __future__ import annotations

import argparse
import logging
import sys
from importlib import resources
from pathlib import Path

log = logging.getLogger("momask")


def default_bundle_path() -> Path:
    """The demo bundle shipped inside the package (trained on real mocap, offline text encoder)."""
    return Path(str(resources.files("momask_model") / "assets" / "demo_bundle.pt"))


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is usable, else 'cpu'; anything else is passed through after checking."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"device {device!r} requested but CUDA is not available (use --device cpu or auto)")
    return device


def _parse_generate(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="momask-generate", description="Text -> 3D human motion with MoMask.")
    p.add_argument("--text", action="append", required=True,
                   help="prompt; repeat for a batch. Options per prompt (length=3s seed=4) and sequences "
                        "('a person walks length=3s | a person jumps') as the node's commands")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--bundle", type=Path, default=None, help="bundle checkpoint (default: packaged demo model)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--out", type=Path, required=True, help="output .npz (features, joints, lengths, texts)")
    p.add_argument("--video", type=Path, default=None, help="stick-figure preview .mp4 or .gif")
    p.add_argument("--bvh", type=Path, default=None, help="BVH export of the first motion")
    p.add_argument("--mcap", type=Path, default=None,
                   help="also retarget onto --robot and write what momask_node would publish (JointState at "
                        "50 Hz, JointTrajectory, base pose, skeleton markers, status) as a ROS 2 MCAP bag; "
                        "a batch writes <stem>_<i>.mcap")
    p.add_argument("--robot", default="default", help="robot profile for --mcap: default, h1, g1, menagerie:<name> "
                                                      "or a profile YAML")
    p.add_argument("--robot-description", default=None, help="MJCF/URDF of the robot for --mcap (h1, g1: "
                                                             "your copy of Unitree's file)")
    p.add_argument("--timesteps", type=int, default=None)
    p.add_argument("--cond-scale", type=float, default=None)
    p.add_argument("--res-cond-scale", type=float, default=None)
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--reference", action="store_true", help="run the reference loop instead of the fast path")
    p.add_argument("--text-weights", default=None, help="override CLIP weights: local file or 'openai'")
    from .cli_requests import add_request_arguments

    add_request_arguments(p)
    return p.parse_args(argv)


def generate_main(argv: list[str] | None = None) -> int:
    """Entry point of `momask-generate`."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = _parse_generate(argv)
    from .bundle import BundleError, load_bundle
    from .cli_requests import RequestError, save_request, serve
    from .generate import GenerationError
    from .render import save_bvh, save_video

    bundle = args.bundle or default_bundle_path()
    try:
        model = load_bundle(bundle, resolve_device(args.device), text_weights=args.text_weights)
    except BundleError as exc:
        print(f"momask-generate: {exc}", file=sys.stderr)
        return 2
    sampling = dict(timesteps=args.timesteps, cond_scale=args.cond_scale, res_cond_scale=args.res_cond_scale,
                    temperature=args.temperature)
    try:
        request = serve(model, args, sampling)
    except (GenerationError, RequestError, ValueError) as exc:
        print(f"momask-generate: {exc}", file=sys.stderr)
        return 2
    for text in request.texts:
        words = model.unknown_words(text)
        if words:
            log.warning("unknown words in %r: %s", text, ", ".join(words))
    result = request.result
    save_request(args.out, request)
    log.info("wrote %s (%d motion(s), lengths %s frames at %g fps)", args.out, len(result.lengths),
             list(result.lengths), result.fps)
    _, joints0 = result.motion(0)
    if args.video:
        save_video(joints0, args.video, fps=result.fps, title=request.texts[0], marks=request.marks)
        log.info("wrote %s", args.video)
    if args.bvh:
        save_bvh(joints0, args.bvh, fps=result.fps)
        log.info("wrote %s", args.bvh)
    if args.mcap:
        # one text per motion: a sequence is one motion, named by its whole prompt
        texts = request.texts if len(request.texts) == len(result.lengths) else [" | ".join(request.texts)]
        return _write_mcap(args, model, result, texts)
    return 0


def _write_mcap(args: argparse.Namespace, model, result, texts: list[str]) -> int:
    """The robot stream without a ROS graph: momask_ros's pipeline and recorder (ROS message packages needed)."""
    try:
        from momask_ros.recording import BagError, record_generation
        from momask_ros.robot import DescriptionNotFound, ProfileError
    except ImportError as exc:
        print(f"momask-generate: --mcap needs the ROS 2 message packages (requirements.txt): {exc}", file=sys.stderr)
        return 2
    try:
        paths = record_generation(args.mcap, model, result, texts, robot=args.robot,
                                  description=args.robot_description, seed=args.seed)
    except DescriptionNotFound as exc:  # say the CLI's own option, not the node parameter
        print(f"momask-generate: {str(exc).split(';')[0]}; give it with --robot-description /path/to/{exc.file_name}",
              file=sys.stderr)
        return 2
    except (ProfileError, BagError) as exc:
        print(f"momask-generate: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        log.info("wrote %s", path)
    return 0


def import_official_main(argv: list[str] | None = None) -> int:
    """Entry point of `momask-import-official` (official released checkpoints -> bundle)."""
    from .official import main

    return main(argv)


def bench_main(argv: list[str] | None = None) -> int:
    """Entry point of `momask-bench` (generation latency/throughput, no checkpoint needed)."""
    from .bench import main

    return main(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(generate_main())
