"""LoRA layers for training: dropout whose one-byte mask is kept for backward, adapter outputs added in place, and
adapters averaged over checkpoints or scaled toward the base model."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from peft import get_peft_model_state_dict, set_peft_model_state_dict
from peft.tuners.lora import Linear as PeftLoraLinear
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file
from torch import nn

MASK_STEPS = 2**15  # each draw is 15 bits: dropout probabilities are kept to 1/MASK_STEPS


def drop_mask(shape: torch.Size, p: float, device: torch.device) -> torch.Tensor:
    """A boolean mask true with probability p, four 15-bit draws cut from each 64-bit random word.

    The generator's time goes by its calls: int16's draw, a call per element, took twice as long, F.dropout's 4-5x.
    """
    count = math.prod(shape)
    words = torch.empty((count + 3) // 4, dtype=torch.int64, device=device).random_()  # 63 random bits each
    draws = words.view(torch.int16)[:count].bitwise_and_(MASK_STEPS - 1)
    return (draws < round(p * MASK_STEPS)).view(shape)


_SCRATCH: dict[tuple[torch.dtype, torch.device, bool], torch.Tensor] = {}
BITS = {2: torch.int16, 4: torch.int32, 8: torch.int64}  # an integer view of each float width


def _scratch(shape: torch.Size, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A tensor of shape in one buffer per dtype, device and mode, kept between calls: its contents last until the next
    call.

    The dropped copies, integer masks and adapter products live for one operation each, and fresh blocks of their
    size are new mappings (see core.memory.map_large_allocations), which the kernel faults in and zeroes page by page
    on every step. A buffer made under inference mode may not change outside it, so scoring keeps its own.
    """
    count, key = math.prod(shape), (dtype, device, torch.is_inference_mode_enabled())
    buffer = _SCRATCH.get(key)
    if buffer is None or buffer.numel() < count:
        buffer = _SCRATCH[key] = torch.empty(count, dtype=dtype, device=device)
    return buffer[:count].view(shape)


def _zeroed(tensor: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
    """tensor, zeroed in place where drop is true: a bitwise and with the mask, a fifth of masked_fill_'s time on CPU."""
    bits = BITS[tensor.element_size()]
    keep = _scratch(drop.shape, bits, drop.device).copy_(drop).sub_(1)  # 0 where dropped, all ones where kept
    tensor.view(bits).bitwise_and_(keep)
    return tensor


def _dropped(x: torch.Tensor, drop: torch.Tensor, scale: float, dtype: torch.dtype) -> torch.Tensor:
    """x times scale, in dtype, zeroed where drop is true, in the scratch buffer: use it before the next call.

    The product rounds in x's dtype and then in dtype, as dropout before autocast's cast rounds it; a multiply that
    writes another dtype took four times as long as a multiply and a copy.
    """
    product = torch.mul(x, scale, out=_scratch(x.shape, x.dtype, x.device))
    return _zeroed(product if product.dtype == dtype else _scratch(x.shape, dtype, x.device).copy_(product), drop)


class _DroppedLinear(torch.autograd.Function):
    """linear(dropout(x)) that saves x and the mask, not the dropped copy of x.

    Each direction writes x's dropped copy once, in autocast's dtype, with the same values as F.dropout and then
    autocast's cast would give.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, p):
        drop, scale = drop_mask(x.shape, p, x.device), 1 / (1 - p)
        device = x.device.type
        enabled = torch.is_autocast_enabled(device)
        ctx.dtype = torch.get_autocast_dtype(device) if enabled else x.dtype
        ctx.scale, ctx.has_bias, ctx.weight_dtype = scale, bias is not None, weight.dtype
        ctx.save_for_backward(x, drop, weight if ctx.needs_input_grad[0] else None)
        return F.linear(_dropped(x, drop, scale, ctx.dtype), weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x, drop, weight = ctx.saved_tensors
        grad_x = grad_weight = grad_bias = None
        cast = grad.to(ctx.dtype)
        if ctx.needs_input_grad[0]:
            grad_x = _zeroed(cast @ weight.to(ctx.dtype), drop).mul_(ctx.scale)
        if ctx.needs_input_grad[1]:
            inputs = _dropped(x, drop, ctx.scale, ctx.dtype).reshape(-1, x.shape[-1])
            grad_weight = (cast.reshape(-1, cast.shape[-1]).T @ inputs).to(ctx.weight_dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad.reshape(-1, grad.shape[-1]).sum(0)
        return grad_x, grad_weight, grad_bias, None


class DroppedLinear(nn.Linear):
    """LoRA's A projection with its dropout inside it, keeping the input the layers share and a one-byte mask.

    peft's `lora_B(lora_A(dropout(x)))` keeps dropout(x) alive for every adapted projection, so q, k and v hold
    three copies of one input, and fc2 one four times the model width. Here backward keeps x (one tensor for q, k
    and v) and each projection's mask, and F.dropout's slow mask is drawn once (drop_mask).
    """

    dropout_p: float = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and self.dropout_p > 0 and torch.is_grad_enabled()):
            return super().forward(x)
        return _DroppedLinear.apply(x, self.weight, self.bias, self.dropout_p)


class _AddedLora(torch.autograd.Function):
    """result + linear(a, weight) * scaling, written into result; the product lives in the scratch buffer.

    peft's `result + lora_B(a) * scaling` makes three blocks of the output's size, each a fresh mapping at big
    batches; the rounding here is the same, step by step.
    """

    @staticmethod
    def forward(ctx, result, a, weight, scaling):
        ctx.mark_dirty(result)
        cast = weight.to(result.dtype)
        ctx.scaling, ctx.weight_dtype = scaling, weight.dtype
        ctx.save_for_backward(a, cast)
        product = torch.mm(a.view(-1, a.shape[-1]), cast.t(), out=_scratch(result.shape, result.dtype, result.device))
        return result.add_(product.mul_(scaling))

    @staticmethod
    def backward(ctx, grad):
        a, weight = ctx.saved_tensors
        scaled = torch.mul(grad, ctx.scaling, out=_scratch(grad.shape, grad.dtype, grad.device))
        grad_a = scaled.mm(weight).view(a.shape) if ctx.needs_input_grad[1] else None
        grad_weight = scaled.t().mm(a.view(-1, a.shape[-1])).to(ctx.weight_dtype) if ctx.needs_input_grad[2] else None
        return grad, grad_a, grad_weight, None


class AddedLoraLinear(PeftLoraLinear):
    """peft's LoRA Linear that adds its adapters' output into the base layer's in place."""

    def _adapters(self) -> list[str]:
        """The active adapters this layer holds."""
        return [name for name in self.active_adapters if name in self.lora_A]

    def _adds_in_place(self, x: torch.Tensor, args: tuple, kwargs: dict) -> bool:
        """Whether this call is plain LoRA whose base output and adapter products share one dtype."""
        if args or kwargs or self.disable_adapters or self.merged:
            return False
        names = self._adapters()
        if not x.is_contiguous() or any(name in self.lora_variant for name in names):
            return False
        dtypes = {self.base_layer.weight.dtype} | {self.lora_A[n].weight.dtype for n in names}
        dtypes |= {self.lora_B[n].weight.dtype for n in names}
        return torch.is_autocast_enabled(x.device.type) or len(dtypes) == 1

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if not self._adds_in_place(x, args, kwargs):
            return super().forward(x, *args, **kwargs)
        # Given 2-D, the base layer returns a tensor of its own rather than a view, which may change in place.
        result = self.base_layer(x.view(-1, x.shape[-1]))
        autocast = torch.is_autocast_enabled(x.device.type)
        for name in self._adapters():
            # Under autocast the A projection casts its input itself; peft's cast of a bf16 input to fp32 first
            # would keep a full-precision copy of it for backward and round to the same values.
            inputs = x if autocast else self._cast_input_dtype(x, self.lora_A[name].weight.dtype)
            a = self.lora_A[name](self.lora_dropout[name](inputs))
            result = _AddedLora.apply(result, a, self.lora_B[name].weight, self.scaling[name])
        return result.view(*x.shape[:-1], result.shape[-1])


def fuse_lora_dropout(model: nn.Module) -> int:
    """Move each plain LoRA layer's dropout into its A projection and add its output in place; how many moved."""
    moved = 0
    for module in model.modules():
        if not isinstance(module, LoraLayer):
            continue
        if type(module) is PeftLoraLinear:
            module.__class__ = AddedLoraLinear
        for name, dropout in module.lora_dropout.items():
            linear = module.lora_A[name]
            if name in module.lora_variant or not isinstance(dropout, nn.Dropout) or type(linear) is not nn.Linear:
                continue
            linear.__class__ = DroppedLinear
            linear.dropout_p = dropout.p
            module.lora_dropout[name] = nn.Identity()
            moved += 1
    return moved


def average_adapters(model, folders: list[Path]) -> int:
    """Set model's LoRA weights to the mean of its own and those saved in folders; how many were averaged."""
    current = get_peft_model_state_dict(model)
    saved = [load_file(str(folder / "adapter_model.safetensors")) for folder in folders]
    averaged = {
        key: (value + sum(state[key].to(value.dtype) for state in saved)) / (1 + len(saved))
        for key, value in current.items()
    }
    set_peft_model_state_dict(model, averaged)
    return 1 + len(saved)


def scale_adapters(model, part: str, share: float) -> int:
    """Scale the change that model's LoRA adapters under part (".decoder.") make by share; how many were scaled."""
    scaled = 0
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, LoraLayer) and part in f".{name}.":
                for linear in module.lora_B.values():
                    linear.weight.mul_(share)  # the change is B A times alpha/r: scaling B scales it exactly
                scaled += 1
    return scaled
