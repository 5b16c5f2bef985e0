// Batched linear assignment on CUDA: one warp (one 32-thread block) per batch item.
//
// Each search step relaxes the columns in parallel (lane l owns columns l, l+32,
// ...) and picks scipy's column with a shuffle-based argmin over (cost, priority)
// (lap_better is a total order, so every lane ends with the same column); lane 0
// does the O(1) bookkeeping, the dual updates run in parallel over the reached
// columns. Every step is scipy's, in float64 (lap/lap_math.h), so the answers are
// the CPU's and scipy's.
//
// The solver's state (u, v, shortest-path costs, path, assignment, scan order) lives
// in shared memory when it fits in 48 KiB per item (max(N, M) up to ~1500), else in
// a global workspace. The costs are read from global memory; for N > M the batch is
// first laid out column-major so that the (transposed) searches read coalesced.
// Nothing here synchronises with the host: a failed item gets -1 indices and its
// status code (lap_math.h), which the caller may inspect later.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "lap/lap_checks.h"
#include "lap/lap_math.h"

namespace posetr {
namespace {

constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;
constexpr int64_t kSharedLimit = 48 * 1024;

// Pointers into one item's state; K = min(N, M) rows, L = max(N, M) columns at most.
struct LapState {
  double *u, *v, *spc;
  int32_t *path, *row4col, *col4row, *remaining, *pos, *reached;
  uint8_t* done;
};

__host__ __device__ inline int64_t align8(int64_t bytes) { return (bytes + 7) / 8 * 8; }

__host__ __device__ inline int64_t state_bytes(int64_t K, int64_t L) {
  return align8(8 * (K + 2 * L)) + align8(4 * (5 * L + K)) + align8(L);
}

__device__ inline LapState carve_state(uint8_t* base, int64_t K, int64_t L) {
  LapState s;
  double* d = reinterpret_cast<double*>(base);
  s.u = d;
  s.v = d + K;
  s.spc = d + K + L;
  int32_t* x = reinterpret_cast<int32_t*>(base + align8(8 * (K + 2 * L)));
  s.path = x;
  s.row4col = x + L;
  s.remaining = x + 2 * L;
  s.pos = x + 3 * L;
  s.reached = x + 4 * L;
  s.col4row = x + 5 * L;
  s.done = base + align8(8 * (K + 2 * L)) + align8(4 * (5 * L + K));
  return s;
}

__device__ inline LapCandidate shfl_xor(const LapCandidate& c, int offset) {
  return LapCandidate{__shfl_xor_sync(kFullMask, c.cost, offset),
                      static_cast<int64_t>(__shfl_xor_sync(kFullMask, static_cast<long long>(c.priority), offset)),
                      static_cast<int64_t>(__shfl_xor_sync(kFullMask, static_cast<long long>(c.col), offset))};
}

// Warp-wide argmin: every lane returns the same (best) candidate.
__device__ inline LapCandidate warp_best(LapCandidate best) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    const LapCandidate other = shfl_xor(best, offset);
    if (lap_better(other, best)) best = other;
  }
  return best;
}

// One search from cur_row (scipy's augmenting_path). Returns the sink, or -1 if
// infeasible; all lanes return the same values.
template <typename scalar_t>
__device__ int64_t warp_shortest_path(const scalar_t* block, int64_t s_row, int64_t s_col, double sign, int64_t nc,
                                      int64_t cur_row, const LapState& s, int lane, double& min_val,
                                      int64_t& num_reached) {
  for (int64_t j = lane; j < nc; j += kWarp) s.spc[j] = static_cast<double>(INFINITY);
  __syncwarp();
  int64_t num_remaining = nc, i = cur_row;
  num_reached = 0;
  min_val = 0;
  while (true) {
    const double u_i = s.u[i];
    LapCandidate best = lap_no_candidate();
    for (int64_t j = lane; j < nc; j += kWarp) {
      if (s.done[j]) continue;
      const double c = lap_load_cost(block, s_row, s_col, sign, i, j);
      const LapCandidate candidate = lap_relax(min_val, c, u_i, s.v, s.spc, s.path, s.row4col, s.pos, i, j, nc);
      if (lap_better(candidate, best)) best = candidate;
    }
    best = warp_best(best);
    if (best.cost == static_cast<double>(INFINITY)) return -1;
    min_val = best.cost;
    const int64_t j = best.col;
    const int32_t row = s.row4col[j];
    __syncwarp();  // every lane has read done[] and pos[] before lane 0 updates them
    if (lane == 0) {
      s.done[j] = 1;
      s.reached[num_reached] = static_cast<int32_t>(j);
      lap_remove_column(s.remaining, s.pos, num_remaining, j);
    } else {
      --num_remaining;
    }
    ++num_reached;
    __syncwarp();
    if (row == -1) return j;
    i = row;
  }
}

template <typename scalar_t>
__global__ void lap_kernel(const scalar_t* __restrict__ cost, int64_t sb, int64_t sr, int64_t sc, int64_t N,
                           int64_t M, const int64_t* __restrict__ num_rows, const int64_t* __restrict__ num_cols,
                           bool maximize, uint8_t* __restrict__ workspace, int64_t* __restrict__ row_ind,
                           int64_t* __restrict__ col_ind, int32_t* __restrict__ status) {
  extern __shared__ __align__(8) uint8_t shared_state[];
  const int64_t b = blockIdx.x;
  const int lane = threadIdx.x;
  const int64_t K = N < M ? N : M, L = N < M ? M : N;
  int64_t* rows_b = row_ind + b * K;
  int64_t* cols_b = col_ind + b * K;
  for (int64_t k = lane; k < K; k += kWarp) rows_b[k] = cols_b[k] = -1;
  const int64_t n = num_rows ? num_rows[b] : N, m = num_cols ? num_cols[b] : M;
  if (n < 0 || n > N || m < 0 || m > M) {
    if (lane == 0) status[b] = kLapBadSize;
    return;
  }
  const LapShape shape = lap_shape(n, m);
  const int64_t nr = shape.nr, nc = shape.nc;
  if (nr == 0) {
    if (lane == 0) status[b] = kLapOk;
    return;
  }
  const scalar_t* block = cost + b * sb;
  const int64_t s_row = shape.transpose ? sc : sr, s_col = shape.transpose ? sr : sc;
  const double sign = maximize ? -1.0 : 1.0;

  bool invalid = false;
  for (int64_t i = 0; i < nr; ++i) {
    for (int64_t j = lane; j < nc; j += kWarp) invalid |= lap_cost_invalid(lap_load_cost(block, s_row, s_col, sign, i, j));
  }
  if (__any_sync(kFullMask, invalid)) {
    if (lane == 0) status[b] = kLapInvalid;
    return;
  }

  const LapState s = carve_state(workspace ? workspace + b * state_bytes(K, L) : shared_state, K, L);
  for (int64_t i = lane; i < nr; i += kWarp) {
    s.u[i] = 0;
    s.col4row[i] = -1;
  }
  for (int64_t j = lane; j < nc; j += kWarp) {
    s.v[j] = 0;
    s.row4col[j] = -1;
    s.done[j] = 0;
  }
  lap_reset_remaining(s.remaining, s.pos, nc, lane, kWarp);
  __syncwarp();

  for (int64_t cur_row = 0; cur_row < nr; ++cur_row) {
    double min_val;
    int64_t num_reached;
    const int64_t sink = warp_shortest_path(block, s_row, s_col, sign, nc, cur_row, s, lane, min_val, num_reached);
    if (sink < 0) {
      if (lane == 0) status[b] = kLapInfeasible;
      return;
    }
    if (lane == 0) s.u[cur_row] += min_val;
    for (int64_t k = lane; k < num_reached; k += kWarp) {
      lap_update_duals(min_val, s.u, s.v, s.spc, s.row4col, s.reached[k]);
      s.done[s.reached[k]] = 0;
    }
    __syncwarp();
    if (lane == 0) lap_augment(s.path, s.row4col, s.col4row, sink, cur_row);
    lap_reset_remaining(s.remaining, s.pos, nc, lane, kWarp);
    __syncwarp();
  }

  if (shape.transpose) {
    // Original rows are the solved columns: compact the assigned ones in order.
    int64_t written = 0;
    for (int64_t j0 = 0; j0 < nc; j0 += kWarp) {
      const int64_t j = j0 + lane;
      const int32_t row = j < nc ? s.row4col[j] : -1;
      const unsigned assigned = __ballot_sync(kFullMask, row >= 0);
      if (row >= 0) {
        const int64_t at = written + __popc(assigned & ((1u << lane) - 1u));
        rows_b[at] = j;
        cols_b[at] = row;
      }
      written += __popc(assigned);
    }
  } else {
    for (int64_t i = lane; i < nr; i += kWarp) {
      rows_b[i] = i;
      cols_b[i] = s.col4row[i];
    }
  }
  if (lane == 0) status[b] = kLapOk;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> batched_linear_sum_assignment_cuda(
    const at::Tensor& cost, const std::optional<at::Tensor>& num_rows, const std::optional<at::Tensor>& num_cols,
    bool maximize, bool /*check: raising would synchronise; callers read status instead*/) {
  check_lap_inputs(cost, num_rows, num_cols);
  const c10::cuda::CUDAGuard guard(cost.device());
  const int64_t B = cost.size(0), N = cost.size(1), M = cost.size(2);
  const int64_t K = std::min(N, M), L = std::max(N, M);
  at::Tensor row_ind = at::empty({B, K}, cost.options().dtype(at::kLong));
  at::Tensor col_ind = at::empty({B, K}, cost.options().dtype(at::kLong));
  at::Tensor status = at::empty({B}, cost.options().dtype(at::kInt));
  if (B == 0) return {row_ind, col_ind, status};
  // Tall items are solved transposed (along N): store them column-major.
  const at::Tensor c = N > M ? cost.transpose(1, 2).contiguous().transpose(1, 2) : cost;
  const at::Tensor rows = num_rows.has_value() ? num_rows->contiguous() : at::Tensor();
  const at::Tensor cols = num_cols.has_value() ? num_cols->contiguous() : at::Tensor();
  const int64_t bytes = state_bytes(K, L);
  const bool shared = bytes <= kSharedLimit;
  const at::Tensor workspace = shared ? at::Tensor() : at::empty({B * bytes}, cost.options().dtype(at::kByte));
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(cost.scalar_type(), "batched_linear_sum_assignment_cuda", [&] {
    lap_kernel<scalar_t><<<B, kWarp, shared ? bytes : 0, stream>>>(
        c.const_data_ptr<scalar_t>(), c.stride(0), c.stride(1), c.stride(2), N, M,
        rows.defined() ? rows.const_data_ptr<int64_t>() : nullptr,
        cols.defined() ? cols.const_data_ptr<int64_t>() : nullptr, maximize,
        shared ? nullptr : workspace.data_ptr<uint8_t>(), row_ind.data_ptr<int64_t>(), col_ind.data_ptr<int64_t>(),
        status.data_ptr<int32_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {row_ind, col_ind, status};
}

}  // namespace

TORCH_LIBRARY_IMPL(posetr, CUDA, m) {
  m.impl("batched_linear_sum_assignment", &batched_linear_sum_assignment_cuda);
}

}  // namespace posetr
