"""Command line: ``python -m posetr <command>``.

Commands register themselves in ``COMMANDS`` as (help, add_arguments, run).
"""
import argparse
import sys


def _add_bench_arguments(parser):
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--ops", nargs="*", default=None, help="ops to profile (default: all)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per case; the median is shown")


def _run_bench(args):
    from posetr.profile import run

    run(device=args.device, ops=args.ops, repeats=args.repeats)
    return 0


COMMANDS = {
    "bench": ("print a kernel-profile table of posetr vs reference ops at real model shapes",
              _add_bench_arguments, _run_bench),
}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="posetr", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_arguments, _) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text))
    args = parser.parse_args(argv)
    return COMMANDS[args.command][2](args)


if __name__ == "__main__":
    sys.exit(main())
