"""Each loss against a small example whose expected values are worked out by hand with `math`."""

import math
import statistics

import pytest
import torch
from thinkcells_bridge.losses import cross_entropy, dpo, policy_gradient, sequence_logprob_sums, value_loss

E3 = math.exp(0.3)  # ratio of a token whose logp rose by 0.3
EM3 = math.exp(-0.3)

# Two sequences, three positions; the second has two counted tokens and padding garbage after.
MASK = [[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]
LOGP = [[-1.0, -2.0, -0.5], [-1.5, -0.3, 0.0]]
OLD = [[-1.0, -2.3, -0.5], [-1.2, -0.6, 50.0]]
ADV = [1.0, -1.0]
# Token ratios: row 0 [1, e^.3, 1] with A = +1: e^.3 > 1.2 is clipped (objective 1.2, counted).
# Row 1 [e^-.3, e^.3] with A = −1: e^-.3 < 0.8 is clipped (objective −0.8, counted); e^.3 > 1.2
# with a negative advantage is not clipped (objective −e^.3, the min keeps the lower value).
ROW0_LOSS = [-1.0, -1.2, -1.0]
ROW1_LOSS = [0.8, E3]


def t(x, grad=False, dtype=torch.float32):
    return torch.tensor(x, dtype=dtype, requires_grad=grad)


def pg(logp=None, **kw):
    logp = t(LOGP, grad=True) if logp is None else logp
    loss, metrics = policy_gradient(logp, t(OLD), t(ADV), t(MASK), **kw)
    return logp, loss, metrics


def close(a, b, tol=1e-6):
    return a == pytest.approx(b, abs=tol)


# ---- policy gradient: aggregation modes --------------------------------------------------------


def test_seq_mean_token_mean():
    _, loss, m = pg(aggregation="seq_mean_token_mean")
    expected = (sum(ROW0_LOSS) / 3 + sum(ROW1_LOSS) / 2) / 2
    assert close(loss.item(), expected)
    assert close(m["loss"], expected)
    assert loss.dtype == torch.float32 and loss.dim() == 0


def test_token_mean():
    _, loss, _ = pg(aggregation="token_mean")
    assert close(loss.item(), (sum(ROW0_LOSS) + sum(ROW1_LOSS)) / 5)


def test_seq_mean_token_sum_norm_default_and_constant():
    _, loss, _ = pg(aggregation="seq_mean_token_sum_norm")
    assert close(loss.item(), (sum(ROW0_LOSS) + sum(ROW1_LOSS)) / (2 * 3))
    _, loss, _ = pg(aggregation="seq_mean_token_sum_norm", constant=8)
    assert close(loss.item(), (sum(ROW0_LOSS) + sum(ROW1_LOSS)) / 8)


def test_metrics_clip_fraction_ratio_advantage():
    _, _, m = pg()
    assert close(m["clip_fraction"], 2 / 5)  # (0,1) clipped above with A>0, (1,0) below with A<0
    assert close(m["ratio_mean"], (1 + E3 + 1 + EM3 + E3) / 5)
    assert close(m["advantage_mean"], 0.0)
    assert "kl" not in m and "entropy" not in m
    assert all(isinstance(v, float) for v in m.values())


def test_clip_direction_depends_on_advantage_sign():
    # One token, ratio e^.3 ≈ 1.35 > 1.2: clipped with A = +2, not with A = −2.
    logp, old, mask = t([[0.3]], grad=True), t([[0.0]]), t([[1.0]])
    loss, m = policy_gradient(logp, old, t([2.0]), mask)
    assert close(loss.item(), -1.2 * 2) and m["clip_fraction"] == 1.0
    loss.backward()
    assert logp.grad.item() == 0.0  # the clipped branch is constant in logp
    logp = t([[0.3]], grad=True)
    loss, m = policy_gradient(logp, old, t([-2.0]), mask)
    assert close(loss.item(), E3 * 2) and m["clip_fraction"] == 0.0
    loss.backward()
    assert close(logp.grad.item(), 2 * E3)  # −A·r


def test_clip_higher_asymmetric():
    # DAPO clip-higher: with eps_high = 0.4 the ratio e^.3 ≈ 1.35 is no longer clipped.
    _, loss, m = pg(eps_high=0.4, aggregation="token_mean")
    assert close(loss.item(), (-1.0 - E3 - 1.0 + 0.8 + E3) / 5)
    assert close(m["clip_fraction"], 1 / 5)


def test_token_level_gradient_matches_hand_derivation():
    # Unclipped tokens: d loss / d logp = −A·r / N; clipped tokens and padding: 0.
    logp, loss, _ = pg(aggregation="token_mean")
    loss.backward()
    expected = [[-1.0 / 5, 0.0, -1.0 / 5], [0.0, E3 / 5, 0.0]]
    assert torch.allclose(logp.grad, t(expected), atol=1e-6)


def test_per_token_advantages():
    adv = t([[1.0, 0.0, -1.0], [2.0, 0.5, 9.0]])
    loss, m = policy_gradient(t(LOGP), t(OLD), adv, t(MASK), aggregation="token_mean")
    # Ratios [1, e^.3, 1], [e^-.3, e^.3]: r·A and clip·A per token; the min of each pair.
    terms = [min(1.0, 1.0), 0.0, min(-1.0, -1.0), min(EM3 * 2, 0.8 * 2), min(E3 * 0.5, 1.2 * 0.5)]
    assert close(loss.item(), -sum(terms) / 5)
    assert close(m["advantage_mean"], (1.0 + 0.0 - 1.0 + 2.0 + 0.5) / 5)
    assert close(m["clip_fraction"], 1 / 5)  # only (1,1): r > 1.2 with A > 0


# ---- GSPO sequence ratio ------------------------------------------------------------------------


def test_gspo_sequence_ratio_and_gradient_through_mean():
    s0 = math.exp((0.0 + 0.3 + 0.0) / 3)  # row 1's log-ratios −0.3, +0.3 average to 0: s = 1
    logp, loss, m = pg(ratio_level="sequence")
    assert close(loss.item(), (-s0 + 1.0) / 2)
    assert close(m["ratio_mean"], (3 * s0 + 2 * 1.0) / 5)
    assert m["clip_fraction"] == 0.0
    loss.backward()
    # loss = −½·s0·A0 − ½·s1·A1 and ds_i/dlogp_t = s_i / |o_i| for every token of sequence i.
    expected = [[-s0 / 6] * 3, [0.25, 0.25, 0.0]]
    assert torch.allclose(logp.grad, t(expected), atol=1e-6)


def test_gspo_tiny_clip_range():
    logp, loss, m = pg(ratio_level="sequence", eps_low=3e-4, eps_high=4e-4)
    assert close(loss.item(), (-1.0004 + 1.0) / 2)  # s0 ≈ 1.105 clipped to 1 + 4e-4
    assert close(m["clip_fraction"], 3 / 5)
    loss.backward()
    assert torch.allclose(logp.grad, t([[0.0] * 3, [0.25, 0.25, 0.0]]), atol=1e-6)


# ---- KL and entropy -----------------------------------------------------------------------------


def k3(d):
    return math.exp(d) - d - 1


REF = [[-1.1, -2.0, -0.4], [-1.5, -0.5, 9.0]]
KLS = [k3(-0.1), k3(0.0), k3(0.1), k3(0.0), k3(-0.2)]  # ref − logp on the counted tokens


def test_k3_kl_value_and_penalty():
    logp = t(LOGP, grad=True)
    loss, m = policy_gradient(logp, t(OLD), t(ADV), t(MASK), aggregation="token_mean", ref_logprobs=t(REF), beta=0.1)
    assert close(m["kl"], sum(KLS) / 5)
    assert close(loss.item(), (sum(ROW0_LOSS) + sum(ROW1_LOSS) + 0.1 * sum(KLS)) / 5)
    loss.backward()
    # d(β·k3)/dlogp = β·(1 − exp(ref − logp)) on top of the surrogate's −A·r/N.
    g01 = (0.0 + 0.1 * (1 - math.exp(0.1))) / 5
    assert close(logp.grad[0, 2].item(), -1.0 / 5 + g01)
    # beta = 0 reports the KL but leaves the loss alone.
    loss0, m0 = policy_gradient(t(LOGP), t(OLD), t(ADV), t(MASK), aggregation="token_mean", ref_logprobs=t(REF))
    assert close(loss0.item(), (sum(ROW0_LOSS) + sum(ROW1_LOSS)) / 5) and close(m0["kl"], m["kl"])


def test_k3_is_nonnegative():
    g = torch.Generator().manual_seed(0)
    logp, ref = torch.randn(8, 16, generator=g) * 3, torch.randn(8, 16, generator=g) * 3
    _, m = policy_gradient(logp, logp, torch.ones(8), torch.ones(8, 16), ref_logprobs=ref, beta=1.0)
    assert m["kl"] > 0
    d = ref - logp
    assert bool(((torch.exp(d) - d - 1) >= 0).all())


def test_entropy_bonus():
    ent = t([[0.5, 1.0, 1.5], [2.0, 2.5, 99.0]], grad=True)
    loss, m = policy_gradient(
        t(LOGP), t(OLD), t(ADV), t(MASK), aggregation="token_mean", entropy=ent, entropy_coef=0.01
    )
    assert close(m["entropy"], (0.5 + 1.0 + 1.5 + 2.0 + 2.5) / 5)
    assert close(loss.item(), (sum(ROW0_LOSS) + sum(ROW1_LOSS) - 0.01 * 7.5) / 5)
    loss.backward()
    assert torch.allclose(ent.grad, t([[-0.002] * 3, [-0.002, -0.002, 0.0]]), atol=1e-7)


def test_bad_options_raise():
    with pytest.raises(ValueError):
        pg(aggregation="mean")
    with pytest.raises(ValueError):
        pg(ratio_level="group")


# ---- micro-batch accumulation -------------------------------------------------------------------


@pytest.mark.parametrize("aggregation", ["token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"])
@pytest.mark.parametrize("ratio_level", ["token", "sequence"])
def test_micro_batches_sum_to_one_batch(aggregation, ratio_level):
    g = torch.Generator().manual_seed(3)
    B, T = 6, 5
    old = -torch.rand(B, T, generator=g) * 3
    start = old + torch.randn(B, T, generator=g) * 0.3  # some ratios outside the clip range
    adv = torch.randn(B, generator=g)
    lengths = torch.tensor([5, 1, 3, 0, 4, 2])
    mask = (torch.arange(T)[None, :] < lengths[:, None]).float()
    ref = old + 0.1
    kw = dict(aggregation=aggregation, ratio_level=ratio_level, beta=0.05)

    whole = start.clone().requires_grad_(True)
    loss, _ = policy_gradient(whole, old, adv, mask, ref_logprobs=ref, **kw)
    loss.backward()

    split = start.clone().requires_grad_(True)
    overrides = dict(num_tokens=float(mask.sum()), num_sequences=int((lengths > 0).sum()), constant=B * T)
    total = 0.0
    for rows in (slice(0, 2), slice(2, 6)):
        sub = (split[rows], old[rows], adv[rows], mask[rows])
        part, _ = policy_gradient(*sub, ref_logprobs=ref[rows], **kw, **overrides)
        part.backward()
        total += part.item()
    assert close(total, loss.item(), 1e-6)
    assert torch.allclose(split.grad, whole.grad, atol=1e-7)


# ---- robustness: empty rows, bf16 ---------------------------------------------------------------


@pytest.mark.parametrize("aggregation", ["token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"])
@pytest.mark.parametrize("ratio_level", ["token", "sequence"])
def test_all_masked_rows_no_nan(aggregation, ratio_level):
    inf = float("-inf")
    logp = t([[-1.0, -0.5], [inf, inf]], grad=True)
    old = t([[-1.2, -0.5], [inf, 0.0]])
    mask = t([[1.0, 1.0], [0.0, 0.0]])
    kw = dict(aggregation=aggregation, ratio_level=ratio_level, ref_logprobs=t([[-1.0, -1.0], [inf, inf]]), beta=0.1)
    kw.update(entropy=t([[1.0, 1.0], [float("nan"), 0.0]]), entropy_coef=0.01)
    loss, m = policy_gradient(logp, old, t([1.0, 5.0]), mask, **kw)
    loss.backward()
    assert math.isfinite(loss.item()) and all(math.isfinite(v) for v in m.values())
    assert bool(torch.isfinite(logp.grad).all()) and logp.grad[1].abs().sum() == 0
    assert m["advantage_mean"] == 1.0  # the empty row's advantage is not averaged in
    # A batch with nothing counted: loss 0, zero gradients.
    logp = t([[-1.0, -0.5]], grad=True)
    loss, m = policy_gradient(logp, t([[-1.0, -0.5]]), t([1.0]), t([[0.0, 0.0]]), **kw)
    loss.backward()
    assert loss.item() == 0.0 and logp.grad.abs().sum() == 0 and m["clip_fraction"] == 0.0


def test_bf16_inputs_give_fp32_losses():
    bf = torch.bfloat16
    logp = t(LOGP, grad=True, dtype=bf)
    old, ref = t(OLD, dtype=bf), t(REF, dtype=bf)
    loss, _ = policy_gradient(logp, old, t(ADV, dtype=bf), t(MASK, dtype=bf), ref_logprobs=ref, beta=0.1)
    assert loss.dtype == torch.float32
    # The same bf16-rounded numbers given as fp32 give the same loss.
    as_fp32 = (logp.detach().float(), old.float(), t(ADV), t(MASK))
    expected, _ = policy_gradient(*as_fp32, ref_logprobs=ref.float(), beta=0.1)
    assert close(loss.item(), expected.item())
    loss.backward()
    assert logp.grad.dtype == bf and bool(torch.isfinite(logp.grad.float()).all())

    ce, _ = cross_entropy(t(LOGP, grad=True, dtype=bf), t(MASK, dtype=bf))
    d, _ = dpo(*(t([-5.0], dtype=bf) for _ in range(4)))
    v, _ = value_loss(t([[1.0]], dtype=bf), t([[1.0]], dtype=bf), t([[0.0]], dtype=bf), t([[1.0]], dtype=bf))
    assert {x.dtype for x in (ce, d, v)} == {torch.float32}


# ---- cross-entropy ------------------------------------------------------------------------------


def test_cross_entropy_completion_only():
    logp = t([[-1.0, -2.0, -3.0], [-0.5, -4.0, float("-inf")]], grad=True)
    weights = t([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    loss, m = cross_entropy(logp, weights)
    assert close(loss.item(), (2.0 + 3.0 + 0.5) / 3)
    assert m == pytest.approx({"loss": 5.5 / 3, "tokens": 3.0, "nll": 5.5 / 3})
    loss.backward()
    assert torch.allclose(logp.grad, -weights / 3)
    # With the accumulated batch's weight sum the loss is a share of the whole.
    loss, m = cross_entropy(logp, weights, num_tokens=11)
    assert close(loss.item(), 5.5 / 11) and close(m["nll"], 5.5 / 3)


def test_cross_entropy_zero_weights():
    logp = t([[-1.0, float("-inf")]], grad=True)
    loss, m = cross_entropy(logp, t([[0.0, 0.0]]))
    loss.backward()
    assert loss.item() == 0.0 and m == {"loss": 0.0, "tokens": 0.0, "nll": 0.0}
    assert logp.grad.abs().sum() == 0


# ---- DPO ----------------------------------------------------------------------------------------


def test_dpo_values_and_gradient():
    pc = t([-5.0, -7.0], grad=True)
    pr, rc, rr = t([-6.0, -6.5]), t([-5.5, -6.8]), t([-5.8, -6.9])
    # Δ = (πc − refc) − (πr − refr): [0.5 − (−0.2), −0.2 − 0.4] = [0.7, −0.6]; β = 0.1.
    loss, m = dpo(pc, pr, rc, rr, beta=0.1)
    expected = (math.log1p(math.exp(-0.07)) + math.log1p(math.exp(0.06))) / 2  # −log σ(x) = log(1 + e^−x)
    assert close(loss.item(), expected)
    assert m == pytest.approx(
        {
            "loss": expected,
            "reward_accuracy": 0.5,
            "reward_margin": 0.005,
            "chosen_reward": 0.015,
            "rejected_reward": 0.01,
        },
        abs=1e-6,
    )
    loss.backward()

    # d/dπc of −log σ(βΔ) / B = −β·σ(−βΔ) / B.
    def sig(x):
        return 1 / (1 + math.exp(-x))

    assert torch.allclose(pc.grad, t([-0.1 * sig(-0.07) / 2, -0.1 * sig(0.06) / 2]), atol=1e-7)


def test_dpo_starts_at_log_2_and_a_tie_is_not_a_win():
    """π = π_ref (zero-initialised adapters before the first update): every margin is 0."""
    policy_chosen, policy_rejected = t([-3.0, -8.0, -1.0]), t([-4.0, -9.0, -2.0])
    _, m = dpo(policy_chosen, policy_rejected, policy_chosen, policy_rejected, beta=0.1)
    assert m == pytest.approx(
        {
            "loss": math.log(2),
            "reward_accuracy": 0.0,
            "reward_margin": 0.0,
            "chosen_reward": 0.0,
            "rejected_reward": 0.0,
        }
    )


def test_dpo_extreme_margin_is_finite():
    loss, _ = dpo(t([-1000.0]), t([0.0]), t([0.0]), t([0.0]), beta=1.0)
    assert close(loss.item(), 1000.0, 1e-3)


def test_sequence_logprob_sums():
    logp = t([[-1.0, -2.0, float("-inf")], [-0.5, 3.0, 3.0]])
    sums = sequence_logprob_sums(logp, t([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))
    assert sums.tolist() == [-3.0, -0.5]


# ---- value loss ---------------------------------------------------------------------------------


def test_value_loss_clipping():
    values = t([[0.2, 0.5], [0.2, 9.0]], grad=True)
    old = t([[0.8, 0.5], [0.1, 0.0]])
    returns = t([[0.0, 1.0], [0.3, 0.0]])
    mask = t([[1.0, 1.0], [1.0, 0.0]])
    loss, m = value_loss(values, old, returns, mask, clip=0.2)
    # (0,0): V − old = −0.6 clips to −0.2 → 0.6; max(0.2², 0.6²) = 0.36, the clipped term wins.
    # (0,1): 0.5² = 0.25. (1,0): V − old = 0.1 inside the range, 0.1² = 0.01.
    assert close(loss.item(), 0.5 * (0.36 + 0.25 + 0.01) / 3)
    assert close(m["value_clip_fraction"], 1 / 3)
    r, err = [0.0, 1.0, 0.3], [-0.2, 0.5, 0.1]
    assert close(m["explained_variance"], 1 - statistics.pvariance(err) / statistics.pvariance(r), 1e-5)
    loss.backward()
    # Unclipped: d/dV of 0.5·(V − R)²/N = (V − R)/N; the clipped element has zero gradient.
    assert torch.allclose(values.grad, t([[0.0, -0.5 / 3], [-0.1 / 3, 0.0]]), atol=1e-6)


def test_value_loss_all_masked():
    values = t([[1.0]], grad=True)
    loss, m = value_loss(values, t([[0.0]]), t([[5.0]]), t([[0.0]]))
    loss.backward()
    assert loss.item() == 0.0 and values.grad.item() == 0.0
    assert m == {"value_loss": 0.0, "value_clip_fraction": 0.0, "explained_variance": 0.0}
