// OKS ops on the CPU.
//
// pairwise_oks: the per-(person, keypoint) factor of d^2 and label weight are
// computed once, then one task per block of prediction rows writes its rows of the
// [B, N, M] output. oks / _oks_backward: one task per block of matched pairs; each
// pair's output and its K gradient rows are written by the task that owns it.
// Sums run in float32 for half and bfloat16 inputs (float64 for float64).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "common/dispatch.h"
#include "oks/oks_checks.h"
#include "oks/oks_math.h"

namespace posetr {
namespace {

// Per ground-truth keypoint: scale = the factor c of d^2, weight = 1 if labelled else 0;
// count = labelled keypoints per person. area [G], visible [G, K], sigmas [K] (accumulation type).
template <typename acc_t>
void person_factors(const acc_t* area, const bool* visible, const acc_t* sigmas, int64_t G, int64_t K,
                    std::vector<acc_t>& scale, std::vector<acc_t>& weight, std::vector<int>& count) {
  scale.resize(G * K);
  weight.resize(G * K);
  count.resize(G);
  for (int64_t g = 0; g < G; ++g) {
    int c = 0;
    for (int64_t k = 0; k < K; ++k) {
      scale[g * K + k] = oks_scale(sigmas[k], area[g]);
      weight[g * K + k] = visible[g * K + k] ? acc_t(1) : acc_t(0);
      c += visible[g * K + k];
    }
    count[g] = c;
  }
}

// Sum over k of weight[k] * exp(-scale[k] * |pred_k - gt_k|^2); pred and gt are [K, 2].
template <typename scalar_t, typename acc_t>
inline acc_t term_sum(const scalar_t* pred, const scalar_t* gt, const acc_t* scale, const acc_t* weight, int64_t K) {
  acc_t sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t k = 0; k < K; ++k) {
    sum += weight[k] * oks_term<acc_t>(pred[2 * k], pred[2 * k + 1], gt[2 * k], gt[2 * k + 1], scale[k]);
  }
  return sum;
}

// The accumulation-type copies of area and sigmas the kernels read; checks their values.
std::pair<at::Tensor, at::Tensor> acc_area_sigmas(const at::Tensor& pred, const at::Tensor& area,
                                                  const at::Tensor& sigmas) {
  const auto acc = pred.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  auto a = area.to(acc).contiguous();
  auto s = sigmas.to(acc).contiguous();
  check_oks_value_ranges(a, s);
  return {a, s};
}

at::Tensor pairwise_oks_cpu(const at::Tensor& pred, const at::Tensor& gt, const at::Tensor& visible,
                            const at::Tensor& area, const at::Tensor& sigmas) {
  const PairwiseOksSizes s = check_pairwise_oks(pred, gt, visible, area, sigmas);
  const auto [a, sig] = acc_area_sigmas(pred, area, sigmas);
  const auto p = pred.contiguous();
  const auto g = gt.contiguous();
  const auto v = visible.contiguous();
  auto out = s.batched ? at::empty({s.B, s.N, s.M}, pred.options()) : at::empty({s.N, s.M}, pred.options());
  if (out.numel() == 0) return out;
  POSETR_DISPATCH_FLOATING_TYPES(pred.scalar_type(), "pairwise_oks_cpu", [&] {
    using acc_t = acc_type<scalar_t>;
    const int64_t M = s.M, K = s.K, N = s.N;
    std::vector<acc_t> scale, weight;
    std::vector<int> count;
    person_factors<acc_t>(a.data_ptr<acc_t>(), v.data_ptr<bool>(), sig.data_ptr<acc_t>(), s.B * M, K, scale, weight,
                          count);
    const scalar_t* pp = p.data_ptr<scalar_t>();
    const scalar_t* gp = g.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    const int64_t grain = std::max<int64_t>(1, 8192 / std::max<int64_t>(M * K, 1));
    at::parallel_for(0, s.B * N, grain, [&](int64_t begin, int64_t end) {
      for (int64_t bn = begin; bn < end; ++bn) {
        const int64_t b = bn / N;
        for (int64_t m = 0; m < M; ++m) {
          const int64_t bm = b * M + m;
          const acc_t sum = term_sum(pp + bn * K * 2, gp + bm * K * 2, &scale[bm * K], &weight[bm * K], K);
          op[bn * M + m] = static_cast<scalar_t>(oks_mean(sum, count[bm]));
        }
      }
    });
  });
  return out;
}

// Shared by the forward and backward of the matched-pair op: factors for the P pairs.
template <typename scalar_t, typename Body>
void for_each_pair(const at::Tensor& pred, const at::Tensor& gt, const at::Tensor& visible, const at::Tensor& area,
                   const at::Tensor& sigmas, Body body) {
  using acc_t = acc_type<scalar_t>;
  const int64_t P = pred.size(0), K = pred.size(1);
  std::vector<acc_t> scale, weight;
  std::vector<int> count;
  person_factors<acc_t>(area.data_ptr<acc_t>(), visible.data_ptr<bool>(), sigmas.data_ptr<acc_t>(), P, K, scale,
                        weight, count);
  const scalar_t* pp = pred.data_ptr<scalar_t>();
  const scalar_t* gp = gt.data_ptr<scalar_t>();
  const int64_t grain = std::max<int64_t>(1, 8192 / std::max<int64_t>(K, 1));
  at::parallel_for(0, P, grain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const acc_t sum = term_sum(pp + i * K * 2, gp + i * K * 2, &scale[i * K], &weight[i * K], K);
      body(i, oks_mean(sum, count[i]), pp + i * K * 2, gp + i * K * 2, &scale[i * K], &weight[i * K], count[i]);
    }
  });
}

at::Tensor oks_cpu(const at::Tensor& pred, const at::Tensor& gt, const at::Tensor& visible, const at::Tensor& area,
                   const at::Tensor& sigmas, c10::string_view transform, double eps) {
  const auto [P, K] = check_matched_oks(pred, gt, visible, area, sigmas);
  const OksTransform t = parse_oks_transform(transform, eps);
  const auto [a, sig] = acc_area_sigmas(pred, area, sigmas);
  const auto p = pred.contiguous();
  const auto g = gt.contiguous();
  const auto v = visible.contiguous();
  auto out = at::empty({P}, pred.options());
  if (P == 0) return out;
  POSETR_DISPATCH_FLOATING_TYPES(pred.scalar_type(), "oks_cpu", [&] {
    using acc_t = acc_type<scalar_t>;
    scalar_t* op = out.data_ptr<scalar_t>();
    const acc_t e = static_cast<acc_t>(eps);
    for_each_pair<scalar_t>(p, g, v, a, sig, [&](int64_t i, acc_t oks, auto...) {
      op[i] = static_cast<scalar_t>(oks_transform(oks, t, e));
    });
  });
  return out;
}

at::Tensor oks_backward_cpu(const at::Tensor& grad, const at::Tensor& pred, const at::Tensor& gt,
                            const at::Tensor& visible, const at::Tensor& area, const at::Tensor& sigmas,
                            c10::string_view transform, double eps) {
  const auto [P, K] = check_matched_oks(pred, gt, visible, area, sigmas);
  const OksTransform t = parse_oks_transform(transform, eps);
  TORCH_CHECK_VALUE(grad.dim() == 1 && grad.size(0) == P, "grad must have shape [P] = [", P, "], got ", grad.sizes());
  const auto [a, sig] = acc_area_sigmas(pred, area, sigmas);
  const auto p = pred.contiguous();
  const auto g = gt.contiguous();
  const auto v = visible.contiguous();
  const auto go = grad.to(pred.scalar_type()).contiguous();
  auto grad_pred = at::empty_like(p);
  if (grad_pred.numel() == 0) return grad_pred;
  POSETR_DISPATCH_FLOATING_TYPES(pred.scalar_type(), "oks_backward_cpu", [&] {
    using acc_t = acc_type<scalar_t>;
    const scalar_t* gop = go.data_ptr<scalar_t>();
    scalar_t* gp = grad_pred.data_ptr<scalar_t>();
    const acc_t e = static_cast<acc_t>(eps);
    for_each_pair<scalar_t>(p, g, v, a, sig,
                            [&](int64_t i, acc_t oks, const scalar_t* pr, const scalar_t* gtr, const acc_t* scale,
                                const acc_t* weight, int count) {
                              // d out_i / d term_k = transform'(OKS) * weight_k / count.
                              const acc_t d_term = count > 0 ? static_cast<acc_t>(gop[i]) *
                                                                   oks_transform_grad(oks, t, e) /
                                                                   static_cast<acc_t>(count)
                                                             : acc_t(0);
                              scalar_t* row = gp + i * K * 2;
                              for (int64_t k = 0; k < K; ++k) {
                                acc_t gx, gy;
                                oks_term_grad<acc_t>(pr[2 * k], pr[2 * k + 1], gtr[2 * k], gtr[2 * k + 1], scale[k],
                                                     d_term * weight[k], gx, gy);
                                row[2 * k] = static_cast<scalar_t>(gx);
                                row[2 * k + 1] = static_cast<scalar_t>(gy);
                              }
                            });
  });
  return grad_pred;
}

}  // namespace

TORCH_LIBRARY_IMPL(posetr, CPU, m) {
  m.impl("pairwise_oks", &pairwise_oks_cpu);
  m.impl("oks", &oks_cpu);
  m.impl("_oks_backward", &oks_backward_cpu);
}

}  // namespace posetr
