"""The dtypes the multi-scale deformable sampling ops (MSDA, EMSDA) take.

``value`` is float64, float32, float16 or bfloat16. ``sampling_locations`` and
``attention_weights`` each have the dtype of ``value`` or, when ``value`` is float16 or
bfloat16, float32: autocast's mixed precision, where the value comes out of a half
``nn.Linear`` and the locations and softmaxed weights stay float32. The kernels then
read the locations and weights in float32 (a bfloat16 location on a 167-pixel level
is off by up to 0.65 pixel) and return their gradients in each one's own dtype.

The C++ checks (csrc/ms_deform_attn/ms_deform_attn_checks.h) enforce this rule; the
fake kernels repeat it (:func:`check_param_dtypes`), and the mmcv / Deformable DETR
drop-ins convert whatever the originals accept to it (:func:`as_param_dtype`).
"""
import torch

REDUCED_PRECISION = (torch.float16, torch.bfloat16)

# c10::ScalarType names, as the C++ checks print dtypes.
_SCALAR_TYPE_NAMES = {
    torch.float64: "Double",
    torch.float32: "Float",
    torch.float16: "Half",
    torch.bfloat16: "BFloat16",
    torch.int64: "Long",
    torch.int32: "Int",
    torch.int16: "Short",
    torch.int8: "Char",
    torch.uint8: "Byte",
    torch.bool: "Bool",
}


def scalar_type_name(dtype):
    """``dtype`` as the C++ checks name it (torch.float32 -> "Float")."""
    return _SCALAR_TYPE_NAMES.get(dtype, str(dtype))


def param_dtypes(value_dtype):
    """The dtypes ``sampling_locations`` and ``attention_weights`` may have for a value of ``value_dtype``."""
    return (value_dtype, torch.float32) if value_dtype in REDUCED_PRECISION else (value_dtype,)


def check_param_dtypes(value, sampling_locations, attention_weights):
    """ValueError with the C++ check's message unless both follow :func:`param_dtypes` (a non-floating
    value is left to the value check)."""
    if not value.is_floating_point():
        return
    allowed = param_dtypes(value.dtype)
    for name, tensor in (("sampling_locations", sampling_locations), ("attention_weights", attention_weights)):
        torch._check_value(
            tensor.dtype in allowed,
            lambda: f"{name} must have the dtype of value ({scalar_type_name(value.dtype)})"
            f"{' or be float32' if len(allowed) > 1 else ''}, got {scalar_type_name(tensor.dtype)}",
        )


def as_param_dtype(tensor, value):
    """``tensor`` (sampling locations or attention weights of any real dtype, as mmcv's
    ``type_as(value)`` accepts) in a dtype the kernels take: unchanged when it already is one,
    else float32 for a float16/bfloat16 value (where mmcv would round to the value's dtype)
    and the value's dtype otherwise. Differentiable: the gradient comes back in ``tensor``'s dtype."""
    if not value.is_floating_point() or tensor.dtype in param_dtypes(value.dtype):
        return tensor
    return tensor.to(torch.float32 if value.dtype in REDUCED_PRECISION else value.dtype)
