"""The prepared GPU run (tools/gpu_check.sh, issue 16) checked without a GPU: its dry run, the bench's
JSON report and device errors, and the smoke driver's coverage of every kernel and dtype."""
import json
import os
import subprocess
import sys

import pytest
import torch

import posetr
from posetr import cli
from posetr.profile import KERNEL_MODULES, Case, module_names, report
from posetr.tools import cuda_smoke

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_dry_run_names_every_step_and_checks_the_cpu_parts(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path), PYTHON=sys.executable)
    proc = subprocess.run(["bash", os.path.join(REPO, "tools", "gpu_check.sh"), "--dry-run"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    out = proc.stdout
    for step in ["FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16", "setup.py build_ext --inplace",
                 "-m pytest -m cuda", "compute-sanitizer --tool memcheck --error-exitcode 99",
                 "compute-sanitizer --tool racecheck --error-exitcode 99", "-m posetr.tools.cuda_smoke",
                 "-m posetr bench --device cuda", "pip install -q --no-index"]:
        assert step in out, f"the dry run does not name {step!r}"
    summary = (tmp_path / "summary.md").read_text()
    assert out.rstrip().endswith(summary.rstrip()), "the summary must be printed last"
    assert "| check: smoke driver on the CPU kernels | ok |" in summary
    assert "| check: bench JSON on the CPU (--quick) | ok |" in summary
    assert len(os.listdir(tmp_path)) <= 8, os.listdir(tmp_path)  # the device returns 8 files at most

    bench = json.loads((tmp_path / "bench.json").read_text())
    report.validate_report(bench)
    assert bench["errors"] == [] and bench["quick"]
    ops = {row["op"] for row in bench["rows"]}
    assert {"ms_deform_attn", "emsda", "linear_sum_assignment", "pairwise_oks", "oks_loss (log)",
            "oks_loss (linear)", "petr_step", "tfpose_step", "tfpose_encoder_msda", "poseur_step",
            "poseur_decoder_step"} <= ops
    assert {row["dtype"] for row in bench["rows"] if row["op"] == "ms_deform_attn"} == {"float32", "bfloat16"}
    # every kernel case has a bytes-moved model; the whole training steps (``*_step``) have none
    assert all(row["posetr_GBps"] is not None for row in bench["rows"] if not row["op"].endswith("_step"))


def _bench_error(capsys, *args):
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", *args])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("posetr bench: error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.skipif(posetr.HAS_CUDA_KERNELS and torch.cuda.is_available(), reason="CUDA works here")
def test_bench_on_cuda_without_cuda_is_one_line(capsys):
    err = _bench_error(capsys, "--device", "cuda", "--ops", "lap")
    assert "--device cuda: " in err


@pytest.mark.parametrize("args,message", [
    (["--device", "cdua"], "--device must be cpu, cuda or cuda:N, got 'cdua'"),
    (["--device", "meta"], "--device must be cpu, cuda or cuda:N, got 'meta'"),
    (["--ops", "lap", "msda"], "unknown op 'msda' for --ops; choose from ms_deform_attn, emsda, lap, oks, poet_match, petr_step"),
    (["--repeats", "0"], "--repeats must be at least 1, got 0"),
])
def test_bench_bad_arguments_are_one_line(capsys, args, message):
    assert message in _bench_error(capsys, *args)


def test_training_steps_follow_the_kernel_modules():
    names = module_names()
    assert names[:len(KERNEL_MODULES)] == KERNEL_MODULES and "petr_step" in names[len(KERNEL_MODULES):]


def _report_with_a_row():
    result = report.new_report("cpu", repeats=3, quick=True, copy_bandwidth=10e9)
    case = Case(op="op", shape="shape", mode="forward", setup=None, posetr=None, reference=None)
    report.add_row(result, case, 1e-3, 4e-3, nbytes=5_000_000)
    report.add_error(result, case, RuntimeError("CUDA error: an illegal memory access\nmore"))
    return result


def test_report_rows_bandwidth_and_errors():
    result = _report_with_a_row()
    report.validate_report(result)
    row = result["rows"][0]
    assert row["speedup"] == pytest.approx(4.0) and row["posetr_GBps"] == pytest.approx(5.0)
    assert row["copy_fraction"] == pytest.approx(0.5) and row["floor_s"] == pytest.approx(5e-4)
    assert result["errors"][0]["error"] == "RuntimeError: CUDA error: an illegal memory access"
    table = report.markdown(result)
    assert "| op | shape | forward | float32 | 1.000 | reference | 4.000 | 4.0x | 5.0 | 50.0% | 0.500 |" in table


@pytest.mark.parametrize("change,message", [
    (lambda r: r.pop("copy_GBps"), "report lacks copy_GBps"),
    (lambda r: r["rows"][0].update(bytes=1.5), "rows[0].bytes has type float"),
    (lambda r: r.update(repeats=True), "report.repeats has type bool"),
    (lambda r: r.update(schema="posetr-bench/0"), "report.schema must be 'posetr-bench/1'"),
])
def test_report_validation_names_the_field(change, message):
    result = _report_with_a_row()
    change(result)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        report.validate_report(result)


def test_report_script_renders_a_file_without_torch(tmp_path):
    path = tmp_path / "bench.json"
    report.write_json(str(path), _report_with_a_row())
    # -S -I: no site-packages, so no torch; the script must need only the standard library.
    proc = subprocess.run([sys.executable, "-S", "-I", os.path.join(REPO, "posetr", "profile", "report.py"), str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("posetr bench on cpu") and "| op | shape | forward |" in proc.stdout


def test_smoke_driver_covers_every_kernel_and_dtype():
    names = [call.name for call in cuda_smoke.calls()]
    for op in ("ms_deform_attn", "emsda", "pairwise_oks", "oks_loss (log)", "oks_loss (linear)"):
        for dtype in ("float64", "float32", "float16", "bfloat16"):
            assert any(name.startswith(f"{op} {dtype} ") for name in names), (op, dtype)
    for dtype in ("float32", "float64"):
        assert any(name.startswith(f"batched_linear_sum_assignment {dtype} ") and "padded" in name for name in names)
    for words in ("empty batch", "an empty level", "global memory", "out of range", "no pairs", "no people"):
        assert any(words in name for name in names), words
