"""Policies and the weighted MLE loss, checked against torch.distributions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal, TransformedDistribution
from torch.distributions.transforms import TanhTransform

from wsrl.core.config import PolicyConfig
from wsrl.core.module import weighted_nll
from wsrl.core.policies import DiagGaussianActor, UnconditionalPolicy, make_policy

IN_DIM, ACT_DIM, N = 7, 3, 32


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, IN_DIM, generator=g)
    a = torch.rand(N, ACT_DIM, generator=g) * 1.8 - 0.9  # inside (-1, 1), away from the tanh edges
    w = torch.rand(N, generator=g) * 3
    return x, a, w


def reference_log_prob(policy: nn.Module, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """log pi(a|x) built from torch.distributions, from the policy's raw layers."""
    h = policy.body(x)
    if isinstance(policy, UnconditionalPolicy):
        return Normal(policy.mean(h), policy.log_std.exp()).log_prob(a).sum(-1)
    mean, raw = policy.head(h).chunk(2, dim=-1)
    lo, hi = policy.log_std_min, policy.log_std_max
    log_std = lo + (hi - lo) * (torch.tanh(raw) + 1) / 2
    squashed = TransformedDistribution(Normal(mean, log_std.exp()), [TanhTransform()])
    return squashed.log_prob(a).sum(-1)


@pytest.mark.parametrize("name", ["unconditional", "diag_gaussian"])
def test_weighted_nll_is_the_weighted_mean_negative_log_likelihood(batch, name):
    torch.manual_seed(0)
    policy = make_policy(PolicyConfig(name=name, hidden_dims=[16, 16], log_std_init=-0.5), IN_DIM, ACT_DIM).eval()
    x, a, w = batch
    with torch.no_grad():
        log_pi = reference_log_prob(policy, x, a)
        by_hand = -sum(float(w[i]) * float(log_pi[i]) for i in range(N)) / N
        assert float(weighted_nll(policy.log_prob(x, a), w)) == pytest.approx(by_hand, rel=1e-4, abs=1e-4)
        plain = -sum(float(v) for v in log_pi) / N
        assert float(weighted_nll(policy.log_prob(x, a), None)) == pytest.approx(plain, rel=1e-4, abs=1e-4)
        assert float(weighted_nll(policy.log_prob(x, a), torch.ones(N))) == pytest.approx(plain, rel=1e-4, abs=1e-4)


def test_weights_change_the_loss_and_zero_weights_drop_samples(batch):
    policy = make_policy(PolicyConfig(hidden_dims=[16]), IN_DIM, ACT_DIM).eval()
    x, a, _ = batch
    with torch.no_grad():
        log_pi = policy.log_prob(x, a)
        mask = torch.zeros(N)
        mask[:4] = 1.0
        assert float(weighted_nll(log_pi, mask)) == pytest.approx(-float(log_pi[:4].sum()) / N, rel=1e-5)


def test_dropout_is_active_in_training_and_off_in_evaluation(batch):
    policy = make_policy(PolicyConfig(hidden_dims=[64, 64], dropout=0.5), IN_DIM, ACT_DIM)
    drops = [m for m in policy.body if isinstance(m, nn.Dropout)]
    assert len(drops) == 2 and all(m.p == 0.5 for m in drops)
    x, a, _ = batch
    policy.train()
    assert not torch.equal(policy.log_prob(x, a), policy.log_prob(x, a))
    policy.eval()
    assert torch.equal(policy.log_prob(x, a), policy.log_prob(x, a))
    assert torch.equal(policy.mean_action(x), policy.mean_action(x))
    no_dropout = make_policy(PolicyConfig(hidden_dims=[64, 64], dropout=0.0), IN_DIM, ACT_DIM).train()
    assert not any(isinstance(m, nn.Dropout) for m in no_dropout.modules())
    assert torch.equal(no_dropout.log_prob(x, a), no_dropout.log_prob(x, a))


def test_bf16_dropout_keeps_h_over_one_minus_p_computed_in_float32():
    """The policy's dropout draws as PyTorch's, but in bfloat16 keeps h / (1 - p) computed in float32 and rounded
    once (PyTorch's CPU kernel would scale by 1 / (1 - p) rounded to bfloat16, 1.109375 for p = 0.1); in float32 it
    is PyTorch's dropout."""
    drop = make_policy(PolicyConfig(hidden_dims=[64], dropout=0.1), IN_DIM, ACT_DIM).body[-1].train()
    h = (torch.rand(256, 64, generator=torch.Generator().manual_seed(0)) + 0.1).to(torch.bfloat16)

    def seeded(f, x: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(0)
        return f(x)

    with torch.random.fork_rng(devices=[]), torch.autocast("cpu", dtype=torch.bfloat16):
        out, pytorch = seeded(drop, h), seeded(lambda x: F.dropout(x, 0.1, training=True), h)
        fp32, fp32_pytorch = seeded(drop, h.float()), seeded(lambda x: F.dropout(x, 0.1, training=True), h.float())
    kept = out != 0
    assert out.dtype == torch.bfloat16 and torch.equal(kept, pytorch != 0) and 0.85 < kept.float().mean() < 0.95
    assert torch.equal(out[kept], (h.float() / 0.9).to(torch.bfloat16)[kept])
    assert torch.equal(fp32, fp32_pytorch)


@pytest.mark.parametrize("name", ["unconditional", "diag_gaussian"])
def test_layer_norm_goes_before_each_relu(name):
    plain = make_policy(PolicyConfig(name=name, hidden_dims=[8, 8, 8]), IN_DIM, ACT_DIM)
    assert not any(isinstance(m, nn.LayerNorm) for m in plain.modules())
    normed = make_policy(PolicyConfig(name=name, hidden_dims=[8, 8, 8], layer_norm=True), IN_DIM, ACT_DIM)
    layers = list(normed.body)
    norms = [i for i, m in enumerate(layers) if isinstance(m, nn.LayerNorm)]
    assert len(norms) == 3
    assert all(isinstance(layers[i - 1], nn.Linear) and isinstance(layers[i + 1], nn.ReLU) for i in norms)


def test_mean_actions_are_the_clipped_mean_and_the_squashed_mean():
    x = torch.randn(64, IN_DIM) * 100
    plain = make_policy(PolicyConfig(hidden_dims=[8]), IN_DIM, ACT_DIM).eval()
    squashed = make_policy(PolicyConfig(name="diag_gaussian", hidden_dims=[8]), IN_DIM, ACT_DIM).eval()
    assert isinstance(squashed, DiagGaussianActor)
    with torch.no_grad():
        raw = plain.mean(plain.body(x))
        assert (raw.abs() > 1).any() and (raw.abs() < 1).any(), "both sides of the clip must be exercised"
        assert torch.equal(plain.mean_action(x), raw.clamp(-1.0, 1.0))
        assert torch.equal(squashed.mean_action(x), torch.tanh(squashed.head(squashed.body(x))[:, :ACT_DIM]))


def test_log_std_init_and_bounds_take_effect():
    policy = make_policy(PolicyConfig(hidden_dims=[8], log_std_init=-1.5), IN_DIM, ACT_DIM)
    assert torch.equal(policy.log_std.detach(), torch.full((ACT_DIM,), -1.5))
    actor = make_policy(PolicyConfig(name="diag_gaussian", hidden_dims=[8], log_std_bounds=[-3.0, 1.0]), IN_DIM,
                        ACT_DIM)
    x = torch.randn(5, IN_DIM)
    with torch.no_grad():
        actor.head.weight.zero_()
        for raw, want in ((50.0, 1.0), (-50.0, -3.0), (0.0, -1.0)):  # saturated high, low, and the midpoint
            actor.head.bias.fill_(raw)
            assert torch.equal(actor._mean_log_std(x)[1], torch.full((5, ACT_DIM), want))


@pytest.mark.parametrize("name", ["unconditional", "diag_gaussian"])
def test_adam_steps_on_a_tiny_dataset_lower_the_loss(name):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: threads only fight the busy cores
    try:
        _fit_tiny(name)
    finally:
        torch.set_num_threads(threads)


def _fit_tiny(name: str) -> None:
    torch.manual_seed(0)
    x = torch.randn(128, IN_DIM)
    a = torch.tanh(x[:, :ACT_DIM] * 0.8 + 0.1 * torch.randn(128, ACT_DIM)).clamp(-0.95, 0.95)
    w = torch.rand(128) + 0.5
    policy = make_policy(PolicyConfig(name=name, hidden_dims=[32, 32], dropout=0.0), IN_DIM, ACT_DIM)
    opt = torch.optim.Adam(policy.parameters(), lr=3e-3)

    def loss() -> torch.Tensor:
        return weighted_nll(policy.log_prob(x, a), w)

    with torch.no_grad():
        first = float(loss())
    for _ in range(200):
        opt.zero_grad()
        value = loss()
        value.backward()
        opt.step()
    with torch.no_grad():
        last = float(loss())
    assert last < first - 1.0, (first, last)
    with torch.no_grad():
        assert float((policy.eval().mean_action(x) - a).abs().mean()) < 0.15
