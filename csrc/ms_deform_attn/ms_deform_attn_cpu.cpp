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

#include <algorithm>
#include <vector>

#include "common/bilinear.h"
#include "common/dispatch.h"
#include "ms_deform_attn/ms_deform_attn_checks.h"

namespace posetr {
namespace {

// One in-map sample of an (n, q, m) row: its corners, the element offset of its
// level's (n, m) plane in value, its index in sampling_locations / attention_weights
// and its level's size.
template <typename acc_t>
struct Sample {
  BilinearCorners<acc_t> c;
  int64_t level, idx, H, W;
};

// Asks for the first cache lines of a corner row, so that the misses of all the
// samples of a row overlap instead of arriving one after another.
template <typename T>
inline void prefetch_row(const T* row, int64_t D) {
  const char* bytes = reinterpret_cast<const char*>(row);
  const int64_t size = std::min<int64_t>(D * static_cast<int64_t>(sizeof(T)), 256);
  for (int64_t b = 0; b < size; b += 64) __builtin_prefetch(bytes + b);
}

// Collects the in-map samples of row (n, q, m) = `row` into `out` and prefetches
// their corners in `value` (and in `grad_value`, when given). Returns their number.
template <typename acc_t, typename scalar_t>
int64_t gather_samples(const scalar_t* value, const acc_t* grad_value, const int64_t* shapes, const int64_t* starts,
                       const scalar_t* locations, int64_t row, int64_t n, int64_t m, const MsdaSizes& s,
                       Sample<acc_t>* out) {
  const int64_t MD = s.M * s.D;
  int64_t count = 0;
  for (int64_t l = 0; l < s.L; ++l) {
    const int64_t H = shapes[2 * l], W = shapes[2 * l + 1];
    const int64_t level = ((n * s.S + starts[l]) * s.M + m) * s.D;
    for (int64_t p = 0; p < s.P; ++p) {
      Sample<acc_t>& sample = out[count];
      sample.idx = (row * s.L + l) * s.P + p;
      if (!bilinear_corners<acc_t>(locations[2 * sample.idx], locations[2 * sample.idx + 1], H, W, sample.c)) continue;
      sample.level = level;
      sample.H = H;
      sample.W = W;
      for (int i = 0; i < 4; ++i) {
        if (!sample.c.valid[i]) continue;
        prefetch_row(value + level + sample.c.offset[i] * MD, s.D);
        if (grad_value != nullptr) prefetch_row(grad_value + level + sample.c.offset[i] * MD, s.D);
      }
      ++count;
    }
  }
  return count;
}

template <typename scalar_t>
void forward_rows(const scalar_t* value, const int64_t* shapes, const int64_t* starts, const scalar_t* locations,
                  const scalar_t* weights, scalar_t* output, const MsdaSizes& s) {
  using acc_t = acc_type<scalar_t>;
  const int64_t D = s.D, MD = s.M * s.D;
  const int64_t grain = std::max<int64_t>(1, 4096 / (s.M * s.L * s.P * std::max<int64_t>(D, 1)));
  at::parallel_for(0, s.N * s.Lq, grain, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(D);
    std::vector<Sample<acc_t>> samples(s.L * s.P);
    for (int64_t nq = begin; nq < end; ++nq) {
      const int64_t n = nq / s.Lq;
      for (int64_t m = 0; m < s.M; ++m) {
        const int64_t row = nq * s.M + m;
        const int64_t count = gather_samples<acc_t, scalar_t>(value, nullptr, shapes, starts, locations, row, n, m, s,
                                                              samples.data());
        std::fill(acc.begin(), acc.end(), acc_t(0));
        acc_t* out = acc.data();
        for (int64_t k = 0; k < count; ++k) {
          const Sample<acc_t>& sample = samples[k];
          const acc_t a = weights[sample.idx];
          for (int i = 0; i < 4; ++i) {
            if (!sample.c.valid[i]) continue;
            const scalar_t* v = value + sample.level + sample.c.offset[i] * MD;
            const acc_t w = a * sample.c.weight[i];
#pragma omp simd
            for (int64_t d = 0; d < D; ++d) out[d] += w * static_cast<acc_t>(v[d]);
          }
        }
        scalar_t* dst = output + row * D;
        for (int64_t d = 0; d < D; ++d) dst[d] = static_cast<scalar_t>(acc[d]);
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
    std::vector<Sample<acc_t>> samples(s.L * s.P);
    for (int64_t nm = begin; nm < end; ++nm) {
      const int64_t n = nm / s.M, m = nm % s.M;
      for (int64_t q = 0; q < s.Lq; ++q) {
        const int64_t row = (n * s.Lq + q) * s.M + m;
        const int64_t count = gather_samples<acc_t, scalar_t>(value, grad_value, shapes, starts, locations, row, n, m,
                                                              s, samples.data());
        const scalar_t* go_row = grad_output + row * D;
        for (int64_t d = 0; d < D; ++d) go[d] = static_cast<acc_t>(go_row[d]);
        const acc_t* g = go.data();
        for (int64_t k = 0; k < count; ++k) {
          const Sample<acc_t>& sample = samples[k];
          const acc_t a = weights[sample.idx];
          acc_t dot[4] = {0, 0, 0, 0};
          for (int i = 0; i < 4; ++i) {
            if (!sample.c.valid[i]) continue;
            const int64_t offset = sample.level + sample.c.offset[i] * MD;
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
          grad_weights[sample.idx] = static_cast<scalar_t>(bilinear_combine(sample.c, dot));
          acc_t gx = 0, gy = 0;
          bilinear_location_grad(sample.c, dot, sample.H, sample.W, a, gx, gy);
          grad_locations[2 * sample.idx] = static_cast<scalar_t>(gx);
          grad_locations[2 * sample.idx + 1] = static_cast<scalar_t>(gy);
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
