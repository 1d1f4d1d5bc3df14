"""LoRA dropout fused into the A projection: the same gradients as peft's for the same masks, and fewer saved bytes."""

import pytest
import torch
from peft import LoraConfig, get_peft_model

from helpers import tiny_whisper
from whisper_lora.train import lora
from whisper_lora.train.lora import DroppedLinear, drop_mask, fuse_lora_dropout

TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]
P = 0.3


class SameMaskDropout(torch.nn.Module):
    """peft's dropout, drawing its mask as the fused layer does, from the same random stream."""

    def forward(self, x):
        return x.masked_fill(drop_mask(x.shape, P, x.device), 0) / (1 - P)


def lora_model(fused: bool, p: float = P):
    torch.manual_seed(0)
    model = get_peft_model(tiny_whisper(), LoraConfig(r=4, lora_alpha=8, lora_dropout=p, target_modules=TARGETS))
    for name, parameter in model.named_parameters():
        if "lora_B" in name:  # peft starts B at zero, which would leave A's gradient zero
            torch.nn.init.normal_(parameter, std=0.1)
    if fused and p > 0:
        assert fuse_lora_dropout(model) == 6 * 2 * 2 + 4 * 2  # encoder, decoder self- and cross-attention
    elif p > 0:
        for module in model.modules():
            if hasattr(module, "lora_dropout"):
                module.lora_dropout["default"] = SameMaskDropout()
    return model.train()


def loss_and_saved_bytes(model, dtype=torch.float32):
    torch.manual_seed(1)
    features = torch.randn(2, 80, 3000)
    labels = torch.randint(0, 100, (2, 7))
    saved = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        saved[storage.data_ptr()] = storage.nbytes()  # a tensor saved twice is held once
        return tensor

    torch.manual_seed(2)
    autocast = torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), autocast:
        loss = model(input_features=features, labels=labels).loss
    loss.backward()
    return loss.item(), sum(saved.values())


def lora_gradients(model):
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}


def test_fused_dropout_gives_pefts_gradients_and_keeps_only_its_one_byte_masks():
    plain, fused = lora_model(False), lora_model(True)
    loss, plain_bytes = loss_and_saved_bytes(plain)
    mask_bytes = []
    for layer in fused.modules():
        if isinstance(layer, DroppedLinear):
            layer.register_forward_pre_hook(lambda _, inputs: mask_bytes.append(inputs[0].numel()))
    same_loss, fused_bytes = loss_and_saved_bytes(fused)
    assert same_loss == pytest.approx(loss, rel=1e-6)
    expected, found = lora_gradients(plain), lora_gradients(fused)
    assert found.keys() == expected.keys()
    for name, gradient in expected.items():
        torch.testing.assert_close(found[name], gradient, rtol=1e-5, atol=1e-6, msg=name)  # summed in another order
    _, undropped_bytes = loss_and_saved_bytes(lora_model(False, p=0.0))
    # Beyond LoRA without dropout, the fused layers keep their masks alone; peft a dropped copy of every input too.
    assert fused_bytes - undropped_bytes == sum(mask_bytes)
    assert fused_bytes < plain_bytes - sum(mask_bytes), (fused_bytes, plain_bytes)  # q, k and v share one input


def test_under_bf16_autocast_the_gradients_stay_fp32_and_match_pefts():
    plain, fused = lora_model(False), lora_model(True)
    loss, _ = loss_and_saved_bytes(plain, torch.bfloat16)
    same_loss, _ = loss_and_saved_bytes(fused, torch.bfloat16)
    assert same_loss == pytest.approx(loss, rel=1e-2)
    expected, found = lora_gradients(plain), lora_gradients(fused)
    for name, gradient in expected.items():
        assert found[name].dtype == torch.float32, name
        assert torch.nn.functional.cosine_similarity(found[name].flatten(), gradient.flatten(), dim=0) > 0.99, name


def test_the_mask_drops_p_of_the_elements_and_a_new_draw_differs():
    first, second = drop_mask(torch.Size([1000, 1000]), 0.1, torch.device("cpu")), drop_mask((1000, 1000), 0.1, "cpu")
    assert first.dtype == torch.bool
    assert first.float().mean().item() == pytest.approx(0.1, abs=2e-3)
    assert (first != second).float().mean().item() == pytest.approx(2 * 0.1 * 0.9, abs=3e-3)
    assert round(0.05 * lora.MASK_STEPS) / lora.MASK_STEPS == pytest.approx(0.05, abs=1e-4)
    odd = drop_mask((1001, 997), 0.1, "cpu").flatten()  # not a whole number of 64-bit words
    for lane in range(4):  # each 16-bit quarter of a word, the top one's sign bit included, drops p
        assert odd[lane::4].float().mean().item() == pytest.approx(0.1, abs=3e-3), lane


def test_evaluation_and_merging_see_a_plain_linear():
    model = lora_model(True).eval()
    layer = model.base_model.model.model.encoder.layers[0].fc2
    assert isinstance(layer.lora_A["default"], DroppedLinear)
    x = torch.randn(3, layer.in_features)
    with torch.no_grad():
        unmerged = layer(x)
        merged = model.merge_and_unload().model.encoder.layers[0].fc2(x)
    torch.testing.assert_close(merged, unmerged, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_the_bitwise_drop_is_dropout_then_the_cast_and_leaves_its_input_alone(dtype):
    x = torch.randn(3, 50, 40)
    before = x.clone()
    drop = drop_mask(x.shape, 0.3, x.device)
    dropped = lora._dropped(x, drop, 1 / 0.7, dtype)
    assert dropped.dtype == dtype
    assert torch.equal(dropped, x.masked_fill(drop, 0).mul(1 / 0.7).to(dtype))  # bit for bit
    assert torch.equal(x, before)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_adding_the_adapter_in_place_gives_pefts_loss_and_gradients_bit_for_bit(dtype):
    added, peft_forward = lora_model(True), lora_model(True)
    for module in peft_forward.modules():
        if isinstance(module, lora.AddedLoraLinear):
            module.__class__ = lora.PeftLoraLinear
    loss, peft_bytes = loss_and_saved_bytes(peft_forward, dtype)
    same_loss, added_bytes = loss_and_saved_bytes(added, dtype)
    assert same_loss == loss
    expected, found = lora_gradients(peft_forward), lora_gradients(added)
    assert all(torch.equal(found[name], gradient) for name, gradient in expected.items())
    if dtype == torch.bfloat16:  # peft keeps an fp32 copy of each bf16 input it adapts (out_proj's, fc2's)
        assert added_bytes < peft_bytes
    else:
        assert added_bytes == peft_bytes


def test_a_layer_whose_dtypes_differ_without_autocast_keeps_pefts_forward():
    torch.manual_seed(0)
    model = get_peft_model(tiny_whisper().to(torch.bfloat16), LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS))
    fuse_lora_dropout(model)
    layer = model.base_model.model.model.encoder.layers[0].fc1
    assert isinstance(layer, lora.AddedLoraLinear)
    assert layer.lora_A["default"].weight.dtype == torch.float32  # peft keeps the adapter in fp32
    x = torch.randn(2, 5, layer.in_features, dtype=torch.bfloat16, requires_grad=True)
    assert not layer.train()._adds_in_place(x, (), {})
    out = layer(x)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, lora.PeftLoraLinear.forward(layer, x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gradient_checkpointing_as_train_sets_it_gives_the_same_gradients_for_fewer_saved_bytes(dtype):
    plain, recomputed = lora_model(True), lora_model(True)
    recomputed.base_model.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    loss, plain_bytes = loss_and_saved_bytes(plain, dtype)
    same_loss, recomputed_bytes = loss_and_saved_bytes(recomputed, dtype)
    assert same_loss == loss
    expected, found = lora_gradients(plain), lora_gradients(recomputed)
    assert all(torch.equal(found[name], gradient) for name, gradient in expected.items())  # the same masks again
    assert recomputed_bytes < plain_bytes * 0.6


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_evaluation_adds_in_place_too_with_pefts_output_bit_for_bit(dtype):
    model = lora_model(True).eval()
    layer = model.base_model.model.model.encoder.layers[0].fc2
    x = torch.randn(2, 7, layer.in_features)
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
        assert layer._adds_in_place(x, (), {})
        assert torch.equal(layer(x), lora.PeftLoraLinear.forward(layer, x))


def test_training_after_scoring_under_inference_mode_reuses_no_inference_buffer():
    # Scoring first (the forgetting guard's baseline, a validation batch bigger than a training one) once left
    # the shared buffer an inference tensor, and the next training step failed to write into it.
    lora._SCRATCH.clear()
    model = lora_model(True)
    with torch.inference_mode():
        model.eval()(input_features=torch.randn(3, 80, 3000), labels=torch.randint(0, 100, (3, 7)))
    loss, _ = loss_and_saved_bytes(model.train())
    assert loss > 0 and all(gradient.abs().sum() > 0 for gradient in lora_gradients(model).values())
