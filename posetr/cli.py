"""Command line: ``python -m posetr <command>``.

Commands register themselves in ``COMMANDS`` as (help, add_arguments, run). Errors print one line,
``posetr <command>: error: ...``; ``--debug`` (or ``POSETR_DEBUG=1``) shows the traceback instead.
"""
import argparse
import os
import sys
import traceback


def _add_bench_arguments(parser):
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument("--ops", nargs="*", default=None,
                        help="profile modules to run (default: all: ms_deform_attn emsda lap oks, then every "
                             "model's training step, e.g. petr_step)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per case; the median is shown")
    parser.add_argument("--json", default=None, metavar="PATH",
                        help="also write the results as JSON (schema posetr-bench/1, posetr/profile/report.py), "
                             "rewritten after every case; `python -m posetr.profile.report PATH` prints it as markdown")
    parser.add_argument("--quick", action="store_true",
                        help="tiny shapes, no warm-up: checks that every case runs (numbers mean nothing)")


def _run_bench(args):
    from posetr.profile import run

    if args.repeats < 1:
        raise ValueError(f"--repeats must be at least 1, got {args.repeats}")
    report = run(device=args.device, ops=args.ops, repeats=args.repeats, quick=args.quick, json_path=args.json)
    return 1 if report["errors"] else 0


def _add_config_argument(parser, *, checkpoint):
    parser.add_argument("--config", default=None, metavar="NAME|PATH",
                        help="YAML config: a shipped config's name (e.g. petr_overfit_coco_sample; README: Models and "
                             "configs) or a file (default: " + ("the config stored in the checkpoint; a given config "
                                                                "must have the checkpoint's model section" if checkpoint
                                                                else "the demo, petr_demo_synthetic") + ")")
    parser.add_argument("--data-root", default=None,
                        help="dataset folder: images/ + annotations/*.json or the COCO 2017 layout "
                             "(default: the config's data.root; none there: synthetic stick figures)")
    parser.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                        help="config overrides over the file, values in YAML, validated like the file "
                             "(e.g. --set train.epochs=5 model.num_queries=100; put image files before --set)")
    if checkpoint:
        parser.add_argument("--checkpoint", required=True, help="last.pth or best.pth written by train")


def _load_config(args):
    from posetr.config import load_config
    from posetr.config_files import DEMO_CONFIG, resolve_config

    if args.config is None and getattr(args, "checkpoint", None) is not None:  # eval / predict: the checkpoint's
        from posetr.config import apply_overrides, config_from_dict, config_to_dict
        from posetr.engine.run import config_of_checkpoint

        cfg = config_of_checkpoint(args.checkpoint)
        if args.overrides:
            try:
                cfg = config_from_dict(apply_overrides(config_to_dict(cfg), args.overrides))
            except ValueError as exc:
                raise ValueError(f"--set: {exc}") from None
    else:
        cfg = load_config(resolve_config(DEMO_CONFIG if args.config is None else args.config),
                          overrides=args.overrides)
    if args.data_root is not None:
        cfg.data.root = args.data_root
    return cfg


def _add_train_arguments(parser):
    _add_config_argument(parser, checkpoint=False)
    parser.add_argument("--output-dir", default=None,
                        help="last.pth, best.pth, metrics.json, config.yaml, train.log, epochs.jsonl "
                             "(default: train.output_dir)")
    parser.add_argument("--resume", default=None, metavar="CHECKPOINT|auto",
                        help="checkpoint to continue training from (its lr and schedule continue), or 'auto': "
                             "the output directory's last.pth if there is one")


def _run_train(args):
    from posetr.config_files import DEMO_CONFIG, DEMO_MESSAGE
    from posetr.engine.evaluate import format_metric
    from posetr.engine.train import train

    if args.config is None:
        print(DEMO_MESSAGE.format(name=DEMO_CONFIG), flush=True)
    metrics = train(_load_config(args), output_dir=args.output_dir, resume=args.resume)
    if metrics:
        print(f"AP {format_metric(metrics['AP'])}")
    return 0


def _add_eval_arguments(parser):
    _add_config_argument(parser, checkpoint=True)
    parser.add_argument("--output-dir", default=None,
                        help="where eval_<checkpoint name>_metrics.json and ..._results.json go "
                             "(default: the checkpoint's folder)")


def _run_eval(args):
    from posetr.engine.evaluate import format_metric
    from posetr.engine.run import eval_prefix, run_eval

    cfg = _load_config(args)
    output_dir = args.output_dir or os.path.dirname(os.path.abspath(args.checkpoint))
    metrics = run_eval(cfg, checkpoint=args.checkpoint, output_dir=output_dir)
    print(f"AP {format_metric(metrics['AP'])} ({os.path.join(output_dir, eval_prefix(args.checkpoint))}metrics.json)")
    return 0


def _add_predict_arguments(parser):
    _add_config_argument(parser, checkpoint=True)
    parser.add_argument("--output-dir", default=None,
                        help="predictions.json and <name>_pose.png per image (default: predictions/ in the "
                             "checkpoint's folder, the run directory)")
    parser.add_argument("--score-threshold", type=float, default=None, metavar="S",
                        help="people scoring below S are left out of the JSON and the drawings "
                             "(default: the config's eval.draw_threshold, 0.3)")
    parser.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"],
                        help="where the model runs (default: the config's train.device, auto: cuda if available)")
    parser.add_argument("--coco-json", default=None, metavar="PATH",
                        help="also write the people in COCO's keypoint results format (image_id: the file stem "
                             "when all stems are distinct integers, else the input's position 1, 2, ...)")
    parser.add_argument("--boxes", default=None,
                        help='top-down models: JSON {"<image file name or path>": [[x, y, w, h(, score)], ...]} '
                             "of person boxes in pixels (default, and images not listed: the whole image as one box)")
    parser.add_argument("images", nargs="+", help="image files")


def _run_predict(args):
    import torch

    from posetr.engine.run import run_predict

    cfg = _load_config(args)
    if args.score_threshold is not None:
        if not 0.0 <= args.score_threshold <= 1.0:
            raise ValueError(f"--score-threshold must be in [0, 1], got {args.score_threshold}")
        cfg.eval.draw_threshold = args.score_threshold
    if args.device is not None:
        if args.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA device is available (torch.cuda.is_available() is False)")
        cfg.train.device = args.device
    output_dir = args.output_dir or os.path.join(os.path.dirname(os.path.abspath(args.checkpoint)), "predictions")
    entries = run_predict(cfg, checkpoint=args.checkpoint, images=args.images, output_dir=output_dir,
                          boxes=args.boxes, coco_json=args.coco_json)
    failed = [entry for entry in entries if "error" in entry]
    for entry in failed:
        print(f"posetr predict: skipped: {entry['error']}", file=sys.stderr)
    people = sum(len(entry.get("people", ())) for entry in entries)
    print(f"wrote {os.path.join(output_dir, 'predictions.json')} and {len(entries) - len(failed)} PNG(s): "
          f"{people} people scoring at least {cfg.eval.draw_threshold:g}"
          + (f"; COCO results {args.coco_json}" if args.coco_json else "")
          + (f"; skipped {len(failed)} unreadable image(s)" if failed else ""))
    return 1 if failed else 0


def _run_info(args):
    from posetr.environment import info

    info()
    return 0


COMMANDS = {
    "info": ("print posetr, torch and CUDA versions, which ops have CPU / CUDA kernels, and the thread count",
             lambda parser: None, _run_info),
    "bench": ("print a kernel-profile table of posetr vs reference ops at real model shapes",
              _add_bench_arguments, _run_bench),
    "train": ("train a model from a YAML config; writes checkpoints and metrics.json",
              _add_train_arguments, _run_train),
    "eval": ("evaluate a checkpoint with COCOeval (keypoints); writes metrics.json",
             _add_eval_arguments, _run_eval),
    "predict": ("detect people's keypoints in images; writes predictions.json and PNGs with skeletons",
                _add_predict_arguments, _run_predict),
}


_DEBUG_HELP = "show the full traceback of an error (also POSETR_DEBUG=1)"


def _error_line(exc: BaseException) -> str:
    """One line for ``exc``: the message of posetr's and the usual input / OS errors, the type for others."""
    from posetr.errors import PosetrError

    message = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, (PosetrError, ValueError, OSError)):
        return message
    return f"{type(exc).__name__}: {message} (--debug shows the traceback)"


def main(argv=None):
    from posetr import __version__

    parser = argparse.ArgumentParser(prog="posetr", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    parser.add_argument("--version", action="version", version=f"posetr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_arguments, _) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text)
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP)
        add_arguments(command)
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get("POSETR_DEBUG", "") not in ("", "0")
    try:
        return COMMANDS[args.command][2](args)
    except KeyboardInterrupt:
        if debug:
            raise
        parser.exit(130, f"posetr {args.command}: interrupted\n")
    except Exception as exc:  # one readable line, not a traceback (unless --debug)
        if debug:
            traceback.print_exc()
        code = 2 if isinstance(exc, (ValueError, FileNotFoundError)) else 1
        parser.exit(code, f"posetr {args.command}: error: {_error_line(exc)}\n")


if __name__ == "__main__":
    sys.exit(main())
