"""LoRA dropout recomputed in backward: the same gradients as peft's, and fewer saved activations."""

import pytest
import torch
from peft import LoraConfig, get_peft_model

from helpers import tiny_whisper
from whisper_lora.train.lora import RecomputedDropoutLinear, recompute_lora_dropout

TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]


def lora_model(recomputed: bool):
    torch.manual_seed(0)
    model = get_peft_model(tiny_whisper(), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.3, target_modules=TARGETS))
    for name, parameter in model.named_parameters():
        if "lora_B" in name:  # peft starts B at zero, which would leave A's gradient zero
            torch.nn.init.normal_(parameter, std=0.1)
    if recomputed:
        assert recompute_lora_dropout(model) == 6 * 2 * 2 + 4 * 2  # encoder, decoder self- and cross-attention
    return model.train()


def loss_and_saved_bytes(model):
    torch.manual_seed(1)
    features = torch.randn(2, 80, 3000)
    labels = torch.randint(0, 100, (2, 7))
    saved = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        saved[storage.data_ptr()] = storage.nbytes()  # a tensor saved twice is held once
        return tensor

    torch.manual_seed(2)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = model(input_features=features, labels=labels).loss
    loss.backward()
    return loss.item(), sum(saved.values())


def lora_gradients(model):
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}


def test_recomputed_dropout_gives_peft_gradients_and_saves_less():
    plain, recomputed = lora_model(False), lora_model(True)
    loss, plain_bytes = loss_and_saved_bytes(plain)
    same_loss, recomputed_bytes = loss_and_saved_bytes(recomputed)
    assert same_loss == pytest.approx(loss, rel=1e-6)
    expected, found = lora_gradients(plain), lora_gradients(recomputed)
    assert found.keys() == expected.keys()
    for name, gradient in expected.items():
        torch.testing.assert_close(found[name], gradient, rtol=1e-5, atol=1e-7, msg=name)
    assert recomputed_bytes < 0.8 * plain_bytes, (recomputed_bytes, plain_bytes)


def test_evaluation_and_merging_see_a_plain_linear():
    model = lora_model(True).eval()
    layer = model.base_model.model.model.encoder.layers[0].fc2
    assert isinstance(layer.lora_A["default"], RecomputedDropoutLinear)
    x = torch.randn(3, layer.in_features)
    with torch.no_grad():
        unmerged = layer(x)
        merged = model.merge_and_unload().model.encoder.layers[0].fc2(x)
    torch.testing.assert_close(merged, unmerged, rtol=1e-5, atol=1e-6)
