// Batched linear assignment on the CPU: each batch item solved with scipy's
// shortest-augmenting-path steps from lap/lap_math.h; large batches are shared
// between the calling thread and ATen's inter-op pool (share_items).
//
// Each item's block is first copied into a contiguous buffer of its own type,
// transposed and negated as scipy does, and checked for NaN / -inf; the search
// widens float32 entries to float64 as it reads them (exactly scipy's values). Each search
// step then relaxes every column in one branch-free pass that the compiler
// vectorises, and a second pass picks among the columns of least cost by scipy's
// tie rule (lap_priority), so the answer is scipy's even with ties.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/Exceptions.h>
#include <torch/csrc/autograd/python_variable.h>
#include <torch/csrc/utils/pybind.h>
#include <torch/library.h>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <cmath>
#include <memory>
#include <optional>
#include <thread>
#include <tuple>
#include <type_traits>
#include <vector>

#include "common/cpu_clones.h"
#include "common/python_functions.h"
#include "lap/lap_checks.h"
#include "lap/lap_math.h"

namespace posetr {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Scratch memory of one task, grown to the largest item it solves. The costs are
// kept in the input's type (float32 costs are widened when read: exact, and half
// the memory traffic of a float64 copy); the search state is float64, as scipy's.
template <typename cost_t>
struct LapWorkspace {
  std::vector<cost_t> cost;
  // mask[j] is 0 for a column the current search has not reached and +inf for a
  // reached one: adding it keeps reached columns out of the vector passes.
  // path[j] is kept as a double (an exact row index) so that the relaxation pass
  // moves only doubles and vectorises cleanly.
  std::vector<double> u, v, spc, mask, path;
  std::vector<int32_t> row4col, col4row, remaining, pos, reached_cols, moved;

  void resize(int64_t nr, int64_t nc) {
    if (static_cast<int64_t>(cost.size()) < nr * nc) cost.resize(nr * nc);
    if (static_cast<int64_t>(u.size()) < nr) {
      u.resize(nr);
      col4row.resize(nr);
    }
    if (static_cast<int64_t>(v.size()) < nc) {
      for (auto* a : {&v, &spc, &mask, &path}) a->resize(nc);
      for (auto* a : {&row4col, &remaining, &pos, &reached_cols, &moved}) a->resize(nc);
    }
  }

  int64_t bytes() const {
    return static_cast<int64_t>(cost.size() * sizeof(cost_t) + (u.size() + 4 * v.size()) * sizeof(double) +
                                (col4row.size() + 5 * row4col.size()) * sizeof(int32_t));
  }
};

// Each thread keeps its workspace between calls, so that a training loop's small
// matchings neither allocate nor page-fault; one grown past this is freed after use.
constexpr int64_t kKeptWorkspaceBytes = 1 << 20;

// The vector passes below are compiled for AVX-512, AVX2 and the baseline and
// picked at load time; they hold only exact operations (adds, negation, compares,
// selects), so every version computes the same bits.
#define POSETR_LAP_CLONES POSETR_TARGET_CLONES("avx512f", "avx2", "default")

// out[k] = sign * out[k] over the n entries of a copied problem; true if one is NaN
// or -inf after the sign (scipy's validity test). Negation is exact in either type.
template <typename cost_t>
POSETR_LAP_CLONES bool sign_and_check(cost_t* __restrict out, int64_t n, cost_t sign) {
  int invalid = 0;
#pragma omp simd reduction(| : invalid)
  for (int64_t k = 0; k < n; ++k) {
    const cost_t x = sign * out[k];
    invalid |= lap_cost_invalid(x);
    out[k] = x;
  }
  return invalid != 0;
}

// out[i * nc + j] = in[i + j * s_col] for a problem whose rows are adjacent in
// memory: the transpose of a row-major block, which is how DETR's [queries, people]
// costs are solved. 4 x 4 tiles transposed in SSE registers cost about a third of
// an element-by-element strided copy.
void load_adjacent_rows(const float* __restrict in, int64_t s_col, int64_t nr, int64_t nc, float* __restrict out) {
  int64_t i0 = 0;
#if defined(__SSE2__)
  for (; i0 + 4 <= nr; i0 += 4) {
    int64_t j0 = 0;
    for (; j0 + 4 <= nc; j0 += 4) {
      const float* tile = in + i0 + j0 * s_col;
      __m128 c0 = _mm_loadu_ps(tile), c1 = _mm_loadu_ps(tile + s_col);
      __m128 c2 = _mm_loadu_ps(tile + 2 * s_col), c3 = _mm_loadu_ps(tile + 3 * s_col);
      _MM_TRANSPOSE4_PS(c0, c1, c2, c3);  // c_k: row i0 + k, columns j0 .. j0 + 3
      _mm_storeu_ps(out + i0 * nc + j0, c0);
      _mm_storeu_ps(out + (i0 + 1) * nc + j0, c1);
      _mm_storeu_ps(out + (i0 + 2) * nc + j0, c2);
      _mm_storeu_ps(out + (i0 + 3) * nc + j0, c3);
    }
    for (; j0 < nc; ++j0) {
      for (int64_t i = i0; i < i0 + 4; ++i) out[i * nc + j0] = in[i + j0 * s_col];
    }
  }
#endif
  for (; i0 < nr; ++i0) {
    for (int64_t j = 0; j < nc; ++j) out[i0 * nc + j] = in[i0 + j * s_col];
  }
}

// out[i * nc + j] = sign * in[i * s_row + j * s_col] for the solved problem's nr x nc
// entries (s_row, s_col swapped by the caller for a transposed problem). Returns
// true if an entry is NaN or -inf after the sign (scipy's validity test).
template <typename scalar_t>
bool load_problem(const scalar_t* __restrict in, int64_t s_row, int64_t s_col, int64_t nr, int64_t nc,
                  scalar_t sign, scalar_t* __restrict out) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    if (s_row == 1 && s_col != 1) {
      load_adjacent_rows(in, s_col, nr, nc, out);
      return sign_and_check(out, nr * nc, sign);
    }
  }
  // A plain copy and then one vector pass: a single strided pass that also negates
  // and checks compiles to gathers for runtime strides and measured slower
  // (B=32, N=13, M=300, one thread: 128 vs 79 us).
  for (int64_t i = 0; i < nr; ++i) {
    for (int64_t j = 0; j < nc; ++j) out[i * nc + j] = in[i * s_row + j * s_col];
  }
  return sign_and_check(out, nr * nc, sign);
}

// The two vector passes of a search step.
// First step of a search (spc all +inf, nothing reached): every column's path is
// the edge from row i. Returns the least cost.
template <typename cost_t>
POSETR_LAP_CLONES double relax_first(const cost_t* __restrict row, double u_i, const double* __restrict v,
                                     double* __restrict spc, double* __restrict path, double i, int64_t nc) {
  double lowest = kInf;
#pragma omp simd reduction(min : lowest)
  for (int64_t j = 0; j < nc; ++j) {
    const double r = lap_reduced_cost(0.0, static_cast<double>(row[j]), u_i, v[j]);
    spc[j] = r;
    path[j] = i;
    lowest = std::min(lowest, r);
  }
  return lowest;
}

// Later steps: relax the columns not reached yet from row i. Returns the least cost.
template <typename cost_t>
POSETR_LAP_CLONES double relax(const cost_t* __restrict row, double min_val, double u_i, const double* __restrict v,
                               const double* __restrict mask, double* __restrict spc, double* __restrict path,
                               double i, int64_t nc) {
  double lowest = kInf;
#pragma omp simd reduction(min : lowest)
  for (int64_t j = 0; j < nc; ++j) {
    // + mask: +inf for reached columns, which then never compare shorter.
    const double r = lap_reduced_cost(min_val, static_cast<double>(row[j]), u_i, v[j]) + mask[j];
    const bool shorter = r < spc[j];
    spc[j] = shorter ? r : spc[j];
    path[j] = shorter ? i : path[j];
    lowest = std::min(lowest, spc[j] + mask[j]);
  }
  return lowest;
}

// Counts the unreached columns of cost `lowest`; `last` gets the last one.
POSETR_LAP_CLONES int64_t count_least(const double* __restrict spc, const double* __restrict mask, double lowest,
                                      int64_t nc, int64_t& last) {
  int64_t count = 0, at = -1;
  for (int64_t j = 0; j < nc; ++j) {
    const bool least = spc[j] + mask[j] == lowest;
    count += least;
    at = least ? j : at;
  }
  last = at;
  return count;
}

// One search (scipy's augmenting_path) from row cur_row. Returns the sink column,
// or -1 if the problem is infeasible; sets min_val and the reached columns.
// remaining/pos hold scipy's initial order on entry and again on return.
template <typename cost_t>
int64_t shortest_path(LapWorkspace<cost_t>& ws, int64_t nc, int64_t cur_row, double& min_val, int64_t& num_reached) {
  const cost_t* cost = ws.cost.data();
  double *v = ws.v.data(), *spc = ws.spc.data(), *mask = ws.mask.data(), *path = ws.path.data();
  int32_t *pos = ws.pos.data(), *remaining = ws.remaining.data(), *reached = ws.reached_cols.data();
  int32_t* moved = ws.moved.data();
  const int32_t* row4col = ws.row4col.data();
  int64_t num_remaining = nc;
  num_reached = 0;
  min_val = 0;
  int64_t i = cur_row, sink = -1;
  while (true) {
    const cost_t* row = cost + i * nc;
    const double lowest = num_reached == 0
                              ? relax_first(row, ws.u[i], v, spc, path, static_cast<double>(i), nc)
                              : relax(row, min_val, ws.u[i], v, mask, spc, path, static_cast<double>(i), nc);
    if (lowest == kInf) break;  // no finite path: infeasible
    // Among the columns of least cost, scipy's choice (usually there is one).
    int64_t j;
    if (count_least(spc, mask, lowest, nc, j) > 1) {
      LapCandidate best = lap_no_candidate();
      for (int64_t c = 0; c < nc; ++c) {
        if (spc[c] + mask[c] != lowest) continue;
        const LapCandidate candidate{lowest, lap_priority(pos[c], row4col[c] == -1, nc), c};
        if (lap_better(candidate, best)) best = candidate;
      }
      j = best.col;
    }
    min_val = lowest;
    mask[j] = kInf;
    moved[num_reached] = remaining[num_remaining - 1];
    reached[num_reached++] = static_cast<int32_t>(j);
    lap_remove_column(remaining, pos, num_remaining, j);
    if (row4col[j] == -1) {
      sink = j;
      break;
    }
    i = row4col[j];
  }
  // Undo this search's marks and swap-removals.
  for (int64_t k = 0; k < num_reached; ++k) {
    mask[reached[k]] = 0.0;
    for (const int32_t c : {reached[k], moved[k]}) {
      remaining[nc - 1 - c] = c;
      pos[c] = static_cast<int32_t>(nc - 1 - c);
    }
  }
  return sink;
}

// Solves the nr x nc problem in ws.cost (scipy's solve()); col4row gets the answer.
template <typename cost_t>
LapStatus solve_problem(LapWorkspace<cost_t>& ws, int64_t nr, int64_t nc) {
  std::fill(ws.u.begin(), ws.u.begin() + nr, 0.0);
  std::fill(ws.v.begin(), ws.v.begin() + nc, 0.0);
  std::fill(ws.mask.begin(), ws.mask.begin() + nc, 0.0);
  std::fill(ws.row4col.begin(), ws.row4col.begin() + nc, -1);
  std::fill(ws.col4row.begin(), ws.col4row.begin() + nr, -1);
  lap_reset_remaining(ws.remaining.data(), ws.pos.data(), nc, 0, 1);
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
template <typename cost_t>
void write_answer(const LapWorkspace<cost_t>& ws, const LapShape& shape, int64_t K, int64_t* row_ind,
                  int64_t* col_ind) {
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

// Runs work(begin, end) over [0, total) in chunks claimed from a shared counter by
// the calling thread and by helpers on ATen's inter-op pool. Unlike a fork-join
// region, the caller never waits for a helper that has not started: on a busy
// machine it simply solves every chunk itself, and waits only for chunks a helper
// has claimed. (OpenMP's barrier made a 100-us batch take tens of ms under load.)
template <typename Work>
void share_items(int64_t total, int64_t chunk, const Work& work) {
  struct Progress {
    std::atomic<int64_t> next{0}, finished{0};
  };
  auto progress = std::make_shared<Progress>();
  // A helper that wakes after the caller returned finds no chunk left and touches
  // nothing but `progress`, which it co-owns.
  auto run = [progress, total, chunk](const Work* w) {
    while (true) {
      const int64_t begin = progress->next.fetch_add(chunk);
      if (begin >= total) return;
      const int64_t end = std::min(begin + chunk, total);
      (*w)(begin, end);
      progress->finished.fetch_add(end - begin);
    }
  };
  const int helpers = std::min<int64_t>(at::get_num_threads() - 1, (total + chunk - 1) / chunk - 1);
  for (int h = 0; h < helpers; ++h) at::launch([run, w = &work] { run(w); });
  run(&work);
  while (progress->finished.load() < total) std::this_thread::yield();
}

template <typename scalar_t>
void solve_batch(const at::Tensor& cost, const int64_t* num_rows, const int64_t* num_cols, bool maximize,
                 int64_t* row_ind, int64_t* col_ind, int32_t* status) {
  const int64_t B = cost.size(0), N = cost.size(1), M = cost.size(2), K = std::min(N, M);
  const int64_t sb = cost.stride(0), sr = cost.stride(1), sc = cost.stride(2);
  const scalar_t* data = cost.const_data_ptr<scalar_t>();
  auto solve_items = [&, K](int64_t begin, int64_t end) {
    thread_local LapWorkspace<scalar_t> ws;
    for (int64_t b = begin; b < end; ++b) {
      const LapShape shape = lap_shape(num_rows ? num_rows[b] : N, num_cols ? num_cols[b] : M);
      int64_t* rows_b = row_ind + b * K;
      int64_t* cols_b = col_ind + b * K;
      LapStatus s = kLapOk;
      if (shape.nr > 0) {
        ws.resize(shape.nr, shape.nc);
        const int64_t s_row = shape.transpose ? sc : sr, s_col = shape.transpose ? sr : sc;
        s = load_problem(data + b * sb, s_row, s_col, shape.nr, shape.nc, scalar_t(maximize ? -1 : 1), ws.cost.data())
                ? kLapInvalid
                : kLapOk;
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
    if (ws.bytes() > kKeptWorkspaceBytes) ws = LapWorkspace<scalar_t>{};
  };
  // An item costs at least N * M steps: below ~64k in all the batch runs inline.
  if (B * N * M < (1 << 16) || at::get_num_threads() < 2 || at::in_parallel_region()) {
    solve_items(0, B);
  } else {
    share_items(B, std::max<int64_t>(1, (1 << 12) / std::max<int64_t>(1, N * M)), solve_items);
  }
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

// scipy's message for the first failed item (prefixed with its index in a batch).
void raise_for_status(const int32_t* status, int64_t B) {
  for (int64_t b = 0; b < B; ++b) {
    if (status[b] == kLapOk) continue;
    const char* message =
        status[b] == kLapInvalid ? "matrix contains invalid numeric entries" : "cost matrix is infeasible";
    if (B == 1) TORCH_CHECK_VALUE(false, message);
    TORCH_CHECK_VALUE(false, "cost[", b, "]: ", message);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> batched_linear_sum_assignment_cpu(
    const at::Tensor& cost, const std::optional<at::Tensor>& num_rows, const std::optional<at::Tensor>& num_cols,
    bool maximize, bool check) {
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
  if (check) raise_for_status(status.const_data_ptr<int32_t>(), B);
  return {row_ind, col_ind, status};
}

// posetr._C.batched_linear_sum_assignment_cpu(cost, num_rows, num_cols, maximize,
// check): the op's CPU kernel called straight from Python (plain CPU tensors, eager
// mode; posetr/ops/lap.py decides when). The GIL is released while solving.
PyObject* batched_linear_sum_assignment_py(PyObject* /*self*/, PyObject* const* args, Py_ssize_t nargs) {
  HANDLE_TH_ERRORS
  TORCH_CHECK(nargs == 5, "batched_linear_sum_assignment_cpu takes 5 arguments, got ", nargs);
  TORCH_CHECK_TYPE(THPVariable_Check(args[0]), "cost must be a Tensor");
  std::optional<at::Tensor> sizes[2];
  for (int k = 0; k < 2; ++k) {
    if (args[1 + k] == Py_None) continue;
    TORCH_CHECK_TYPE(THPVariable_Check(args[1 + k]), k ? "num_cols" : "num_rows", " must be a Tensor or None");
    sizes[k] = THPVariable_Unpack(args[1 + k]);
  }
  const at::Tensor& cost = THPVariable_Unpack(args[0]);
  const bool maximize = PyObject_IsTrue(args[3]) == 1, check = PyObject_IsTrue(args[4]) == 1;
  std::tuple<at::Tensor, at::Tensor, at::Tensor> result;
  if (cost.numel() < 4096) {  // too little work to be worth handing the GIL over
    result = batched_linear_sum_assignment_cpu(cost, sizes[0], sizes[1], maximize, check);
  } else {
    pybind11::gil_scoped_release no_gil;
    result = batched_linear_sum_assignment_cpu(cost, sizes[0], sizes[1], maximize, check);
  }
  PyObject* out = PyTuple_New(3);
  if (out == nullptr) return nullptr;
  PyTuple_SET_ITEM(out, 0, THPVariable_Wrap(std::move(std::get<0>(result))));  // steals the new references
  PyTuple_SET_ITEM(out, 1, THPVariable_Wrap(std::move(std::get<1>(result))));
  // With check, every item succeeded: the status is all zeros and comes back as None.
  PyTuple_SET_ITEM(out, 2, check ? Py_NewRef(Py_None) : THPVariable_Wrap(std::move(std::get<2>(result))));
  return out;
  END_HANDLE_TH_ERRORS
}

const RegisterPythonFunction register_fast_path(PyMethodDef{
    "batched_linear_sum_assignment_cpu", reinterpret_cast<PyCFunction>(reinterpret_cast<void*>(
                                             &batched_linear_sum_assignment_py)),
    METH_FASTCALL, "The CPU kernel of torch.ops.posetr.batched_linear_sum_assignment without the dispatcher."});

}  // namespace

TORCH_LIBRARY_IMPL(posetr, CPU, m) {
  m.impl("batched_linear_sum_assignment", &batched_linear_sum_assignment_cpu);
}

// The op has integer outputs only: skipping the boxed autograd fallback (for CPU
// and CUDA tensors alike) saves microseconds per call on small batches.
TORCH_LIBRARY_IMPL(posetr, Autograd, m) {
  m.impl("batched_linear_sum_assignment", torch::CppFunction::makeFallthrough());
}

}  // namespace posetr
