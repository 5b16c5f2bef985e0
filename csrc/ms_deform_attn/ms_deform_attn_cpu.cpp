// Multi-scale deformable attention on the CPU.
//
// Forward: common/sampling_cpu.h, shared with EMSDA.
// Backward: one task per (n, m) owns grad_value[n, :, m, :], so the scatter into
// grad_value needs no atomics; grad_sampling_locations and grad_attention_weights
// are written once per sample by the task that owns its head.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "common/dispatch.h"
#include "common/sampling_cpu.h"
#include "ms_deform_attn/ms_deform_attn_checks.h"

namespace posetr {
namespace {

// One (n, q, m) row of the backward: scatters into grad_value and writes the
// gradients of the row's sampling locations and attention weights. `go` holds
// grad_output[row] in acc_type. kD > 0 fixes the channel count at compile time.
// param_t (locations, weights and their gradients) is scalar_t or float.
template <typename scalar_t, typename param_t, int kD = 0>
POSETR_ALWAYS_INLINE void backward_row(const scalar_t* value, const int64_t* shapes, const int64_t* starts,
                                       const param_t* locations, const param_t* weights,
                                       const acc_type<scalar_t>* go, acc_type<scalar_t>* grad_value,
                                       param_t* grad_locations, param_t* grad_weights, const SamplingSizes& s,
                                       int64_t row, Sample<acc_type<scalar_t>>* samples) {
  using acc_t = acc_type<scalar_t>;
  const int64_t D = kD > 0 ? kD : s.D, stride = s.position_stride();
  const int64_t count = gather_samples<acc_t>(value, grad_value, shapes, starts, locations, row, s, samples);
  // The row's samples are contiguous; out-of-map ones keep these zeros.
  const int64_t first = s.sample_index(row, 0, 0), per_row = s.L * s.P;
  std::fill_n(grad_weights + first, per_row, param_t(0));
  std::fill_n(grad_locations + 2 * first, 2 * per_row, param_t(0));
  for (int64_t k = 0; k < count; ++k) {
    const Sample<acc_t>& sample = samples[k];
    const acc_t a = weights[sample.idx];
    acc_t dot[4] = {0, 0, 0, 0};
    for (int i = 0; i < 4; ++i) {
      if (!sample.c.valid[i]) continue;
      const int64_t offset = sample.level + sample.c.offset[i] * stride;
      const scalar_t* v = value + offset;
      acc_t* gv = grad_value + offset;
      const acc_t w = a * sample.c.weight[i];
      acc_t sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int64_t d = 0; d < D; ++d) {
        sum += go[d] * static_cast<acc_t>(v[d]);
        gv[d] += w * go[d];
      }
      dot[i] = sum;
    }
    write_sample_grads(sample.c, dot, sample.H, sample.W, a, sample.idx, grad_locations, grad_weights);
  }
}

// The float32 row, also compiled for AVX2 with FMA and picked when the library
// loads; D = 32 (8 heads x 32 channels in every model here) gets unrolled loops.
POSETR_TARGET_CLONES("arch=haswell", "default")
void backward_row_f32(const float* value, const int64_t* shapes, const int64_t* starts, const float* locations,
                      const float* weights, const float* go, float* grad_value, float* grad_locations,
                      float* grad_weights, const SamplingSizes& s, int64_t row, Sample<float>* samples) {
  if (s.D == 32) {
    backward_row<float, float, 32>(value, shapes, starts, locations, weights, go, grad_value, grad_locations,
                                   grad_weights, s, row, samples);
  } else {
    backward_row<float, float>(value, shapes, starts, locations, weights, go, grad_value, grad_locations, grad_weights,
                               s, row, samples);
  }
}

// How many rows ahead backward_heads prefetches a row's inputs and outputs
// (2 and 4 measured alike on the PETR encoder backward, 8 slower).
constexpr int64_t kRowsAhead = 4;

template <typename scalar_t, typename param_t>
void backward_heads(const scalar_t* value, const int64_t* shapes, const int64_t* starts, const param_t* locations,
                    const param_t* weights, const scalar_t* grad_output, acc_type<scalar_t>* grad_value,
                    param_t* grad_locations, param_t* grad_weights, const SamplingSizes& s) {
  using acc_t = acc_type<scalar_t>;
  at::parallel_for(0, s.N * s.M, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> go(s.D);
    std::vector<Sample<acc_t>> samples(s.L * s.P);
    for (int64_t nm = begin; nm < end; ++nm) {
      const int64_t n = nm / s.M, m = nm % s.M;
      for (int64_t q = 0; q < s.Lq; ++q) {
        const int64_t row = (n * s.Lq + q) * s.M + m;
        // A task walks its head's rows M rows apart, too far apart for the hardware
        // prefetcher: ask for the per-row inputs and outputs a few rows ahead.
        if (q + kRowsAhead < s.Lq) {
          const int64_t ahead = row + kRowsAhead * s.M, first = s.sample_index(ahead, 0, 0), per_row = s.L * s.P;
          prefetch_row(locations + 2 * first, 2 * per_row);
          prefetch_row(weights + first, per_row);
          prefetch_row(grad_output + ahead * s.D, s.D);
          prefetch_row(grad_locations + 2 * first, 2 * per_row);
          prefetch_row(grad_weights + first, per_row);
        }
        const scalar_t* go_row = grad_output + row * s.D;
        for (int64_t d = 0; d < s.D; ++d) go[d] = static_cast<acc_t>(go_row[d]);
        if constexpr (std::is_same_v<scalar_t, float>) {
          backward_row_f32(value, shapes, starts, locations, weights, go.data(), grad_value, grad_locations,
                           grad_weights, s, row, samples.data());
        } else {
          backward_row<scalar_t, param_t>(value, shapes, starts, locations, weights, go.data(), grad_value,
                                          grad_locations, grad_weights, s, row, samples.data());
        }
      }
    }
  });
}

at::Tensor ms_deform_attn_cpu(const at::Tensor& value, const at::Tensor& value_spatial_shapes,
                              const at::Tensor& value_level_start_index, const at::Tensor& sampling_locations,
                              const at::Tensor& attention_weights, int64_t im2col_step) {
  const SamplingInputs in = prepare_ms_deform_attn(value, value_spatial_shapes, value_level_start_index,
                                                   sampling_locations, attention_weights, im2col_step);
  const SamplingSizes& s = in.sizes;
  auto output = at::empty({s.N, s.Lq, s.M * s.D}, value.options());
  if (output.numel() == 0) return output;
  POSETR_DISPATCH_SAMPLING_TYPES(value.scalar_type(), in.locations.scalar_type(), "ms_deform_attn_cpu", [&] {
    sampling_forward_cpu<scalar_t, param_t>(in.value.data_ptr<scalar_t>(), in.shapes.data_ptr<int64_t>(),
                                            in.starts.data_ptr<int64_t>(), in.locations.data_ptr<param_t>(),
                                            in.weights.data_ptr<param_t>(), output.data_ptr<scalar_t>(), s);
  });
  return output;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ms_deform_attn_backward_cpu(
    const at::Tensor& value, const at::Tensor& value_spatial_shapes, const at::Tensor& value_level_start_index,
    const at::Tensor& sampling_locations, const at::Tensor& attention_weights, const at::Tensor& grad_output,
    int64_t im2col_step) {
  const SamplingInputs in = prepare_ms_deform_attn(value, value_spatial_shapes, value_level_start_index,
                                                   sampling_locations, attention_weights, im2col_step);
  MsdaGrads g = prepare_ms_deform_attn_grads(in, grad_output);
  if (g.work) {
    POSETR_DISPATCH_SAMPLING_TYPES(value.scalar_type(), in.locations.scalar_type(), "ms_deform_attn_backward_cpu", [&] {
      backward_heads<scalar_t, param_t>(in.value.data_ptr<scalar_t>(), in.shapes.data_ptr<int64_t>(),
                                        in.starts.data_ptr<int64_t>(), in.locations.data_ptr<param_t>(),
                                        in.weights.data_ptr<param_t>(), g.grad_output.data_ptr<scalar_t>(),
                                        g.grad_value_acc.data_ptr<acc_type<scalar_t>>(),
                                        g.grad_locations.data_ptr<param_t>(), g.grad_weights.data_ptr<param_t>(),
                                        in.sizes);
    });
  }
  return sampling_grads_like_inputs(g.grad_value_acc, g.grad_locations, g.grad_weights, value, sampling_locations,
                                    attention_weights);
}

}  // namespace

TORCH_LIBRARY_IMPL(posetr, CPU, m) {
  m.impl("ms_deform_attn", &ms_deform_attn_cpu);
  m.impl("_ms_deform_attn_backward", &ms_deform_attn_backward_cpu);
}

}  // namespace posetr
