"""The profile's results as JSON (``python -m posetr bench --json PATH``) and as a markdown table:
``python3 posetr/profile/report.py PATH`` checks the file against the schema and prints the table.
Run by path it needs only the standard library (torch is imported where a report is made), so
tools/gpu_check.sh can render its summary even when the build or torch is broken.

Schema ``posetr-bench/1``, checked by :func:`validate_report`::

    {"schema": "posetr-bench/1", "date": ISO-8601 UTC, "device": "cuda", "device_name": str,
     "torch": str, "cuda": str | null, "python": str, "threads": int, "repeats": int, "quick": bool,
     "posetr_extension": bool, "posetr_cuda_kernels": bool,
     "copy_GBps": float,          # measured device-to-device copy, bytes read + written per second / 1e9
     "rows": [{"op", "shape", "mode", "dtype", "reference": str,   # what posetr is timed against
               "posetr_s", "reference_s": float,   # medians of `repeats` calls, seconds
               "speedup": float,                   # reference_s / posetr_s
               "bytes": int | null,                # bytes-moved model of posetr's work (posetr.profile.pass_bytes)
               "posetr_GBps": float | null,        # bytes / posetr_s / 1e9
               "copy_fraction": float | null,      # posetr_GBps / copy_GBps
               "floor_s": float | null}],          # bytes / copy bandwidth: the memory floor
     "errors": [{"op", "shape", "mode", "dtype", "error": str}]}
"""
import argparse
import datetime
import json
import os
import platform
import sys

SCHEMA = "posetr-bench/1"

_TOP = {"schema": str, "date": str, "device": str, "device_name": str, "torch": str, "cuda": (str, type(None)),
        "python": str, "threads": int, "repeats": int, "quick": bool, "posetr_extension": bool,
        "posetr_cuda_kernels": bool, "copy_GBps": float, "rows": list, "errors": list}
_OPTIONAL_FLOAT = (float, type(None))
_ROW = {"op": str, "shape": str, "mode": str, "dtype": str, "reference": str, "posetr_s": float,
        "reference_s": float, "speedup": float, "bytes": (int, type(None)), "posetr_GBps": _OPTIONAL_FLOAT,
        "copy_fraction": _OPTIONAL_FLOAT, "floor_s": _OPTIONAL_FLOAT}
_ERROR = {"op": str, "shape": str, "mode": str, "dtype": str, "error": str}


def new_report(device, repeats, quick, copy_bandwidth):
    """An empty report for ``device`` with the environment filled in; ``copy_bandwidth`` in bytes/s."""
    import torch

    from posetr._ext import HAS_CUDA_KERNELS, HAS_EXTENSION

    dev = torch.device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or platform.machine())
    return {
        "schema": SCHEMA,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": str(dev),
        "device_name": name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "quick": quick,
        "posetr_extension": HAS_EXTENSION,
        "posetr_cuda_kernels": HAS_CUDA_KERNELS,
        "copy_GBps": copy_bandwidth / 1e9,
        "rows": [],
        "errors": [],
    }


def device_label(report):
    return f"{report['device']} ({report['device_name']})"


def _case_fields(case):
    return {"op": case.op, "shape": case.shape, "mode": case.mode, "dtype": case.dtype}


def add_row(report, case, posetr_s, reference_s, nbytes):
    """Appends the row of ``case`` (times in seconds, ``nbytes`` its bytes-moved model or None)."""
    copy = report["copy_GBps"] * 1e9
    row = {**_case_fields(case), "reference": case.reference_name, "posetr_s": float(posetr_s),
           "reference_s": float(reference_s), "speedup": float(reference_s / posetr_s),
           "bytes": None if nbytes is None else int(nbytes), "posetr_GBps": None, "copy_fraction": None,
           "floor_s": None}
    if nbytes is not None:
        row["posetr_GBps"] = nbytes / posetr_s / 1e9
        row["copy_fraction"] = nbytes / posetr_s / copy
        row["floor_s"] = nbytes / copy
    report["rows"].append(row)
    return row


def add_error(report, case, exc):
    """Records that ``case`` raised ``exc``; returns the one-line message."""
    lines = str(exc).strip().splitlines()
    message = f"{type(exc).__name__}: {lines[0] if lines else ''}"
    report["errors"].append({**_case_fields(case), "error": message})
    return message


def _check_fields(obj, fields, where):
    if not isinstance(obj, dict):
        raise ValueError(f"{where} must be an object, got {type(obj).__name__}")
    missing = sorted(set(fields) - set(obj))
    if missing:
        raise ValueError(f"{where} lacks {', '.join(missing)}")
    for key, kind in fields.items():
        value = obj[key]
        # bool is an int in Python; only accept it where bool is asked for.
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise ValueError(f"{where}.{key} has type {type(value).__name__}, expected {kind}")


def validate_report(report):
    """Checks ``report`` against schema posetr-bench/1.

    Raises:
        ValueError: naming the first missing or mistyped field.
    """
    _check_fields(report, _TOP, "report")
    if report["schema"] != SCHEMA:
        raise ValueError(f"report.schema must be {SCHEMA!r}, got {report['schema']!r}")
    for i, row in enumerate(report["rows"]):
        _check_fields(row, _ROW, f"rows[{i}]")
    for i, error in enumerate(report["errors"]):
        _check_fields(error, _ERROR, f"errors[{i}]")


def write_json(path, report):
    """Validates ``report`` and writes it to ``path`` atomically (``PATH.tmp``, then a rename)."""
    validate_report(report)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def _ms(seconds):
    return "-" if seconds is None else f"{seconds * 1e3:.3f}"


def markdown(report):
    """The report as markdown: a header line, one table row per case, then any errors."""
    lines = [
        f"posetr bench on {device_label(report)}, torch {report['torch']}, CUDA {report['cuda']}, "
        f"{report['threads']} threads, median of {report['repeats']}, {report['date']}; "
        f"device copy {report['copy_GBps']:.1f} GB/s (read + written)",
        "",
        "| op | shape | mode | dtype | posetr ms | reference | reference ms | speed-up | posetr GB/s | of copy "
        "| memory floor ms |",
        "|---|---|---|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        gbps = "-" if r["posetr_GBps"] is None else f"{r['posetr_GBps']:.1f}"
        frac = "-" if r["copy_fraction"] is None else f"{100 * r['copy_fraction']:.1f}%"
        lines.append(f"| {r['op']} | {r['shape']} | {r['mode']} | {r['dtype']} | {_ms(r['posetr_s'])} | "
                     f"{r['reference']} | {_ms(r['reference_s'])} | {r['speedup']:.1f}x | {gbps} | {frac} | "
                     f"{_ms(r['floor_s'])} |")
    if report["errors"]:
        lines += ["", "Errors:"]
        lines += [f"- {e['op']} {e['shape']} {e['mode']} {e['dtype']}: {e['error']}" for e in report["errors"]]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description="Check a posetr bench JSON file and print it as markdown.")
    parser.add_argument("path", help="JSON written by `python -m posetr bench --json PATH`")
    args = parser.parse_args(argv)
    try:
        with open(args.path) as f:
            report = json.load(f)
        validate_report(report)
    except (OSError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
        parser.exit(2, f"report.py: error: {args.path}: {exc}\n")
    sys.stdout.write(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
