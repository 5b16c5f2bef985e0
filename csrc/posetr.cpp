// Every posetr op schema, declared once. Backends register implementations with
// TORCH_LIBRARY_IMPL(posetr, CPU|CUDA, m) next to their kernels; fake kernels and
// autograd formulas are registered from Python (posetr/ops/).
#include <Python.h>
#include <torch/library.h>

#include "common/python_functions.h"

// `import posetr._C` loads this library, which runs the registrations below. Every
// op is reached through torch.ops.posetr; the module itself only holds the eager
// fast paths of common/python_functions.h.
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  PyObject* module = PyModule_Create(&module_def);
  auto& functions = posetr::python_functions();
  functions.push_back(PyMethodDef{nullptr, nullptr, 0, nullptr});
  if (module != nullptr && PyModule_AddFunctions(module, functions.data()) < 0) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}

TORCH_LIBRARY(posetr, m) {
  // Multi-scale deformable attention (Deformable DETR, Zhu et al. 2021, eq. 2).
  m.def(
      "ms_deform_attn(Tensor value, Tensor value_spatial_shapes, Tensor value_level_start_index, "
      "Tensor sampling_locations, Tensor attention_weights, SymInt im2col_step) -> Tensor");
  m.def(
      "_ms_deform_attn_backward(Tensor value, Tensor value_spatial_shapes, Tensor value_level_start_index, "
      "Tensor sampling_locations, Tensor attention_weights, Tensor grad_output, SymInt im2col_step) "
      "-> (Tensor, Tensor, Tensor)");
  // EMSDA's fused sampling (Poseur, Mao et al. 2022): every head samples all C channels of the
  // un-projected value [N, S, C] -> [N, Lq, M, C]; posetr.ops.emsda adds the per-head projection.
  m.def(
      "emsda_sample(Tensor value, Tensor value_spatial_shapes, Tensor value_level_start_index, "
      "Tensor sampling_locations, Tensor attention_weights, SymInt im2col_step) -> Tensor");
  m.def(
      "_emsda_sample_backward(Tensor value, Tensor value_spatial_shapes, Tensor value_level_start_index, "
      "Tensor sampling_locations, Tensor attention_weights, Tensor grad_output, SymInt im2col_step) "
      "-> (Tensor, Tensor, Tensor)");
  // Batched linear assignment (scipy.optimize.linear_sum_assignment per item of cost[B, N, M]):
  // row_ind, col_ind [B, min(N, M)] int64 padded with -1, status [B] int32 (0 ok, 1 invalid entries,
  // 2 infeasible, 3 size out of range). num_rows/num_cols [B] int64 give each item's block.
  // check: the CPU kernel raises scipy's ValueError for a failed item (CUDA never syncs to raise).
  m.def(
      "batched_linear_sum_assignment(Tensor cost, Tensor? num_rows, Tensor? num_cols, bool maximize, bool check) "
      "-> (Tensor, Tensor, Tensor)");
  // Object keypoint similarity (pycocotools COCOeval.computeOks): every (prediction, person)
  // pair for matching; matched pairs with an optional per-pair loss transform, and its backward.
  m.def("pairwise_oks(Tensor pred, Tensor gt, Tensor visible, Tensor area, Tensor sigmas) -> Tensor");
  m.def(
      "oks(Tensor pred, Tensor gt, Tensor visible, Tensor area, Tensor sigmas, str transform=\"identity\", "
      "float eps=1e-6) -> Tensor");
  m.def(
      "_oks_backward(Tensor grad, Tensor pred, Tensor gt, Tensor visible, Tensor area, Tensor sigmas, "
      "str transform, float eps) -> Tensor");
}
