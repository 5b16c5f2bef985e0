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
#include <vector>

#include "common/dispatch.h"
#include "common/sampling_cpu.h"
#include "ms_deform_attn/ms_deform_attn_checks.h"

namespace posetr {
namespace {

template <typename scalar_t>
void backward_heads(const scalar_t* value, const int64_t* shapes, const int64_t* starts, const scalar_t* locations,
                    const scalar_t* weights, const scalar_t* grad_output, acc_type<scalar_t>* grad_value,
                    scalar_t* grad_locations, scalar_t* grad_weights, const SamplingSizes& s) {
  using acc_t = acc_type<scalar_t>;
  const int64_t D = s.D, stride = s.position_stride();
  at::parallel_for(0, s.N * s.M, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> go(D);
    std::vector<Sample<acc_t>> samples(s.L * s.P);
    for (int64_t nm = begin; nm < end; ++nm) {
      const int64_t n = nm / s.M, m = nm % s.M;
      for (int64_t q = 0; q < s.Lq; ++q) {
        const int64_t row = (n * s.Lq + q) * s.M + m;
        const int64_t count =
            gather_samples<acc_t, scalar_t>(value, grad_value, shapes, starts, locations, row, s, samples.data());
        const scalar_t* go_row = grad_output + row * D;
        for (int64_t d = 0; d < D; ++d) go[d] = static_cast<acc_t>(go_row[d]);
        const acc_t* g = go.data();
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
              sum += g[d] * static_cast<acc_t>(v[d]);
              gv[d] += w * g[d];
            }
            dot[i] = sum;
          }
          write_sample_grads(sample.c, dot, sample.H, sample.W, a, sample.idx, grad_locations, grad_weights);
        }
      }
    }
  });
}

at::Tensor ms_deform_attn_cpu(const at::Tensor& value, const at::Tensor& value_spatial_shapes,
                              const at::Tensor& value_level_start_index, const at::Tensor& sampling_locations,
                              const at::Tensor& attention_weights, int64_t im2col_step) {
  const MsdaInputs in = prepare_ms_deform_attn(value, value_spatial_shapes, value_level_start_index,
                                               sampling_locations, attention_weights, im2col_step);
  const SamplingSizes& s = in.sizes;
  auto output = at::empty({s.N, s.Lq, s.M * s.D}, value.options());
  if (output.numel() == 0) return output;
  POSETR_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_cpu", [&] {
    sampling_forward_cpu<scalar_t>(in.value.data_ptr<scalar_t>(), in.shapes.data_ptr<int64_t>(),
                           in.starts.data_ptr<int64_t>(), in.locations.data_ptr<scalar_t>(),
                           in.weights.data_ptr<scalar_t>(), output.data_ptr<scalar_t>(), s);
  });
  return output;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ms_deform_attn_backward_cpu(
    const at::Tensor& value, const at::Tensor& value_spatial_shapes, const at::Tensor& value_level_start_index,
    const at::Tensor& sampling_locations, const at::Tensor& attention_weights, const at::Tensor& grad_output,
    int64_t im2col_step) {
  const MsdaInputs in = prepare_ms_deform_attn(value, value_spatial_shapes, value_level_start_index,
                                               sampling_locations, attention_weights, im2col_step);
  MsdaGrads g = prepare_ms_deform_attn_grads(in, grad_output);
  if (g.grad_output.numel() > 0 && value.numel() > 0) {
    POSETR_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_backward_cpu", [&] {
      backward_heads<scalar_t>(in.value.data_ptr<scalar_t>(), in.shapes.data_ptr<int64_t>(),
                               in.starts.data_ptr<int64_t>(), in.locations.data_ptr<scalar_t>(),
                               in.weights.data_ptr<scalar_t>(), g.grad_output.data_ptr<scalar_t>(),
                               g.grad_value_acc.data_ptr<acc_type<scalar_t>>(), g.grad_locations.data_ptr<scalar_t>(),
                               g.grad_weights.data_ptr<scalar_t>(), in.sizes);
    });
  }
  return {g.grad_value_acc.to(value.scalar_type()), g.grad_locations, g.grad_weights};
}

}  // namespace

TORCH_LIBRARY_IMPL(posetr, CPU, m) {
  m.impl("ms_deform_attn", &ms_deform_attn_cpu);
  m.impl("_ms_deform_attn_backward", &ms_deform_attn_backward_cpu);
}

}  // namespace posetr
