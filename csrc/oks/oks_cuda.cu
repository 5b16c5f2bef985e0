// OKS ops on CUDA: one thread per output (a (prediction, person) pair of pairwise_oks,
// or a matched pair of oks / _oks_backward), each summing its K keypoint terms with
// the math of oks/oks_math.h. Every thread writes only its own outputs (no atomics).
// The per-keypoint factors 1 / ((2 sigma)^2 * 2) are staged in shared memory.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "common/dispatch.h"
#include "oks/oks_checks.h"
#include "oks/oks_math.h"

namespace posetr {
namespace {

constexpr int kThreads = 256;

int64_t num_blocks(int64_t n) {
  return (n + kThreads - 1) / kThreads;
}

// Loads inv_var[k] = 1 / ((2 sigma_k)^2 * 2) into shared memory (K values).
template <typename acc_t>
__device__ __forceinline__ void load_inv_var(const acc_t* __restrict__ sigmas, int64_t K, acc_t* inv_var) {
  for (int64_t k = threadIdx.x; k < K; k += blockDim.x) inv_var[k] = oks_inv_var(sigmas[k]);
  __syncthreads();
}

// OKS of a prediction (pred [K, 2]) against a person (gt [K, 2], visible [K]).
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ acc_t person_oks(const scalar_t* __restrict__ pred, const scalar_t* __restrict__ gt,
                                            const bool* __restrict__ visible, acc_t inv_area,
                                            const acc_t* inv_var, int64_t K, int& count) {
  acc_t sum = 0;
  count = 0;
  for (int64_t k = 0; k < K; ++k) {
    if (!visible[k]) continue;
    ++count;
    sum += oks_term<acc_t>(pred[2 * k], pred[2 * k + 1], gt[2 * k], gt[2 * k + 1], inv_var[k] * inv_area);
  }
  return oks_mean(sum, count);
}

// out [B, N, M]; one thread per (b, n, m).
template <typename scalar_t>
__global__ void pairwise_kernel(const scalar_t* __restrict__ pred, const scalar_t* __restrict__ gt,
                                const bool* __restrict__ visible, const acc_type<scalar_t>* __restrict__ area,
                                const acc_type<scalar_t>* __restrict__ sigmas, scalar_t* __restrict__ out,
                                PairwiseOksSizes s) {
  using acc_t = acc_type<scalar_t>;
  extern __shared__ unsigned char shared[];
  acc_t* inv_var = reinterpret_cast<acc_t*>(shared);
  load_inv_var(sigmas, s.K, inv_var);
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= s.B * s.N * s.M) return;
  const int64_t m = idx % s.M, bn = idx / s.M, bm = (bn / s.N) * s.M + m;
  int count;
  out[idx] = static_cast<scalar_t>(
      person_oks(pred + bn * s.K * 2, gt + bm * s.K * 2, visible + bm * s.K, oks_inv_area(area[bm]), inv_var, s.K,
                 count));
}

// Matched pairs; forward (out[i] = transform(OKS_i)) when grad_pred is null, else
// grad_pred[i] = grad[i] * d transform(OKS_i) / d pred[i].
template <typename scalar_t>
__global__ void matched_kernel(const scalar_t* __restrict__ pred, const scalar_t* __restrict__ gt,
                               const bool* __restrict__ visible, const acc_type<scalar_t>* __restrict__ area,
                               const acc_type<scalar_t>* __restrict__ sigmas, OksTransform transform,
                               acc_type<scalar_t> eps, int64_t P, int64_t K, scalar_t* __restrict__ out,
                               const scalar_t* __restrict__ grad, scalar_t* __restrict__ grad_pred) {
  using acc_t = acc_type<scalar_t>;
  extern __shared__ unsigned char shared[];
  acc_t* inv_var = reinterpret_cast<acc_t*>(shared);
  load_inv_var(sigmas, K, inv_var);
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= P) return;
  const scalar_t* p = pred + i * K * 2;
  const scalar_t* g = gt + i * K * 2;
  const bool* v = visible + i * K;
  const acc_t inv_area = oks_inv_area(area[i]);
  int count;
  const acc_t oks = person_oks(p, g, v, inv_area, inv_var, K, count);
  if (grad_pred == nullptr) {
    out[i] = static_cast<scalar_t>(oks_transform(oks, transform, eps));
    return;
  }
  const acc_t d_term =
      count > 0 ? static_cast<acc_t>(grad[i]) * oks_transform_grad(oks, transform, eps) / static_cast<acc_t>(count)
                : acc_t(0);
  scalar_t* row = grad_pred + i * K * 2;
  for (int64_t k = 0; k < K; ++k) {
    const acc_t px = p[2 * k], py = p[2 * k + 1], gx = g[2 * k], gy = g[2 * k + 1];
    const acc_t scale = inv_var[k] * inv_area;
    acc_t grad_x, grad_y;
    oks_term_grad(v[k], px, py, gx, gy, scale, oks_term(px, py, gx, gy, scale), d_term, grad_x, grad_y);
    row[2 * k] = static_cast<scalar_t>(grad_x);
    row[2 * k + 1] = static_cast<scalar_t>(grad_y);
  }
}


size_t shared_bytes(const at::Tensor& sigmas) {
  return sigmas.numel() * sigmas.element_size();
}

at::Tensor pairwise_oks_cuda(const at::Tensor& pred, const at::Tensor& gt, const at::Tensor& visible,
                             const at::Tensor& area, const at::Tensor& sigmas) {
  const PairwiseOksSizes s = check_pairwise_oks(pred, gt, visible, area, sigmas);
  const c10::cuda::CUDAGuard guard(pred.device());
  const auto [a, sig] = oks_acc_area_sigmas(pred, area, sigmas);
  const auto p = pred.contiguous();
  const auto g = gt.contiguous();
  const auto v = visible.contiguous();
  auto out = s.batched ? at::empty({s.B, s.N, s.M}, pred.options()) : at::empty({s.N, s.M}, pred.options());
  if (out.numel() == 0) return out;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  POSETR_DISPATCH_FLOATING_TYPES(pred.scalar_type(), "pairwise_oks_cuda", [&] {
    using acc_t = acc_type<scalar_t>;
    pairwise_kernel<scalar_t><<<num_blocks(out.numel()), kThreads, shared_bytes(sig), stream>>>(
        p.data_ptr<scalar_t>(), g.data_ptr<scalar_t>(), v.data_ptr<bool>(), a.data_ptr<acc_t>(),
        sig.data_ptr<acc_t>(), out.data_ptr<scalar_t>(), s);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

// Forward when grad is undefined (writes out), else backward (writes grad_pred).
void launch_matched(const at::Tensor& pred, const at::Tensor& gt, const at::Tensor& visible, const at::Tensor& area,
                    const at::Tensor& sigmas, OksTransform transform, double eps, const at::Tensor& out,
                    const at::Tensor& grad, const at::Tensor& grad_pred) {
  const int64_t P = pred.size(0), K = pred.size(1);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  POSETR_DISPATCH_FLOATING_TYPES(pred.scalar_type(), "oks_cuda", [&] {
    using acc_t = acc_type<scalar_t>;
    matched_kernel<scalar_t><<<num_blocks(P), kThreads, shared_bytes(sigmas), stream>>>(
        pred.data_ptr<scalar_t>(), gt.data_ptr<scalar_t>(), visible.data_ptr<bool>(), area.data_ptr<acc_t>(),
        sigmas.data_ptr<acc_t>(), transform, static_cast<acc_t>(eps), P, K,
        out.defined() ? out.data_ptr<scalar_t>() : nullptr, grad.defined() ? grad.data_ptr<scalar_t>() : nullptr,
        grad_pred.defined() ? grad_pred.data_ptr<scalar_t>() : nullptr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

at::Tensor oks_cuda(const at::Tensor& pred, const at::Tensor& gt, const at::Tensor& visible, const at::Tensor& area,
                    const at::Tensor& sigmas, c10::string_view transform, double eps) {
  const auto [P, K] = check_matched_oks(pred, gt, visible, area, sigmas);
  const OksTransform t = parse_oks_transform(transform, eps);
  const c10::cuda::CUDAGuard guard(pred.device());
  const auto [a, sig] = oks_acc_area_sigmas(pred, area, sigmas);
  auto out = at::empty({P}, pred.options());
  if (P == 0) return out;
  launch_matched(pred.contiguous(), gt.contiguous(), visible.contiguous(), a, sig, t, eps, out, at::Tensor(),
                 at::Tensor());
  return out;
}

at::Tensor oks_backward_cuda(const at::Tensor& grad, const at::Tensor& pred, const at::Tensor& gt,
                             const at::Tensor& visible, const at::Tensor& area, const at::Tensor& sigmas,
                             c10::string_view transform, double eps) {
  const auto [P, K] = check_matched_oks(pred, gt, visible, area, sigmas);
  const OksTransform t = parse_oks_transform(transform, eps);
  check_oks_grad(grad, pred, P);
  const c10::cuda::CUDAGuard guard(pred.device());
  const auto [a, sig] = oks_acc_area_sigmas(pred, area, sigmas);
  const auto p = pred.contiguous();
  auto grad_pred = at::empty_like(p);
  if (grad_pred.numel() == 0) return grad_pred;
  launch_matched(p, gt.contiguous(), visible.contiguous(), a, sig, t, eps, at::Tensor(),
                 grad.to(pred.scalar_type()).contiguous(), grad_pred);
  return grad_pred;
}

}  // namespace

TORCH_LIBRARY_IMPL(posetr, CUDA, m) {
  m.impl("pairwise_oks", &pairwise_oks_cuda);
  m.impl("oks", &oks_cuda);
  m.impl("_oks_backward", &oks_backward_cuda);
}

}  // namespace posetr
