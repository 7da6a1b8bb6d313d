import pytest
import torch
from bridge_wire import llama_config, perturb_adapters, qwen2_config, random_model
from thinkcells_bridge.loading import count_parameters
from thinkcells_bridge.lora import (
    LoRALinear,
    adapters_disabled,
    apply_lora,
    has_lora,
    merged_weight,
    remove_lora,
    set_adapters,
)
from torch import nn


def ids(shape=(2, 6), seed=0):
    return torch.randint(3, 97, shape, generator=torch.Generator().manual_seed(seed))


def logits(m, x):
    b, t = x.shape
    return m.logits(m.hidden_states(x, torch.arange(t)[None].expand(b, -1), torch.zeros(b, dtype=torch.long)))


def test_all_linear_adapters_train_only_low_rank_parameters():
    m = random_model(qwen2_config(), seed=2).eval()
    total_before, _ = count_parameters(m)
    adapted = apply_lora(m, rank=4, alpha=8, dropout=0.0, targets="all-linear")
    assert len(adapted) == 7 * m.config.num_hidden_layers
    assert all(name.startswith("model.layers.") for name in adapted)
    total, trainable = count_parameters(m)
    expected = sum(
        4 * (layer.in_features + layer.out_features) for layer in m.modules() if isinstance(layer, LoRALinear)
    )
    assert trainable == expected and total == total_before + expected
    assert all(not p.requires_grad for n, p in m.named_parameters() if "lora_" not in n)
    # Base weights keep their Hugging Face names; the adapters add their own.
    keys = m.state_dict().keys()
    assert "model.layers.0.self_attn.q_proj.weight" in keys and "model.layers.0.self_attn.q_proj.bias" in keys
    assert "model.layers.0.self_attn.q_proj.lora_A" in keys and "model.layers.0.mlp.down_proj.lora_B" in keys


def test_fresh_adapters_leave_the_model_unchanged_and_disabling_restores_it():
    m = random_model(llama_config(), seed=3).eval()
    x = ids()
    with torch.no_grad():
        base = logits(m, x)
        apply_lora(m, rank=2, alpha=4, dropout=0.0, targets=["q_proj", "v_proj"])
        assert torch.equal(logits(m, x), base)  # B starts at zero
        perturb_adapters(m)
        adapted = logits(m, x)
        assert not torch.allclose(adapted, base)
        with adapters_disabled(m):
            assert torch.equal(logits(m, x), base)
        assert torch.equal(logits(m, x), adapted)  # re-enabled afterwards
        set_adapters(m, False)
        assert torch.equal(logits(m, x), base)


def test_merged_weight_is_what_the_layer_applies():
    layer = LoRALinear.wrap(nn.Linear(6, 5), rank=3, alpha=6, dropout=0.0).eval()
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(4, 6)
    assert torch.allclose(nn.functional.linear(x, merged_weight(layer), layer.bias), layer(x), atol=1e-6)
    expected = layer.weight + 2.0 * layer.lora_B @ layer.lora_A  # scale = alpha / rank = 2
    assert torch.allclose(merged_weight(layer), expected)
    layer.enabled = False
    assert merged_weight(layer) is layer.weight


def test_gradients_reach_only_the_adapters():
    m = random_model(llama_config(), seed=4).train()
    apply_lora(m, rank=2, alpha=2, dropout=0.1, targets="all-linear")
    perturb_adapters(m)
    x = ids(seed=5)
    loss = nn.functional.cross_entropy(logits(m, x)[:, :-1].reshape(-1, 97), x[:, 1:].reshape(-1))
    loss.backward()
    for name, p in m.named_parameters():
        if "lora_" in name:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
        else:
            assert p.grad is None, name


def test_dropout_follows_the_model_mode():
    m = random_model(llama_config(), seed=6).eval()
    apply_lora(m, rank=2, alpha=2, dropout=0.5, targets=["q_proj"])
    perturb_adapters(m)
    x = ids(seed=7)
    with torch.no_grad():
        assert torch.equal(logits(m, x), logits(m, x))  # eval: no dropout
        m.train()
        torch.manual_seed(0)
        a = logits(m, x)
        assert not torch.equal(a, logits(m, x))  # train: dropout on the adapter input


def test_unknown_targets_and_bad_rank_are_refused():
    m = random_model(llama_config(), seed=8)
    with pytest.raises(ValueError, match="unknown LoRA target 'qproj'.*q_proj"):
        apply_lora(m, rank=2, alpha=2, dropout=0.0, targets=["qproj"])
    with pytest.raises(ValueError, match="rank must be ≥ 1"):
        apply_lora(m, rank=0, alpha=2, dropout=0.0, targets="all-linear")


def test_remove_lora_returns_to_full_fine_tuning():
    m = random_model(llama_config(), seed=9).eval()
    x = ids(seed=10)
    with torch.no_grad():
        base = logits(m, x)
    apply_lora(m, rank=2, alpha=2, dropout=0.0, targets="all-linear")
    apply_lora(m, rank=3, alpha=2, dropout=0.0, targets=["o_proj"])  # replaces, never stacks
    assert sum(isinstance(module, LoRALinear) for module in m.modules()) == m.config.num_hidden_layers
    remove_lora(m)
    assert not has_lora(m)
    assert all(p.requires_grad for p in m.parameters())
    with torch.no_grad():
        assert torch.equal(logits(m, x), base)
