"""LoRA layers for training: dropout recomputed in backward instead of kept, and adapters averaged over checkpoints."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from peft import get_peft_model_state_dict, set_peft_model_state_dict
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file
from torch import nn
from torch.utils.checkpoint import checkpoint


class RecomputedDropoutLinear(nn.Linear):
    """LoRA's A projection with its dropout inside it, recomputed in backward from the input the layers share.

    peft's `lora_B(lora_A(dropout(x)))` keeps dropout(x) and its mask alive for every adapted projection, so
    q, k and v hold three copies of one input, and fc2 one four times the model width. Here the backward pass
    keeps only x (one tensor for q, k and v) and redraws the same mask from the saved RNG state.
    """

    dropout_p: float = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and self.dropout_p > 0 and torch.is_grad_enabled()):
            return super().forward(x)
        return checkpoint(self._dropped, x, use_reentrant=False, preserve_rng_state=True)

    def _dropped(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.dropout(x, self.dropout_p, training=True), self.weight, self.bias)


def recompute_lora_dropout(model: nn.Module) -> int:
    """Move each plain LoRA layer's dropout into its A projection (RecomputedDropoutLinear); how many moved."""
    moved = 0
    for module in model.modules():
        if not isinstance(module, LoraLayer):
            continue
        for name, dropout in module.lora_dropout.items():
            linear = module.lora_A[name]
            if name in module.lora_variant or not isinstance(dropout, nn.Dropout) or type(linear) is not nn.Linear:
                continue
            linear.__class__ = RecomputedDropoutLinear
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
