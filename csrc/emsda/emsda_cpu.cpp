// EMSDA's fused sampling on the CPU: every head samples all C channels of the one
// un-projected value map (no M-fold copy); the per-head projection is a batched
// matmul in posetr/ops/emsda.py.
//
// Forward: common/sampling_cpu.h, shared with MSDA (value_heads = 1).
// Backward: every head of batch item n scatters into grad_value[n], so tasks own
// (n, channel block) pairs instead of heads: a task adds into grad_value[n, :, block]
// only and keeps its partial dot products (per sample and corner) in its own slice
// of a buffer; a second pass over samples sums the partial dots and writes
// grad_sampling_locations and grad_attention_weights. No two tasks write one address.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "common/dispatch.h"
#include "emsda/emsda_checks.h"
#include "common/sampling_cpu.h"

namespace posetr {
namespace {

// Channel blocks per batch item: enough (n, block) tasks to keep every thread busy
// when N is small, blocks of at least 16 channels so the inner loops stay vectorised.
int64_t channel_blocks(const SamplingSizes& s) {
  const int64_t wanted = (4 * at::get_num_threads() + s.N - 1) / s.N;
  return std::clamp<int64_t>(wanted, 1, std::max<int64_t>(1, s.D / 16));
}

template <typename scalar_t, typename param_t>
void scatter_blocks(const scalar_t* value, const int64_t* shapes, const int64_t* starts, const param_t* locations,
                    const param_t* weights, const scalar_t* grad_output, acc_type<scalar_t>* grad_value,
                    acc_type<scalar_t>* partial_dots, int64_t blocks, const SamplingSizes& s) {
  using acc_t = acc_type<scalar_t>;
  const int64_t C = s.D;
  const int64_t width = (C + blocks - 1) / blocks;
  const int64_t samples = s.N * s.Lq * s.M * s.L * s.P;
  at::parallel_for(0, s.N * blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> go(width);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / blocks, block = task % blocks;
      const int64_t c0 = block * width, c1 = std::min(C, c0 + width), cw = c1 - c0;
      acc_t* dots = partial_dots + block * samples * 4;
      // The task zeroes the slice it owns (grad_value is allocated uninitialised).
      for (int64_t i = 0; i < s.S; ++i) std::fill_n(grad_value + (n * s.S + i) * C + c0, cw, acc_t(0));
      for (int64_t q = 0; q < s.Lq; ++q) {
        const int64_t nq = n * s.Lq + q;
        for (int64_t m = 0; m < s.M; ++m) {
          const scalar_t* go_row = grad_output + (nq * s.M + m) * C + c0;
          for (int64_t d = 0; d < cw; ++d) go[d] = static_cast<acc_t>(go_row[d]);
          const acc_t* g = go.data();
          for (int64_t l = 0; l < s.L; ++l) {
            const int64_t H = shapes[2 * l], W = shapes[2 * l + 1];
            const int64_t level = (n * s.S + starts[l]) * C + c0;
            for (int64_t p = 0; p < s.P; ++p) {
              const int64_t idx = ((nq * s.M + m) * s.L + l) * s.P + p;
              acc_t* dot = dots + 4 * idx;
              std::fill_n(dot, 4, acc_t(0));
              BilinearCorners<acc_t> c;
              if (!sample_corners<acc_t>(locations, idx, H, W, c)) continue;
              const acc_t a = weights[idx];
              for (int i = 0; i < 4; ++i) {
                if (!c.valid[i]) continue;
                const scalar_t* v = value + level + c.offset[i] * C;
                acc_t* gv = grad_value + level + c.offset[i] * C;
                const acc_t w = a * c.weight[i];
                acc_t sum = 0;
#pragma omp simd reduction(+ : sum)
                for (int64_t d = 0; d < cw; ++d) {
                  sum += g[d] * static_cast<acc_t>(v[d]);
                  gv[d] += w * g[d];
                }
                dot[i] = sum;
              }
            }
          }
        }
      }
    }
  });
}

template <typename scalar_t, typename param_t>
void finish_samples(const int64_t* shapes, const param_t* locations, const param_t* weights,
                    const acc_type<scalar_t>* partial_dots, int64_t blocks, param_t* grad_locations,
                    param_t* grad_weights, const SamplingSizes& s) {
  using acc_t = acc_type<scalar_t>;
  const int64_t samples = s.N * s.Lq * s.M * s.L * s.P;
  at::parallel_for(0, samples, 2048, [&](int64_t begin, int64_t end) {
    for (int64_t idx = begin; idx < end; ++idx) {
      const int64_t l = (idx / s.P) % s.L;
      const int64_t H = shapes[2 * l], W = shapes[2 * l + 1];
      BilinearCorners<acc_t> c;
      if (!sample_corners<acc_t>(locations, idx, H, W, c)) continue;
      acc_t dot[4] = {0, 0, 0, 0};
      for (int64_t b = 0; b < blocks; ++b) {
        for (int i = 0; i < 4; ++i) dot[i] += partial_dots[(b * samples + idx) * 4 + i];
      }
      write_sample_grads(c, dot, H, W, static_cast<acc_t>(weights[idx]), idx, grad_locations, grad_weights);
    }
  });
}

at::Tensor emsda_sample_cpu(const at::Tensor& value, const at::Tensor& value_spatial_shapes,
                            const at::Tensor& value_level_start_index, const at::Tensor& sampling_locations,
                            const at::Tensor& attention_weights, int64_t im2col_step) {
  const SamplingInputs in = prepare_emsda_sample(value, value_spatial_shapes, value_level_start_index,
                                                 sampling_locations, attention_weights, im2col_step);
  const SamplingSizes& s = in.sizes;
  auto output = at::empty({s.N, s.Lq, s.M, s.D}, value.options());
  // With no value positions every sample reads zeros.
  if (output.numel() == 0 || s.S == 0) return output.zero_();
  POSETR_DISPATCH_SAMPLING_TYPES(value.scalar_type(), in.locations.scalar_type(), "emsda_sample_cpu", [&] {
    sampling_forward_cpu<scalar_t, param_t>(in.value.data_ptr<scalar_t>(), in.shapes.data_ptr<int64_t>(),
                                            in.starts.data_ptr<int64_t>(), in.locations.data_ptr<param_t>(),
                                            in.weights.data_ptr<param_t>(), output.data_ptr<scalar_t>(), s);
  });
  return output;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> emsda_sample_backward_cpu(
    const at::Tensor& value, const at::Tensor& value_spatial_shapes, const at::Tensor& value_level_start_index,
    const at::Tensor& sampling_locations, const at::Tensor& attention_weights, const at::Tensor& grad_output,
    int64_t im2col_step) {
  const SamplingInputs in = prepare_emsda_sample(value, value_spatial_shapes, value_level_start_index,
                                                 sampling_locations, attention_weights, im2col_step);
  const SamplingSizes& s = in.sizes;
  check_emsda_grad_output(grad_output, s, value);
  const auto go = grad_output.to(value.scalar_type()).contiguous();
  // grad_value and the partial dots are accumulated in float32 for half and bfloat16.
  const auto acc_options = value.options().dtype(value.scalar_type() == at::kDouble ? at::kDouble : at::kFloat);
  const bool work = go.numel() > 0 && value.numel() > 0;
  // scatter_blocks fills grad_value and the partial dots in full, zeroing each task's
  // grad_value slice itself: one pass over the memory instead of a fill, then the scatter.
  auto grad_value = work ? at::empty(value.sizes(), acc_options) : at::zeros(value.sizes(), acc_options);
  auto grad_locations = at::zeros_like(in.locations);
  auto grad_weights = at::zeros_like(in.weights);
  if (work) {
    const int64_t blocks = channel_blocks(s);
    auto partial_dots = at::empty({blocks, s.N * s.Lq * s.M * s.L * s.P, 4}, acc_options);
    POSETR_DISPATCH_SAMPLING_TYPES(value.scalar_type(), in.locations.scalar_type(), "emsda_sample_backward_cpu", [&] {
      using acc_t = acc_type<scalar_t>;
      const int64_t* shapes = in.shapes.data_ptr<int64_t>();
      const param_t* loc = in.locations.data_ptr<param_t>();
      const param_t* attn = in.weights.data_ptr<param_t>();
      scatter_blocks<scalar_t, param_t>(in.value.data_ptr<scalar_t>(), shapes, in.starts.data_ptr<int64_t>(), loc,
                                        attn, go.data_ptr<scalar_t>(), grad_value.data_ptr<acc_t>(),
                                        partial_dots.data_ptr<acc_t>(), blocks, s);
      finish_samples<scalar_t, param_t>(shapes, loc, attn, partial_dots.data_ptr<acc_t>(), blocks,
                                        grad_locations.data_ptr<param_t>(), grad_weights.data_ptr<param_t>(), s);
    });
  }
  return sampling_grads_like_inputs(grad_value, grad_locations, grad_weights, value, sampling_locations,
                                    attention_weights);
}

}  // namespace

TORCH_LIBRARY_IMPL(posetr, CPU, m) {
  m.impl("emsda_sample", &emsda_sample_cpu);
  m.impl("_emsda_sample_backward", &emsda_sample_backward_cpu);
}

}  // namespace posetr
