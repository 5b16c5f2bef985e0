// Multi-scale deformable attention on the CPU.
//
// Forward: one task per block of (n, q) rows; each (n, q, m) row accumulates its
// D channels in float32 (float64 for float64 inputs) and is written once.
// Backward: one task per (n, m) owns grad_value[n, :, m, :], so the scatter into
// grad_value needs no atomics; grad_sampling_locations and grad_attention_weights
// are written once per sample by the task that owns its head.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "common/bilinear.h"
#include "common/dispatch.h"
#include "ms_deform_attn/ms_deform_attn_checks.h"

namespace posetr {
namespace {

template <typename scalar_t>
void forward_rows(const scalar_t* value, const int64_t* shapes, const int64_t* starts, const scalar_t* locations,
                  const scalar_t* weights, scalar_t* output, const MsdaSizes& s) {
  using acc_t = acc_type<scalar_t>;
  const int64_t D = s.D, MD = s.M * s.D;
  const int64_t grain = std::max<int64_t>(1, 4096 / (s.M * s.L * s.P * std::max<int64_t>(D, 1)));
  at::parallel_for(0, s.N * s.Lq, grain, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(D);
    for (int64_t nq = begin; nq < end; ++nq) {
      const int64_t n = nq / s.Lq;
      for (int64_t m = 0; m < s.M; ++m) {
        std::fill(acc.begin(), acc.end(), acc_t(0));
        for (int64_t l = 0; l < s.L; ++l) {
          const int64_t H = shapes[2 * l], W = shapes[2 * l + 1];
          const scalar_t* level = value + ((n * s.S + starts[l]) * s.M + m) * D;
          for (int64_t p = 0; p < s.P; ++p) {
            const int64_t idx = ((nq * s.M + m) * s.L + l) * s.P + p;
            BilinearCorners<acc_t> c;
            if (!bilinear_corners<acc_t>(locations[2 * idx], locations[2 * idx + 1], H, W, c)) continue;
            const acc_t a = weights[idx];
            for (int i = 0; i < 4; ++i) {
              if (!c.valid[i]) continue;
              const scalar_t* v = level + c.offset[i] * MD;
              const acc_t w = a * c.weight[i];
              acc_t* out = acc.data();
#pragma omp simd
              for (int64_t d = 0; d < D; ++d) out[d] += w * static_cast<acc_t>(v[d]);
            }
          }
        }
        scalar_t* row = output + (nq * s.M + m) * D;
        for (int64_t d = 0; d < D; ++d) row[d] = static_cast<scalar_t>(acc[d]);
      }
    }
  });
}

template <typename scalar_t>
void backward_heads(const scalar_t* value, const int64_t* shapes, const int64_t* starts, const scalar_t* locations,
                    const scalar_t* weights, const scalar_t* grad_output, acc_type<scalar_t>* grad_value,
                    scalar_t* grad_locations, scalar_t* grad_weights, const MsdaSizes& s) {
  using acc_t = acc_type<scalar_t>;
  const int64_t D = s.D, MD = s.M * s.D;
  at::parallel_for(0, s.N * s.M, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> go(D);
    for (int64_t nm = begin; nm < end; ++nm) {
      const int64_t n = nm / s.M, m = nm % s.M;
      for (int64_t q = 0; q < s.Lq; ++q) {
        const int64_t nq = n * s.Lq + q;
        const scalar_t* go_row = grad_output + (nq * s.M + m) * D;
        for (int64_t d = 0; d < D; ++d) go[d] = static_cast<acc_t>(go_row[d]);
        for (int64_t l = 0; l < s.L; ++l) {
          const int64_t H = shapes[2 * l], W = shapes[2 * l + 1];
          const int64_t level_offset = ((n * s.S + starts[l]) * s.M + m) * D;
          for (int64_t p = 0; p < s.P; ++p) {
            const int64_t idx = ((nq * s.M + m) * s.L + l) * s.P + p;
            BilinearCorners<acc_t> c;
            if (!bilinear_corners<acc_t>(locations[2 * idx], locations[2 * idx + 1], H, W, c)) continue;
            const acc_t a = weights[idx];
            acc_t dot[4] = {0, 0, 0, 0};
            for (int i = 0; i < 4; ++i) {
              if (!c.valid[i]) continue;
              const scalar_t* v = value + level_offset + c.offset[i] * MD;
              acc_t* gv = grad_value + level_offset + c.offset[i] * MD;
              const acc_t w = a * c.weight[i];
              const acc_t* g = go.data();
              acc_t sum = 0;
#pragma omp simd reduction(+ : sum)
              for (int64_t d = 0; d < D; ++d) {
                sum += g[d] * static_cast<acc_t>(v[d]);
                gv[d] += w * g[d];
              }
              dot[i] = sum;
            }
            grad_weights[idx] = static_cast<scalar_t>(bilinear_combine(c, dot));
            acc_t gx = 0, gy = 0;
            bilinear_location_grad(c, dot, H, W, a, gx, gy);
            grad_locations[2 * idx] = static_cast<scalar_t>(gx);
            grad_locations[2 * idx + 1] = static_cast<scalar_t>(gy);
          }
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
  const MsdaSizes& s = in.sizes;
  auto output = at::empty({s.N, s.Lq, s.M * s.D}, value.options());
  if (output.numel() == 0) return output;
  POSETR_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_cpu", [&] {
    forward_rows<scalar_t>(in.value.data_ptr<scalar_t>(), in.shapes.data_ptr<int64_t>(),
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
