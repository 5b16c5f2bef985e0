// Plain CPython functions that posetr._C exposes beside the torch ops: eager fast
// paths that skip the dispatcher's per-call cost (microseconds, which matter for
// ops whose whole work is that small, like a batch of tiny assignment problems).
// Each registers itself from its own file; PyInit__C adds them to the module.
#pragma once

#include <Python.h>

#include <vector>

namespace posetr {

inline std::vector<PyMethodDef>& python_functions() {
  static std::vector<PyMethodDef> functions;
  return functions;
}

struct RegisterPythonFunction {
  explicit RegisterPythonFunction(PyMethodDef def) { python_functions().push_back(def); }
};

}  // namespace posetr
