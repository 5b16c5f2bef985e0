// The CPU forward of multi-scale deformable sampling (MSDA and EMSDA), and the
// sample gathering their backward passes share. See common/sampling.h for the layout.
//
// A row's samples are gathered, and their corner rows prefetched, before the
// channel loops: with scattered sampling locations the kernel waits on cache
// misses, and gathering first lets the misses of a row overlap.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "common/cpu_clones.h"
#include "common/dispatch.h"
#include "common/sampling.h"

namespace posetr {

// One in-map sample of a row: its corners, the element offset of its level in
// value (as its head reads it), its index in attention_weights and its level's size.
template <typename acc_t>
struct Sample {
  BilinearCorners<acc_t> c;
  int64_t level, idx, H, W;
};

// Asks for the first cache lines of a corner row.
template <typename T>
inline void prefetch_row(const T* row, int64_t D) {
  const char* bytes = reinterpret_cast<const char*>(row);
  const int64_t size = std::min<int64_t>(D * static_cast<int64_t>(sizeof(T)), 256);
  for (int64_t b = 0; b < size; b += 64) __builtin_prefetch(bytes + b);
}

// Collects the in-map samples of row (n, q, m) = `row` into `out` (room for L * P)
// and prefetches their corners in `value` and, when given, `grad_value`.
// Returns their number. param_t (locations, weights) is scalar_t or float.
template <typename acc_t, typename scalar_t, typename param_t>
int64_t gather_samples(const scalar_t* value, const acc_t* grad_value, const int64_t* shapes, const int64_t* starts,
                       const param_t* locations, int64_t row, const SamplingSizes& s, Sample<acc_t>* out) {
  const int64_t n = row / (s.Lq * s.M), m = row % s.M, stride = s.position_stride();
  int64_t count = 0;
  for (int64_t l = 0; l < s.L; ++l) {
    const int64_t H = shapes[2 * l], W = shapes[2 * l + 1];
    const int64_t level = s.level_offset(n, starts[l], m);
    for (int64_t p = 0; p < s.P; ++p) {
      Sample<acc_t>& sample = out[count];
      sample.idx = s.sample_index(row, l, p);
      if (!sample_corners<acc_t>(locations, sample.idx, H, W, sample.c)) continue;
      sample.level = level;
      sample.H = H;
      sample.W = W;
      for (int i = 0; i < 4; ++i) {
        if (!sample.c.valid[i]) continue;
        prefetch_row(value + level + sample.c.offset[i] * stride, s.D);
        if (grad_value != nullptr) prefetch_row(grad_value + level + sample.c.offset[i] * stride, s.D);
      }
      ++count;
    }
  }
  return count;
}

// One row of the forward: output[row, :] = sum over its samples of weight * bilinear(value).
// kD > 0 fixes the channel count at compile time.
template <typename scalar_t, typename param_t, int kD = 0>
POSETR_ALWAYS_INLINE void sampling_forward_row(const scalar_t* value, const int64_t* shapes, const int64_t* starts,
                                               const param_t* locations, const param_t* weights, scalar_t* output,
                                               const SamplingSizes& s, int64_t row, Sample<acc_type<scalar_t>>* samples,
                                               acc_type<scalar_t>* acc) {
  using acc_t = acc_type<scalar_t>;
  const int64_t D = kD > 0 ? kD : s.D, stride = s.position_stride();
  const int64_t count = gather_samples<acc_t>(value, nullptr, shapes, starts, locations, row, s, samples);
  std::fill_n(acc, D, acc_t(0));
  for (int64_t k = 0; k < count; ++k) {
    const Sample<acc_t>& sample = samples[k];
    const acc_t a = weights[sample.idx];
    for (int i = 0; i < 4; ++i) {
      if (!sample.c.valid[i]) continue;
      const scalar_t* v = value + sample.level + sample.c.offset[i] * stride;
      const acc_t w = a * sample.c.weight[i];
#pragma omp simd
      for (int64_t d = 0; d < D; ++d) acc[d] += w * static_cast<acc_t>(v[d]);
    }
  }
  scalar_t* dst = output + row * D;
  for (int64_t d = 0; d < D; ++d) dst[d] = static_cast<scalar_t>(acc[d]);
}

namespace {
// The float32 row, also compiled for AVX2 with FMA and picked when the library
// loads; D = 32 (8 heads x 32 channels in every model here) gets unrolled loops.
POSETR_TARGET_CLONES("arch=haswell", "default")
void sampling_forward_row_f32(const float* value, const int64_t* shapes, const int64_t* starts, const float* locations,
                              const float* weights, float* output, const SamplingSizes& s, int64_t row,
                              Sample<float>* samples, float* acc) {
  if (s.D == 32) {
    sampling_forward_row<float, float, 32>(value, shapes, starts, locations, weights, output, s, row, samples, acc);
  } else {
    sampling_forward_row<float, float>(value, shapes, starts, locations, weights, output, s, row, samples, acc);
  }
}
}  // namespace

// The order in which the forward visits the queries of an encoder (Lq == S: query q
// sits at value position q and samples around it). Row-major order slides a window
// of every level's rows around the query along a whole image row; at the PETR
// encoder shape those windows hold ~5 MB of value and leave the L2 cache before the
// next image row comes back to them. Vertical strips of about kStripWidth columns of
// the finest level (the same number of strips on every level) keep the windows to a
// strip's width, so each value row is fetched about once per strip instead of once per
// image row of queries. Any order gives the same output: each row is written once.
struct EncoderQueryOrder {
  static constexpr int64_t kStripWidth = 16;
  const int64_t* shapes;
  const int64_t* starts;
  int64_t L, strips;

  EncoderQueryOrder(const int64_t* shapes_, const int64_t* starts_, int64_t L_)
      : shapes(shapes_), starts(starts_), L(L_) {
    int64_t widest = 1;
    for (int64_t l = 0; l < L; ++l) widest = std::max(widest, shapes[2 * l + 1]);
    strips = (widest + kStripWidth - 1) / kStripWidth;
  }

  // The query visited k-th (k in [0, S)).
  int64_t query(int64_t k) const {
    int64_t l = L - 1;
    while (l > 0 && k < starts[l]) --l;
    const int64_t H = shapes[2 * l], W = shapes[2 * l + 1], t = k - starts[l];
    const int64_t width = (W + strips - 1) / strips;  // of every strip but the last
    const int64_t strip = t / (width * H), first_col = strip * width;
    const int64_t cols = std::min(width, W - first_col), r = t - strip * width * H;
    return starts[l] + (r / cols) * W + first_col + r % cols;
  }
};

// The forward over every row: one task per block of queries, each row (query, head)
// accumulated in acc_type and written once. An encoder's queries (Lq == S) are
// visited in EncoderQueryOrder, any other queries in order.
template <typename scalar_t, typename param_t>
void sampling_forward_cpu(const scalar_t* value, const int64_t* shapes, const int64_t* starts,
                          const param_t* locations, const param_t* weights, scalar_t* output,
                          const SamplingSizes& s) {
  using acc_t = acc_type<scalar_t>;
  const bool encoder = s.Lq == s.S && s.L > 0;
  const EncoderQueryOrder order(shapes, starts, s.L);
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, s.M * s.L * s.P * s.D));
  at::parallel_for(0, s.N * s.Lq, grain, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(s.D);
    std::vector<Sample<acc_t>> samples(s.L * s.P);
    for (int64_t nk = begin; nk < end; ++nk) {
      const int64_t n = nk / s.Lq, k = nk % s.Lq, q = encoder ? order.query(k) : k;
      for (int64_t row = (n * s.Lq + q) * s.M; row < (n * s.Lq + q + 1) * s.M; ++row) {
        if constexpr (std::is_same_v<scalar_t, float>) {
          sampling_forward_row_f32(value, shapes, starts, locations, weights, output, s, row, samples.data(),
                                   acc.data());
        } else {
          sampling_forward_row<scalar_t, param_t>(value, shapes, starts, locations, weights, output, s, row,
                                                  samples.data(), acc.data());
        }
      }
    }
  });
}

}  // namespace posetr
