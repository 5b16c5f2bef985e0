// Batched linear assignment on the CPU: one task per block of batch items, each
// item solved with scipy's shortest-augmenting-path steps from lap/lap_math.h.
//
// Each item's block is first copied into a contiguous float64 buffer, transposed
// and negated as scipy does (that pass also checks for NaN / -inf). Each search
// step then relaxes every column in one branch-free pass that the compiler
// vectorises, and a second pass picks among the columns of least cost by scipy's
// tie rule (lap_priority), so the answer is scipy's even with ties.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <tuple>
#include <vector>

#include "lap/lap_checks.h"
#include "lap/lap_math.h"

namespace posetr {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Scratch memory of one task, grown to the largest item it solves.
struct LapWorkspace {
  std::vector<double> cost, u, v, spc;
  std::vector<int32_t> path, row4col, col4row, remaining, pos, reached_cols;
  std::vector<uint8_t> reached;

  void resize(int64_t nr, int64_t nc) {
    if (static_cast<int64_t>(cost.size()) < nr * nc) cost.resize(nr * nc);
    if (static_cast<int64_t>(u.size()) < nr) {
      u.resize(nr);
      col4row.resize(nr);
    }
    if (static_cast<int64_t>(v.size()) < nc) {
      for (auto* a : {&v, &spc}) a->resize(nc);
      for (auto* a : {&path, &row4col, &remaining, &pos, &reached_cols}) a->resize(nc);
      reached.resize(nc);
    }
  }
};

// Copies the n x m block into ws.cost as the nr x nc problem scipy solves.
template <typename scalar_t>
LapStatus load_problem(const scalar_t* block, int64_t sr, int64_t sc, const LapShape& shape, bool maximize,
                       LapWorkspace& ws) {
  double* out = ws.cost.data();
  bool invalid = false;
  for (int64_t i = 0; i < shape.nr; ++i) {
    for (int64_t j = 0; j < shape.nc; ++j) {
      const double x = lap_load_cost(block, sr, sc, shape.transpose, maximize, i, j);
      invalid |= lap_cost_invalid(x);
      out[i * shape.nc + j] = x;
    }
  }
  return invalid ? kLapInvalid : kLapOk;
}

// One search (scipy's augmenting_path) from row cur_row. Returns the sink column,
// or -1 if the problem is infeasible; sets min_val and the reached columns.
int64_t shortest_path(LapWorkspace& ws, int64_t nc, int64_t cur_row, double& min_val, int64_t& num_reached) {
  const double* cost = ws.cost.data();
  double *v = ws.v.data(), *spc = ws.spc.data();
  int32_t *path = ws.path.data(), *pos = ws.pos.data(), *remaining = ws.remaining.data();
  const int32_t* row4col = ws.row4col.data();
  uint8_t* reached = ws.reached.data();
  std::fill(spc, spc + nc, kInf);
  std::fill(reached, reached + nc, uint8_t(0));
  lap_reset_remaining(remaining, pos, nc, 0, 1);
  int64_t num_remaining = nc;
  num_reached = 0;
  min_val = 0;
  int64_t i = cur_row;
  while (true) {
    const double* row = cost + i * nc;
    const double u_i = ws.u[i];
    const int32_t i32 = static_cast<int32_t>(i);
    const double base = min_val;
    double lowest = kInf;
    // Pass 1 (vectorised): relax every column not reached yet; least cost.
#pragma omp simd reduction(min : lowest)
    for (int64_t j = 0; j < nc; ++j) {
      const double r = lap_reduced_cost(base, row[j], u_i, v[j]);
      const bool shorter = !reached[j] && r < spc[j];
      spc[j] = shorter ? r : spc[j];
      path[j] = shorter ? i32 : path[j];
      lowest = std::min(lowest, reached[j] ? kInf : spc[j]);
    }
    if (lowest == kInf) return -1;  // no finite path: infeasible
    // Pass 2: among the columns of least cost, scipy's choice.
    LapCandidate best = lap_no_candidate();
    for (int64_t j = 0; j < nc; ++j) {
      if (spc[j] == lowest && !reached[j]) {
        const LapCandidate c{spc[j], lap_priority(pos[j], row4col[j] == -1, nc), j};
        if (lap_better(c, best)) best = c;
      }
    }
    min_val = lowest;
    const int64_t j = best.col;
    reached[j] = 1;
    ws.reached_cols[num_reached++] = static_cast<int32_t>(j);
    lap_remove_column(remaining, pos, num_remaining, j);
    if (row4col[j] == -1) return j;
    i = row4col[j];
  }
}

// Solves the nr x nc problem in ws.cost (scipy's solve()); col4row gets the answer.
LapStatus solve_problem(LapWorkspace& ws, int64_t nr, int64_t nc) {
  std::fill(ws.u.begin(), ws.u.begin() + nr, 0.0);
  std::fill(ws.v.begin(), ws.v.begin() + nc, 0.0);
  std::fill(ws.path.begin(), ws.path.begin() + nc, -1);
  std::fill(ws.row4col.begin(), ws.row4col.begin() + nc, -1);
  std::fill(ws.col4row.begin(), ws.col4row.begin() + nr, -1);
  for (int64_t cur_row = 0; cur_row < nr; ++cur_row) {
    double min_val;
    int64_t num_reached;
    const int64_t sink = shortest_path(ws, nc, cur_row, min_val, num_reached);
    if (sink < 0) return kLapInfeasible;
    ws.u[cur_row] += min_val;
    for (int64_t k = 0; k < num_reached; ++k) {
      lap_update_duals(min_val, ws.u.data(), ws.v.data(), ws.spc.data(), ws.row4col.data(), ws.reached_cols[k]);
    }
    lap_augment(ws.path.data(), ws.row4col.data(), ws.col4row.data(), sink, cur_row);
  }
  return kLapOk;
}

// Writes the item's answer in scipy's order (rows ascending) followed by -1.
void write_answer(const LapWorkspace& ws, const LapShape& shape, int64_t K, int64_t* row_ind, int64_t* col_ind) {
  int64_t k = 0;
  if (shape.transpose) {
    // Original rows are the solved problem's columns: list them in order.
    for (int64_t j = 0; j < shape.nc; ++j) {
      if (ws.row4col[j] < 0) continue;
      row_ind[k] = j;
      col_ind[k++] = ws.row4col[j];
    }
  } else {
    for (; k < shape.nr; ++k) {
      row_ind[k] = k;
      col_ind[k] = ws.col4row[k];
    }
  }
  std::fill(row_ind + k, row_ind + K, -1);
  std::fill(col_ind + k, col_ind + K, -1);
}

template <typename scalar_t>
void solve_batch(const at::Tensor& cost, const int64_t* num_rows, const int64_t* num_cols, bool maximize,
                 int64_t* row_ind, int64_t* col_ind, int32_t* status) {
  const int64_t B = cost.size(0), N = cost.size(1), M = cost.size(2), K = std::min(N, M);
  const int64_t sb = cost.stride(0), sr = cost.stride(1), sc = cost.stride(2);
  const scalar_t* data = cost.const_data_ptr<scalar_t>();
  // An item costs at least N * M steps; give each task ~32k of them so that small
  // batches run inline without waking the thread pool.
  const int64_t grain = std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(1, N * M));
  at::parallel_for(0, B, grain, [&](int64_t begin, int64_t end) {
    LapWorkspace ws;
    for (int64_t b = begin; b < end; ++b) {
      const LapShape shape = lap_shape(num_rows ? num_rows[b] : N, num_cols ? num_cols[b] : M);
      int64_t* rows_b = row_ind + b * K;
      int64_t* cols_b = col_ind + b * K;
      LapStatus s = kLapOk;
      if (shape.nr > 0) {
        ws.resize(shape.nr, shape.nc);
        s = load_problem(data + b * sb, sr, sc, shape, maximize, ws);
        if (s == kLapOk) s = solve_problem(ws, shape.nr, shape.nc);
      }
      status[b] = s;
      if (s == kLapOk && shape.nr > 0) {
        write_answer(ws, shape, K, rows_b, cols_b);
      } else {
        std::fill(rows_b, rows_b + K, -1);
        std::fill(cols_b, cols_b + K, -1);
      }
    }
  });
}

const int64_t* checked_sizes(const std::optional<at::Tensor>& sizes, at::Tensor& holder, int64_t limit,
                             const char* name, const char* dim) {
  if (!sizes.has_value()) return nullptr;
  holder = sizes->contiguous();
  const int64_t* p = holder.const_data_ptr<int64_t>();
  for (int64_t b = 0; b < holder.numel(); ++b) {
    TORCH_CHECK_VALUE(p[b] >= 0 && p[b] <= limit, name, "[", b, "] must be in [0, ", limit, "] (", dim,
                      " of cost), got ", p[b]);
  }
  return p;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> batched_linear_sum_assignment_cpu(
    const at::Tensor& cost, const std::optional<at::Tensor>& num_rows, const std::optional<at::Tensor>& num_cols,
    bool maximize) {
  check_lap_inputs(cost, num_rows, num_cols);
  const int64_t B = cost.size(0), K = std::min(cost.size(1), cost.size(2));
  at::Tensor rows_holder, cols_holder;
  const int64_t* rows = checked_sizes(num_rows, rows_holder, cost.size(1), "num_rows", "N");
  const int64_t* cols = checked_sizes(num_cols, cols_holder, cost.size(2), "num_cols", "M");
  const auto index_options = cost.options().dtype(at::kLong);
  at::Tensor row_ind = at::empty({B, K}, index_options);
  at::Tensor col_ind = at::empty({B, K}, index_options);
  at::Tensor status = at::empty({B}, cost.options().dtype(at::kInt));
  AT_DISPATCH_FLOATING_TYPES(cost.scalar_type(), "batched_linear_sum_assignment_cpu", [&] {
    solve_batch<scalar_t>(cost, rows, cols, maximize, row_ind.data_ptr<int64_t>(), col_ind.data_ptr<int64_t>(),
                          status.data_ptr<int32_t>());
  });
  return {row_ind, col_ind, status};
}

}  // namespace

TORCH_LIBRARY_IMPL(posetr, CPU, m) {
  m.impl("batched_linear_sum_assignment", &batched_linear_sum_assignment_cpu);
}

}  // namespace posetr
