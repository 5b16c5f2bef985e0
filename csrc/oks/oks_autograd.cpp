// Autograd kernels of the OKS ops, for every backend. posetr::oks: the forward
// redispatches to the CPU or CUDA kernel and the backward calls posetr::_oks_backward.
// posetr::pairwise_oks is not differentiable: autograd falls through to the kernel.
//
// It is written in C++ rather than with torch.library.register_autograd because the
// op's main use (PETR's OKS loss on ~600 matched pairs per step) is a few tens of
// microseconds of kernel work, and a Python autograd formula would add about as much
// again in interpreter overhead on every step.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <string>

namespace posetr {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

at::Tensor call_oks(const at::Tensor& pred, const at::Tensor& gt, const at::Tensor& visible, const at::Tensor& area,
                    const at::Tensor& sigmas, c10::string_view transform, double eps) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("posetr::oks", "")
                             .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                               const at::Tensor&, const at::Tensor&, c10::string_view, double)>();
  return op.call(pred, gt, visible, area, sigmas, transform, eps);
}

at::Tensor call_oks_backward(const at::Tensor& grad, const at::Tensor& pred, const at::Tensor& gt,
                             const at::Tensor& visible, const at::Tensor& area, const at::Tensor& sigmas,
                             c10::string_view transform, double eps) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("posetr::_oks_backward", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                            const at::Tensor&, const at::Tensor&, c10::string_view, double)>();
  return op.call(grad, pred, gt, visible, area, sigmas, transform, eps);
}

class OksFunction : public torch::autograd::Function<OksFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& pred, const at::Tensor& gt,
                            const at::Tensor& visible, const at::Tensor& area, const at::Tensor& sigmas,
                            c10::string_view transform, double eps) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({pred, gt, visible, area, sigmas});
    ctx->saved_data["transform"] = std::string(transform);
    ctx->saved_data["eps"] = eps;
    return call_oks(pred, gt, visible, area, sigmas, transform, eps);
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const std::string transform = ctx->saved_data["transform"].toStringRef();
    const at::Tensor grad_pred = call_oks_backward(grads[0], saved[0], saved[1], saved[2], saved[3], saved[4],
                                                   transform, ctx->saved_data["eps"].toDouble());
    // OKS depends on pred - gt only.
    const at::Tensor grad_gt = ctx->needs_input_grad(1) ? -grad_pred : at::Tensor();
    return {grad_pred, grad_gt, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor oks_autograd(const at::Tensor& pred, const at::Tensor& gt, const at::Tensor& visible,
                        const at::Tensor& area, const at::Tensor& sigmas, c10::string_view transform, double eps) {
  return OksFunction::apply(pred, gt, visible, area, sigmas, transform, eps);
}

}  // namespace

TORCH_LIBRARY_IMPL(posetr, Autograd, m) {
  m.impl("oks", &oks_autograd);
  // A matching cost: its output never requires grad (like a detached tensor).
  m.impl("pairwise_oks", torch::CppFunction::makeFallthrough());
}

}  // namespace posetr
