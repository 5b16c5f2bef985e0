"""#17 items 10-11: ``python -m posetr info`` / ``posetr.info()`` and ``--version``."""
import subprocess
import sys

import pytest

import posetr
from posetr import cli


def test_info_lists_versions_kernels_and_threads(capsys):
    facts = posetr.info()
    out = capsys.readouterr().out
    assert facts["torch"] in out and f"posetr: {posetr.__version__}" in out and "threads:" in out
    assert facts["extension loaded"] is True and facts["extension error"] is None
    for op in ("ms_deform_attn", "emsda_sample", "batched_linear_sum_assignment", "pairwise_oks", "oks"):
        assert facts["kernels"][op]["CPU"] is True
        assert f"  {op}: CPU yes, CUDA {'yes' if posetr.HAS_CUDA_KERNELS else 'no'}" in out
    assert not any(op.startswith("_") for op in facts["kernels"])  # backward ops are internal


def test_info_command_and_version():
    out = subprocess.run([sys.executable, "-m", "posetr", "info"], capture_output=True, text=True, check=True).stdout
    assert "extension loaded: True" in out and "ms_deform_attn: CPU yes" in out
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    version = subprocess.run([sys.executable, "-m", "posetr", "--version"], capture_output=True, text=True,
                             check=True).stdout
    assert version.startswith("posetr 0.1.0")


def test_bench_ops_accepts_the_names_its_table_prints():
    """#17 item 11: ``bench --ops`` takes a module name or an op name of the table it prints."""
    from posetr.profile import all_cases, table_name

    by_table = all_cases("cpu", ["linear_sum_assignment", "oks_loss"], quick=True)
    assert by_table and {table_name(c.op) for c in by_table} == {"linear_sum_assignment", "oks_loss"}
    assert [c.shape for c in all_cases("cpu", ["lap"], quick=True)] == \
        [c.shape for c in all_cases("cpu", ["linear_sum_assignment"], quick=True)]
    with pytest.raises(ValueError, match="unknown op 'nonexistent'.*linear_sum_assignment"):
        all_cases("cpu", ["nonexistent"], quick=True)
