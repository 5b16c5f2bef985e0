// The per-step logic of the linear-assignment solver, shared by the CPU loop
// (lap_cpu.cpp) and the one-warp-per-problem CUDA kernel (lap_cuda.cu).
//
// Algorithm: shortest augmenting path for the rectangular assignment problem,
// Jonker-Volgenant style, as described by D. F. Crouse, "On implementing 2D
// rectangular assignment algorithms", IEEE TAES 52(4), 2016, pp. 1685-1686, and as
// implemented by scipy.optimize.linear_sum_assignment (rectangular_lsap.cpp). Every
// arithmetic step below is scipy's, in scipy's order and in float64, so the
// solver returns scipy's indices bit for bit, ties included:
//  - a problem with more rows than columns is solved transposed;
//  - maximize negates the costs, and only then NaN or -inf make it invalid
//    (so +inf is invalid under maximize, -inf is forbidden);
//  - rows are added one at a time (0, 1, ...); each search scans the columns not
//    yet reached in scipy's order: initially nc-1, nc-2, ..., 0, and a reached
//    column is replaced by the last remaining one (swap-remove);
//  - the scan keeps the first column of least reduced cost in that order, except
//    that an equal-cost column without a row (a sink) replaces it. Equivalently:
//    among the columns of least cost, the free one latest in scan order if any is
//    free, else the earliest. lap_priority() encodes that order so the scan can run
//    in any order (SIMD lanes on the CPU, a shuffle reduction on the GPU).
//  - a search whose least cost is +inf proves the problem infeasible.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/host_device.h"

namespace posetr {

// Index arrays (path, row4col, col4row, remaining, pos) are int32: the op checks
// that N and M are below 2^31.

// Per-problem result codes written by both backends.
enum LapStatus : int32_t {
  kLapOk = 0,
  kLapInvalid = 1,     // NaN, or -inf after the maximize negation
  kLapInfeasible = 2,  // no complete matching of finite cost
  kLapBadSize = 3,     // num_rows/num_cols outside [0, N] / [0, M] (CUDA only; the CPU raises)
};

// The (rows, cols) of the problem actually solved for an n x m block: scipy solves
// the transposed problem when m < n, so that nr <= nc.
struct LapShape {
  int64_t nr, nc;
  bool transpose;
};

POSETR_HD LapShape lap_shape(int64_t n, int64_t m) {
  const bool transpose = m < n;
  return LapShape{transpose ? m : n, transpose ? n : m, transpose};
}

// Entry (i, j) of the solved problem: `sign` (-1 under maximize, else 1) times the
// input entry, widened to float64 as scipy does. A transposed problem is read by
// swapping the strides (s_row, s_col).
template <typename scalar_t>
POSETR_HD double lap_load_cost(const scalar_t* block, int64_t s_row, int64_t s_col, double sign, int64_t i,
                               int64_t j) {
  return sign * static_cast<double>(block[i * s_row + j * s_col]);
}

// scipy's validity test (NaN or -inf), applied to the transformed cost (float32 or
// float64: widening changes neither); written as one comparison so that it vectorises.
template <typename T>
POSETR_HD bool lap_cost_invalid(T x) {
  return !(x > -static_cast<T>(INFINITY));
}

// Reduced cost of column j seen from row i at path length min_val, in scipy's
// evaluation order (((min_val + c) - u_i) - v_j): exact equality needs that order.
POSETR_HD double lap_reduced_cost(double min_val, double c, double u_i, double v_j) { return min_val + c - u_i - v_j; }

// Rank of an equal-cost column in scipy's scan: the larger wins. `pos` is the
// column's position in the remaining list; free columns (no row yet) outrank the
// assigned ones, the latest free one first, then the earliest assigned one.
POSETR_HD int64_t lap_priority(int64_t pos, bool free_column, int64_t nc) {
  return free_column ? nc + pos : nc - 1 - pos;
}

// One scan candidate: the column, its shortest-path cost and its priority.
struct LapCandidate {
  double cost;
  int64_t priority;
  int64_t col;
};

// True if `a` should be taken over `b` (least cost, then highest priority).
POSETR_HD bool lap_better(const LapCandidate& a, const LapCandidate& b) {
  return a.cost < b.cost || (a.cost == b.cost && a.priority > b.priority);
}

POSETR_HD LapCandidate lap_no_candidate() { return LapCandidate{static_cast<double>(INFINITY), -1, -1}; }

// Relaxes the not-yet-reached column j from row i: shortens its path if row i
// offers a cheaper one and returns it as a candidate.
POSETR_HD LapCandidate lap_relax(double min_val, double c_ij, double u_i, double* v, double* spc, int32_t* path,
                                 const int32_t* row4col, const int32_t* pos, int64_t i, int64_t j, int64_t nc) {
  const double r = lap_reduced_cost(min_val, c_ij, u_i, v[j]);
  if (r < spc[j]) {
    spc[j] = r;
    path[j] = static_cast<int32_t>(i);
  }
  return LapCandidate{spc[j], lap_priority(pos[j], row4col[j] == -1, nc), j};
}

// Marks column j reached: swap-removes it from the remaining list (scipy's
// `remaining[index] = remaining[--num_remaining]`), keeping pos[] its inverse.
POSETR_HD void lap_remove_column(int32_t* remaining, int32_t* pos, int64_t& num_remaining, int64_t j) {
  const int32_t at = pos[j];
  const int32_t last = remaining[--num_remaining];
  remaining[at] = last;
  pos[last] = at;
}

// Fills the remaining list in scipy's initial order nc-1, ..., 0 (entries [begin,
// end) with the given step, so that warp lanes can share the work).
POSETR_HD void lap_reset_remaining(int32_t* remaining, int32_t* pos, int64_t nc, int64_t begin, int64_t step) {
  for (int64_t it = begin; it < nc; it += step) {
    remaining[it] = static_cast<int32_t>(nc - 1 - it);
    pos[nc - 1 - it] = static_cast<int32_t>(it);
  }
}

// Dual update for one column reached by the search that ended at path length
// min_val: v[j] -= min_val - spc[j], and the row that held it (if any, i.e. every
// reached column but the sink) gets u[row] += min_val - spc[j].
POSETR_HD void lap_update_duals(double min_val, double* u, double* v, const double* spc, const int32_t* row4col,
                                int64_t j) {
  const double delta = min_val - spc[j];
  v[j] -= delta;
  const int32_t row = row4col[j];
  if (row >= 0) u[row] += delta;
}

// Flips the alternating path that ends at `sink` (scipy's "augment previous
// solution"); row cur_row gets its first column. path_t is int32_t or a double
// holding an exact row index (the CPU's vector-friendly layout).
template <typename path_t>
POSETR_HD void lap_augment(const path_t* path, int32_t* row4col, int32_t* col4row, int64_t sink, int64_t cur_row) {
  int32_t j = static_cast<int32_t>(sink);
  while (true) {
    const int32_t i = static_cast<int32_t>(path[j]);
    row4col[j] = i;
    const int32_t previous = col4row[i];
    col4row[i] = j;
    j = previous;
    if (i == cur_row) break;
  }
}

}  // namespace posetr
