// OKS ops on the CPU.
//
// Loops are laid out so that the exp of every keypoint term runs in one long
// vectorised loop (the polynomial exp of oks_math.h); the per-keypoint-type and
// per-person factors are applied in short loops of multiplies.
//
// pairwise_oks: predictions are transposed once to [B, K, N] (x and y apart); one task
// per (person, block of predictions) sums exp over the person's labelled keypoints
// for all predictions of the block and writes its part of the output column
// out[b, :, m], so no two tasks write one address.
// oks / _oks_backward: one task per block of matched pairs computes the squared
// distances, then the terms, then per pair the OKS (and the K gradient rows).
// Sums run in float32 for half and bfloat16 inputs (float64 for float64). A task
// holds at least kGrainTerms keypoint terms: the PETR-sized loss (600 pairs) runs on
// the calling thread, where waking the thread pool would cost more than it saves.
// Float32 loops are also compiled for AVX2 (GCC target_clones, picked at load time).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "common/cpu_clones.h"
#include "common/dispatch.h"
#include "oks/oks_checks.h"
#include "oks/oks_math.h"

#define POSETR_OKS_CLONES POSETR_TARGET_CLONES("avx2", "default")
#define POSETR_OKS_INLINE inline __attribute__((always_inline))

namespace posetr {
namespace {

constexpr int64_t kGrainTerms = 16384;

// Predictions of one person's column block: rows [n0, n1) of batch item b; xs, ys are
// [K, N] for that item. Writes out[n * M] (the output column) for n in [n0, n1).
template <typename scalar_t, typename acc_t>
POSETR_OKS_INLINE void pairwise_person(const acc_t* xs, const acc_t* ys, const scalar_t* gt, const bool* visible,
                                       acc_t inv_area, const acc_t* inv_var, int64_t N, int64_t K, int64_t M,
                                       int64_t n0, int64_t n1, acc_t* acc, scalar_t* out) {
  const int64_t len = n1 - n0;
  std::fill(acc, acc + len, acc_t(0));
  int count = 0;
  for (int64_t k = 0; k < K; ++k) {
    if (!visible[k]) continue;
    ++count;
    const acc_t gx = static_cast<acc_t>(gt[2 * k]), gy = static_cast<acc_t>(gt[2 * k + 1]);
    const acc_t scale = inv_var[k] * inv_area;
    const acc_t* x = xs + k * N + n0;
    const acc_t* y = ys + k * N + n0;
#pragma omp simd
    for (int64_t n = 0; n < len; ++n) acc[n] += oks_term(x[n], y[n], gx, gy, scale);
  }
  for (int64_t n = 0; n < len; ++n) out[(n0 + n) * M] = static_cast<scalar_t>(oks_mean(acc[n], count));
}

// pairwise_block: pairwise_person, with the float32 overload compiled for AVX2 too.
template <typename scalar_t, typename acc_t>
void pairwise_block(const acc_t* xs, const acc_t* ys, const scalar_t* gt, const bool* visible, acc_t inv_area,
                    const acc_t* inv_var, int64_t N, int64_t K, int64_t M, int64_t n0, int64_t n1, acc_t* acc,
                    scalar_t* out) {
  pairwise_person<scalar_t, acc_t>(xs, ys, gt, visible, inv_area, inv_var, N, K, M, n0, n1, acc, out);
}

POSETR_OKS_CLONES void pairwise_block(const float* xs, const float* ys, const float* gt, const bool* visible,
                                      float inv_area, const float* inv_var, int64_t N, int64_t K, int64_t M, int64_t n0,
                                      int64_t n1, float* acc, float* out) {
  pairwise_person<float, float>(xs, ys, gt, visible, inv_area, inv_var, N, K, M, n0, n1, acc, out);
}

// Matched pairs [begin, end): out[i] = transform(OKS_i) or, when grad_pred is given,
// grad_pred[i] = grad_out[i] * d transform(OKS_i) / d pred[i]. `terms` holds (end - begin) * K values.
template <typename scalar_t, typename acc_t>
POSETR_OKS_INLINE void matched_pairs(const scalar_t* pred, const scalar_t* gt, const uint8_t* visible,
                                     const acc_t* area, const acc_t* inv_var, OksTransform transform, acc_t eps,
                                     int64_t K, int64_t begin, int64_t end, acc_t* terms, scalar_t* out,
                                     const scalar_t* grad_out, scalar_t* grad_pred) {
  const int64_t count_pairs = end - begin, n = count_pairs * K;
  const scalar_t* p = pred + begin * K * 2;
  const scalar_t* g = gt + begin * K * 2;
  const uint8_t* v = visible + begin * K;
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) terms[j] = oks_sq_dist<acc_t>(p[2 * j], p[2 * j + 1], g[2 * j], g[2 * j + 1]);
  for (int64_t i = 0; i < count_pairs; ++i) {
    const acc_t inv_area = oks_inv_area(area[begin + i]);
    acc_t* t = terms + i * K;
#pragma omp simd
    for (int64_t k = 0; k < K; ++k) t[k] *= inv_var[k] * inv_area;
  }
  // Unlabelled keypoints' terms are 0, whatever their coordinates (NaN included).
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) terms[j] = v[j] ? oks_exp_neg(terms[j]) : acc_t(0);
  for (int64_t i = 0; i < count_pairs; ++i) {
    const acc_t* t = terms + i * K;
    acc_t sum = 0;
    int count = 0;
    for (int64_t k = 0; k < K; ++k) {
      sum += t[k];
      count += v[i * K + k];
    }
    const acc_t oks = oks_mean(sum, count);
    if (grad_pred == nullptr) {
      out[begin + i] = static_cast<scalar_t>(oks_transform(oks, transform, eps));
      continue;
    }
    // d out_i / d term_k = transform'(OKS) / count for a labelled keypoint k, else 0.
    const acc_t d_term = count > 0 ? static_cast<acc_t>(grad_out[begin + i]) * oks_transform_grad(oks, transform, eps) /
                                         static_cast<acc_t>(count)
                                   : acc_t(0);
    const acc_t inv_area = oks_inv_area(area[begin + i]);
    const scalar_t* pi = p + i * K * 2;
    const scalar_t* gi = g + i * K * 2;
    const uint8_t* vi = v + i * K;
    scalar_t* row = grad_pred + (begin + i) * K * 2;
#pragma omp simd
    for (int64_t k = 0; k < K; ++k) {
      acc_t gx, gy;
      oks_term_grad<acc_t>(vi[k], pi[2 * k], pi[2 * k + 1], gi[2 * k], gi[2 * k + 1], inv_var[k] * inv_area, t[k],
                           d_term, gx, gy);
      row[2 * k] = static_cast<scalar_t>(gx);
      row[2 * k + 1] = static_cast<scalar_t>(gy);
    }
  }
}

// matched_block: matched_pairs, with the float32 overload compiled for AVX2 too.
template <typename scalar_t, typename acc_t>
void matched_block(const scalar_t* pred, const scalar_t* gt, const uint8_t* visible, const acc_t* area,
                   const acc_t* inv_var, OksTransform transform, acc_t eps, int64_t K, int64_t begin, int64_t end,
                   acc_t* terms, scalar_t* out, const scalar_t* grad_out, scalar_t* grad_pred) {
  matched_pairs<scalar_t, acc_t>(pred, gt, visible, area, inv_var, transform, eps, K, begin, end, terms, out, grad_out,
                                 grad_pred);
}

POSETR_OKS_CLONES void matched_block(const float* pred, const float* gt, const uint8_t* visible, const float* area,
                                     const float* inv_var, OksTransform transform, float eps, int64_t K, int64_t begin,
                                     int64_t end, float* terms, float* out, const float* grad_out, float* grad_pred) {
  matched_pairs<float, float>(pred, gt, visible, area, inv_var, transform, eps, K, begin, end, terms, out, grad_out,
                              grad_pred);
}

// 1 / ((2 sigma)^2 * 2) per keypoint.
template <typename acc_t>
std::vector<acc_t> inv_vars(const at::Tensor& sigmas) {
  const acc_t* s = sigmas.data_ptr<acc_t>();
  std::vector<acc_t> out(sigmas.numel());
  for (size_t k = 0; k < out.size(); ++k) out[k] = oks_inv_var(s[k]);
  return out;
}


at::Tensor pairwise_oks_cpu(const at::Tensor& pred, const at::Tensor& gt, const at::Tensor& visible,
                            const at::Tensor& area, const at::Tensor& sigmas) {
  const PairwiseOksSizes s = check_pairwise_oks(pred, gt, visible, area, sigmas);
  const auto [a, sig] = oks_acc_area_sigmas(pred, area, sigmas);
  const auto g = gt.contiguous();
  const auto v = visible.contiguous();
  auto out = s.batched ? at::empty({s.B, s.N, s.M}, pred.options()) : at::empty({s.N, s.M}, pred.options());
  if (out.numel() == 0) return out;
  // [B, N, K, 2] -> [2, B, K, N] in the accumulation type.
  const auto acc = pred.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const auto xy = pred.to(acc).view({s.B, s.N, s.K, 2}).permute({3, 0, 2, 1}).contiguous();
  POSETR_DISPATCH_FLOATING_TYPES(pred.scalar_type(), "pairwise_oks_cpu", [&] {
    using acc_t = acc_type<scalar_t>;
    const auto inv_var = inv_vars<acc_t>(sig);
    const acc_t* xs = xy.data_ptr<acc_t>();
    const acc_t* ys = xs + s.B * s.K * s.N;
    const acc_t* ap = a.data_ptr<acc_t>();
    const scalar_t* gp = g.data_ptr<scalar_t>();
    const bool* vp = v.data_ptr<bool>();
    scalar_t* op = out.data_ptr<scalar_t>();
    // Tasks: (person b * M + m, block of block_n predictions).
    const int64_t block_n = std::max<int64_t>(64, kGrainTerms / std::max<int64_t>(s.K, 1));
    const int64_t blocks = (s.N + block_n - 1) / block_n;
    const int64_t tasks_grain = std::max<int64_t>(1, kGrainTerms / std::max<int64_t>(std::min(s.N, block_n) * s.K, 1));
    at::parallel_for(0, s.B * s.M * blocks, tasks_grain, [&](int64_t begin, int64_t end) {
      std::vector<acc_t> acc_buf(std::min(s.N, block_n));
      for (int64_t task = begin; task < end; ++task) {
        const int64_t bm = task / blocks, b = bm / s.M, m = bm % s.M;
        const int64_t n0 = (task % blocks) * block_n, n1 = std::min(s.N, n0 + block_n);
        pairwise_block(xs + b * s.K * s.N, ys + b * s.K * s.N, gp + bm * s.K * 2, vp + bm * s.K,
                       oks_inv_area(ap[bm]), inv_var.data(), s.N, s.K, s.M, n0, n1, acc_buf.data(),
                       op + b * s.N * s.M + m);
      }
    });
  });
  return out;
}

// Runs matched_pairs over all P pairs: the forward when grad_pred is undefined, else the backward.
void run_matched_pairs(const at::Tensor& pred, const at::Tensor& gt, const at::Tensor& visible, const at::Tensor& area,
                       const at::Tensor& sigmas, OksTransform transform, double eps, const at::Tensor& out,
                       const at::Tensor& grad, const at::Tensor& grad_pred) {
  const int64_t P = pred.size(0), K = pred.size(1);
  POSETR_DISPATCH_FLOATING_TYPES(pred.scalar_type(), "oks_cpu", [&] {
    using acc_t = acc_type<scalar_t>;
    const auto inv_var = inv_vars<acc_t>(sigmas);
    const scalar_t* pp = pred.data_ptr<scalar_t>();
    const scalar_t* gp = gt.data_ptr<scalar_t>();
    const uint8_t* vp = reinterpret_cast<const uint8_t*>(visible.data_ptr<bool>());
    const acc_t* ap = area.data_ptr<acc_t>();
    scalar_t* op = out.defined() ? out.data_ptr<scalar_t>() : nullptr;
    const scalar_t* gop = grad.defined() ? grad.data_ptr<scalar_t>() : nullptr;
    scalar_t* gpp = grad_pred.defined() ? grad_pred.data_ptr<scalar_t>() : nullptr;
    const acc_t e = static_cast<acc_t>(eps);
    const int64_t grain = std::max<int64_t>(1, kGrainTerms / std::max<int64_t>(K, 1));
    at::parallel_for(0, P, grain, [&](int64_t begin, int64_t end) {
      std::vector<acc_t> terms((end - begin) * K);
      matched_block(pp, gp, vp, ap, inv_var.data(), transform, e, K, begin, end, terms.data(), op, gop, gpp);
    });
  });
}

at::Tensor oks_cpu(const at::Tensor& pred, const at::Tensor& gt, const at::Tensor& visible, const at::Tensor& area,
                   const at::Tensor& sigmas, c10::string_view transform, double eps) {
  const auto [P, K] = check_matched_oks(pred, gt, visible, area, sigmas);
  const OksTransform t = parse_oks_transform(transform, eps);
  const auto [a, sig] = oks_acc_area_sigmas(pred, area, sigmas);
  auto out = at::empty({P}, pred.options());
  if (P == 0) return out;
  run_matched_pairs(pred.contiguous(), gt.contiguous(), visible.contiguous(), a, sig, t, eps, out, at::Tensor(),
                    at::Tensor());
  return out;
}

at::Tensor oks_backward_cpu(const at::Tensor& grad, const at::Tensor& pred, const at::Tensor& gt,
                            const at::Tensor& visible, const at::Tensor& area, const at::Tensor& sigmas,
                            c10::string_view transform, double eps) {
  const auto [P, K] = check_matched_oks(pred, gt, visible, area, sigmas);
  const OksTransform t = parse_oks_transform(transform, eps);
  check_oks_grad(grad, pred, P);
  const auto [a, sig] = oks_acc_area_sigmas(pred, area, sigmas);
  const auto p = pred.contiguous();
  auto grad_pred = at::empty_like(p);
  if (grad_pred.numel() == 0) return grad_pred;
  run_matched_pairs(p, gt.contiguous(), visible.contiguous(), a, sig, t, eps, at::Tensor(),
                    grad.to(pred.scalar_type()).contiguous(), grad_pred);
  return grad_pred;
}

}  // namespace

TORCH_LIBRARY_IMPL(posetr, CPU, m) {
  m.impl("pairwise_oks", &pairwise_oks_cpu);
  m.impl("oks", &oks_cpu);
  m.impl("_oks_backward", &oks_backward_cpu);
}

}  // namespace posetr
