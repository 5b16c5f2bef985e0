"""EMSDA profile cases at Poseur's decoder shape, and a peak-memory probe.

posetr's fused :func:`posetr.ops.emsda` is timed against Poseur's formulation on
posetr's own kernel: repeat the value once per head, :func:`posetr.ops.ms_deform_attn`
with D = C, per-head einsum projection. Bytes moved (posetr.profile.pass_bytes): reads value,
sampling_locations, attention_weights and the projection's weight and bias, writes the
[N, Lq, M * D] output; the backward writes a gradient of each of the five.

Peak memory of one forward+backward, each variant in a fresh process (max RSS), and
the time of the sampling and the projection alone::

    python -m posetr.profile.emsda --memory
    python -m posetr.profile.emsda --components
"""
import argparse
import json
import resource
import subprocess
import sys

import torch

from posetr.ops.emsda import emsda
from posetr.ops.ms_deform_attn import ms_deform_attn
from posetr.profile import both_modes, forward_backward, forward_only
from posetr.profile.ms_deform_attn import attention_bytes

# (name, crops N, levels (H, W), queries Lq, channels C, heads M, points P)
SHAPES = [
    # 256x192 crops, strides 4, 8, 16, 32; 17 keypoints x (1 + 3 noisy copies) in training.
    ("Poseur decoder", 16, [(64, 48), (32, 24), (16, 12), (8, 6)], 68, 256, 8, 4),
]
QUICK_SHAPES = [("quick", 2, [(6, 8), (3, 4)], 5, 16, 4, 2)]


def make_inputs(N, levels, Lq, C, M, P, device, dtype=torch.float32, requires_grad=False, seed=0):
    """Random EMSDA inputs: value, shapes, starts, locations, weights, W [M, C, C // M], b."""
    gen = torch.Generator().manual_seed(seed)
    shapes = torch.tensor(levels, dtype=torch.int64)
    areas = shapes[:, 0] * shapes[:, 1]
    starts = torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]])
    S, L, D = int(areas.sum()), len(levels), C // M
    value = torch.randn(N, S, C, generator=gen)
    locations = torch.rand(N, Lq, M, L, P, 2, generator=gen)
    weights = torch.rand(N, Lq, M, L, P, generator=gen)
    weights = weights / weights.sum((-1, -2), keepdim=True)
    weight = torch.randn(M, C, D, generator=gen) / C**0.5
    bias = torch.randn(M, D, generator=gen)
    tensors = [
        t.to(device=device, dtype=dtype).requires_grad_(requires_grad)
        for t in (value, locations, weights, weight, bias)
    ]
    value, locations, weights, weight, bias = tensors
    return value, shapes.to(device), starts.to(device), locations, weights, weight, bias


def repeat_msda_einsum(value, shapes, starts, locations, weights, weight, bias):
    """Poseur's formulation on posetr's MSDA kernel: the reference EMSDA is timed against."""
    N, S, C = value.shape
    Lq, M = locations.shape[1:3]
    repeated = value[:, :, None, :].repeat(1, 1, M, 1)
    sampled = ms_deform_attn(repeated, shapes, starts, locations, weights).view(N, Lq, M, C)
    return (torch.einsum("nqmc,mcd->nqmd", sampled, weight) + bias).flatten(2)


VARIANTS = {"posetr": emsda, "reference": repeat_msda_einsum}


def cases(device, quick=False):
    result = []
    for name, N, levels, Lq, C, M, P in QUICK_SHAPES if quick else SHAPES:
        result += both_modes(
            op="emsda",
            shape=name,
            reference_name="repeat + MSDA + einsum",
            setup=lambda grad, N=N, levels=levels, Lq=Lq, C=C, M=M, P=P: make_inputs(
                N, levels, Lq, C, M, P, device, requires_grad=grad
            ),
            posetr=VARIANTS["posetr"],
            reference=VARIANTS["reference"],
            bytes_model=lambda inputs, backward: attention_bytes(inputs, inputs[5].shape[2], backward),
        )
    return result


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _measure(variant):
    """Peak RSS of one CPU forward+backward of `variant` at the first shape, in this process."""
    _, N, levels, Lq, C, M, P = SHAPES[0]
    inputs = make_inputs(N, levels, Lq, C, M, P, "cpu", requires_grad=True)
    before = _rss_bytes()
    forward_backward(VARIANTS[variant])(inputs)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return dict(variant=variant, peak_rss_mib=peak / 2**20, peak_above_inputs_mib=(peak - before) / 2**20)


def peak_memory():
    """{variant: measurement}, each variant measured in a fresh subprocess."""
    results = {}
    for variant in VARIANTS:
        out = subprocess.run(
            [sys.executable, "-m", "posetr.profile.emsda", "--measure", variant],
            check=True,
            capture_output=True,
            text=True,
        )
        results[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    return results


def components(repeats=5):
    """Median ms of EMSDA's two halves alone (sampling op, einsum projection), forward and
    forward+backward, at the first shape on the CPU: how much a fused projection could save."""
    from posetr.ops.emsda import emsda_sample
    from posetr.profile import time_call

    _, N, levels, Lq, C, M, P = SHAPES[0]
    inputs = make_inputs(N, levels, Lq, C, M, P, "cpu", requires_grad=True)
    value, shapes, starts, locations, weights, weight, bias = inputs
    sampled = emsda_sample(value, shapes, starts, locations, weights).detach().requires_grad_(True)

    def sample(inputs):
        return emsda_sample(*inputs[:5])

    def project(inputs):
        return torch.einsum("nqmc,mcd->nqmd", inputs[0], inputs[1]) + inputs[2]

    sample_inputs = (value, shapes, starts, locations, weights)
    project_inputs = (sampled, weight, bias)
    rows = {
        "sampling forward": (forward_only(lambda *a: sample(a)), sample_inputs),
        "projection forward": (forward_only(lambda *a: project(a)), project_inputs),
        "sampling forward+backward": (forward_backward(lambda *a: sample(a)), sample_inputs),
        "projection forward+backward": (forward_backward(lambda *a: project(a)), project_inputs),
    }
    return {name: time_call(fn, inputs, "cpu", repeats) * 1e3 for name, (fn, inputs) in rows.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--memory", action="store_true", help="peak RSS of each variant, one process each")
    parser.add_argument("--components", action="store_true", help="time the sampling and the projection alone")
    parser.add_argument("--measure", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(_measure(args.measure)))
    elif args.components:
        for name, ms in components().items():
            print(f"{name:<30}{ms:10.1f} ms")
    elif args.memory:
        results = peak_memory()
        for r in results.values():
            print(
                f"{r['variant']:<10} peak RSS {r['peak_rss_mib']:8.1f} MiB, "
                f"above inputs {r['peak_above_inputs_mib']:8.1f} MiB"
            )
        ratio = results["reference"]["peak_above_inputs_mib"] / results["posetr"]["peak_above_inputs_mib"]
        print(f"reference / posetr (above inputs): {ratio:.1f}x")
    else:
        parser.print_help()


if __name__ == "__main__":
    main()
