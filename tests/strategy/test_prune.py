"""The pure pieces of the strategy: units, penalty, eps semantics, rebuild by index, optimizer slicing."""

from __future__ import annotations

import copy
import dataclasses
import types

import pytest
import torch
import torch.nn.functional as F
from reference import torch_counted_macs

from nni_hrnas.strategy.ema import EMA
from nni_hrnas.strategy.policy import PruningPolicy
from nni_hrnas.strategy.prune import rebuild, recalibrate_bn, slice_optimizer_, slice_spec, threshold_keep
from nni_hrnas.strategy.units import WidthCost, clip_zero_crossings_, mean_unit_work, penalty, unit_groups
from search_spaces import HRNASNetwork, HRNASSpace

EPS = 1e-3
SIZE = (3, 32, 32)


def tiny_net(seed: int = 0) -> HRNASNetwork:
    torch.manual_seed(seed)
    space = HRNASSpace.from_preset("tiny")
    net = space.freeze(space.max_sample())
    with torch.no_grad():  # non-trivial BN statistics and affine parameters everywhere
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
    return net


def pruning_policy(**kwargs) -> PruningPolicy:
    """A policy that prunes at every step, no warm-up, at ``SIZE``; ``kwargs`` set the rest."""
    return PruningPolicy(
        **{"lambda_": 1.0, "eps": EPS, "prune_every": 1, "warmup_epochs": 0.0, "input_size": SIZE, **kwargs}
    )


def masked_transformer_forward(t, x, kept: torch.Tensor):
    """Reference: the transformer with the tokens outside ``kept`` masked out of attention (their
    token-BN gamma is set to 0 by :func:`masked_copy`, so they output their beta)."""
    n = t.num_tokens
    alive = torch.zeros(n, dtype=torch.bool)
    alive[kept] = True
    batch, _, height, width = x.shape
    s = t.size
    small = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False)
    pos = t._positional(height, width, x)
    small = torch.cat([small, pos.expand(batch, -1, -1, -1)], dim=1)
    tokens = t.proj_bn(t.proj(small)).flatten(2)

    def attend(a, query, key, value):
        q, k, v = a._split(a.q(query)), a._split(a.k(key)), a._split(a.v(value))
        if q.shape[0] != k.shape[0]:
            q = q.expand(k.shape[0], *q.shape[1:])
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=alive[None, None, None, :])
        return a.out(out.transpose(-3, -2).flatten(-2))

    h = t.encoder_norm1(tokens + attend(t.encoder_attn, tokens, tokens, tokens))
    memory = t.encoder_norm2(h + t.encoder_ffn(h))
    queries = t.queries.weight[None]
    d = t.decoder_norm1(queries + attend(t.decoder_attn, queries, memory, memory))
    d = t.decoder_norm2(d + t.decoder_ffn(d))
    out = t.inverse_bn(t.inverse(t.token_bn(d.unflatten(-1, (s, s)))))
    return F.interpolate(out, size=t.output_size(height, width), mode="bilinear", align_corners=False)


def masked_copy(net, keep):
    """Reference masked network: removed channels' gamma 0, emptied MixConvs/transformers dropped,
    removed tokens masked out of attention. Built independently of ``rebuild``."""
    masked = copy.deepcopy(net)
    for label, block in masked.blocks.items():
        alive_paths = 0
        for name, path in block.paths.items():
            idx = keep[f"{label}_{name}"]
            gone = torch.ones(path.dw_bn.weight.shape[0], dtype=torch.bool)
            gone[idx] = False
            with torch.no_grad():
                path.dw_bn.weight[gone] = 0.0
            alive_paths += int(idx.numel() > 0)
        if block.paths and not alive_paths:
            block.mix_bn = None
        if block.transformer is not None:
            kept = keep[f"{label}_tok"]
            if kept.numel() == 0:
                block.transformer = None
            else:
                t = block.transformer
                gone = torch.ones(t.num_tokens, dtype=torch.bool)
                gone[kept] = False
                with torch.no_grad():
                    t.token_bn.weight[gone] = 0.0
                t.forward = types.MethodType(
                    lambda self, x, kept=kept: masked_transformer_forward(self, x, kept), t
                )
    return masked


def make_prunable(net, seed: int = 1):
    """Push a varied set of importance factors below eps: some channels, whole paths, whole MixConvs,
    some tokens, whole transformers and one whole block."""
    g = torch.Generator().manual_seed(seed)
    groups = unit_groups(net, SIZE)
    with torch.no_grad():
        for i, grp in enumerate(groups):
            w = grp.bn.weight
            if grp.block == "p2_b1_n0" or i % 7 == 3:  # a whole block / whole paths or transformers
                drop = torch.ones_like(w, dtype=torch.bool)
            else:
                drop = torch.rand(w.shape, generator=g) < 0.4
            tiny = (torch.rand(w.shape, generator=g) - 0.5) * EPS  # |gamma| < eps, either sign
            w[drop] = tiny[drop]
    return groups


def test_slice_spec_names_the_unit_axis():
    assert slice_spec("blocks.p1_b0_n0.paths.k5.dw.weight") == ("p1_b0_n0_k5", 0)
    assert slice_spec("blocks.p1_b0_n0.paths.k5.expand_bn.running_var") == ("p1_b0_n0_k5", 0)
    assert slice_spec("blocks.p1_b0_n0.paths.k3.project.weight") == ("p1_b0_n0_k3", 1)
    assert slice_spec("blocks.p1_b0_n0.transformer.queries.weight") == ("p1_b0_n0_tok", 0)
    assert slice_spec("blocks.p1_b0_n0.transformer.inverse.weight") == ("p1_b0_n0_tok", 1)
    assert slice_spec("blocks.p1_b0_n0.transformer.encoder_attn.q.weight") is None
    assert slice_spec("blocks.p1_b0_n0.mix_bn.weight") is None
    assert slice_spec("stem.0.weight") is None


def test_units_costs_and_penalty():
    net = tiny_net()
    groups = unit_groups(net, SIZE)
    labels = {g.label for g in groups}
    assert labels == set(net.arch)  # every choice label is a unit group
    tok = [g for g in groups if g.kind == "tok"]
    assert tok and all(g.count == 4 for g in tok)
    norm = mean_unit_work(groups)
    with torch.no_grad():
        for g in groups:
            g.bn.weight.fill_(1.0)
    total_units = sum(g.count for g in groups)
    assert penalty(groups, norm).item() == pytest.approx(total_units, rel=1e-5)  # mean unit cost is 1
    # the same net costed at a larger input weighs units differently (costs at the training size)
    big = unit_groups(net, (3, 64, 64))
    assert big[0].unit_macs == 4 * groups[0].unit_macs
    # token costs follow the tokens still alive: O_T(n') - O_T(n'-1) grows with n'
    keep = {g.label: torch.arange(g.count if g.kind != "tok" else 2) for g in groups}
    small = rebuild(net, keep)
    small_tok = {g.label: g.unit_macs for g in unit_groups(small, SIZE) if g.kind == "tok"}
    assert all(small_tok[g.label] < g.unit_macs for g in tok)


def test_penalty_weighs_each_gamma_by_the_macs_its_unit_costs():
    """One gamma at a time: the penalty is |gamma| times the MACs that removing its unit saves, as the
    independent counter measures it, over the normaliser. Units at different resolutions and widths
    cost different amounts, so a plain L1 of the gammas gives other values."""
    net = tiny_net().eval()
    groups = unit_groups(net, SIZE)
    norm = mean_unit_work(groups)
    x = torch.zeros(1, *SIZE)
    full = torch_counted_macs(net, x)
    kernels = [g for g in groups if g.kind != "tok" and g.count >= 2]
    savings = []
    for g in (kernels[0], kernels[len(kernels) // 2], kernels[-1]):
        with torch.no_grad():
            for h in groups:
                h.bn.weight.zero_()
            g.bn.weight[1] = -0.5
        keep = {h.label: torch.arange(h.count) for h in groups}
        keep[g.label] = torch.tensor([i for i in range(g.count) if i != 1])
        saving = full - torch_counted_macs(rebuild(net, keep).eval(), x)
        assert penalty(groups, norm).item() == pytest.approx(0.5 * saving / norm, rel=1e-6), g.label
        savings.append(saving)
    assert len(set(savings)) > 1, savings  # the check tells a weighted penalty from a plain L1


def test_lambda_ramps_up_over_the_warmup_then_stays():
    policy = PruningPolicy(
        lambda_=0.2, eps=EPS, prune_every=1, warmup_epochs=2.0, input_size=SIZE, shrink_epochs=3
    )
    # a linear ramp from 0 over 2 epochs, by hand: 0.2 * t / 2
    assert [policy.lambda_at(t, 1.0, 5) for t in (0.0, 0.5, 1.0, 1.5, 2.0, 2.9)] == pytest.approx(
        [0.0, 0.05, 0.1, 0.15, 0.2, 0.2]
    )
    assert policy.lambda_at(1.0, 3.0, 5) == pytest.approx(0.3)  # the budget's scale multiplies the ramp
    assert policy.lambda_at(3.0, 1.0, 5) == 0.0  # the training phase has no penalty
    no_warmup = dataclasses.replace(policy, warmup_epochs=0.0)
    assert no_warmup.lambda_at(0.0, 1.0, 5) == pytest.approx(0.2)


def test_eps_semantics_below_removed_above_kept():
    net = tiny_net()
    groups = unit_groups(net, SIZE)
    below = torch.tensor([0.5 * EPS, -0.99 * EPS, 0.0, 1e-6])
    above = torch.tensor([EPS, -1.01 * EPS, 2.0, -0.3])
    expected = {}
    with torch.no_grad():
        for i, g in enumerate(groups):
            values = torch.where(
                torch.arange(g.count) % 3 == i % 3,
                below[torch.arange(g.count) % 4],
                above[torch.arange(g.count) % 4],
            )
            g.bn.weight.copy_(values)
            expected[g.label] = values[values.abs() >= EPS]
    keep = threshold_keep(groups, EPS)
    new = rebuild(net, keep)
    for g in unit_groups(new, SIZE):
        assert torch.equal(g.bn.weight.detach(), expected[g.label])
    for label, values in expected.items():
        assert new.arch[label] == values.numel()


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_rebuilt_outputs_equal_masked_outputs(mode):
    net = tiny_net()
    groups = make_prunable(net)
    keep = threshold_keep(groups, EPS)
    new = rebuild(net, keep)
    assert any(new.arch[k] == 0 for k in new.arch) and any(new.arch[k] > 0 for k in new.arch)
    assert all(new.arch[f"p2_b1_n0_{k}"] == 0 for k in ("k3", "k5", "k7", "tok"))  # a whole block vanished
    masked = masked_copy(net, keep)
    x = torch.randn(4, *SIZE, generator=torch.Generator().manual_seed(3))
    for m in (masked, new):
        m.train(mode == "train")
    with torch.no_grad():
        ref, out = masked(x), new(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    assert new.cost(SIZE).macs < net.cost(SIZE).macs


def test_optimizer_state_and_ema_are_sliced():
    net = tiny_net()
    opt = torch.optim.AdamW(
        [
            {"params": [p for p in net.parameters() if p.ndim > 1]},
            {"params": [p for p in net.parameters() if p.ndim <= 1], "weight_decay": 0.0},
        ],
        lr=1e-3,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    ema = EMA(net, 0.9)
    net(torch.randn(2, *SIZE)).square().mean().backward()
    opt.step()
    sched.step()
    ema.update(net)
    groups = make_prunable(net)
    keep = threshold_keep(groups, EPS)
    name = "blocks.p1_b0_n0.paths.k3.dw.weight"
    old_state = opt.state[dict(net.named_parameters())[name]]["exp_avg"].clone()
    new = rebuild(net, keep)
    slice_optimizer_(opt, net, new, keep)
    ema.replace(rebuild(ema.model, keep))
    new_params = dict(new.named_parameters())
    held = [p for g in opt.param_groups for p in g["params"]]
    assert {id(p) for p in held} == {id(p) for p in new.parameters()}
    torch.testing.assert_close(opt.state[new_params[name]]["exp_avg"], old_state[keep["p1_b0_n0_k3"]])
    # training goes on: the sliced state fits, the scheduler still drives the same optimizer
    new(torch.randn(2, *SIZE)).square().mean().backward()
    opt.step()
    sched.step()
    ema.update(new)
    assert ema.model.arch == new.arch


def test_width_cost_matches_the_cost_model():
    net = tiny_net()
    wc = WidthCost(net, SIZE)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        widths = {k: int(torch.randint(0, v + 1, (1,), generator=g)) for k, v in net.arch.items()}
        assert wc.macs(widths) == HRNASNetwork(net.config, widths).cost(SIZE).macs
    assert wc.macs({k: 0 for k in net.arch}) == wc.fixed


def test_degenerate_network_is_valid_and_costed_exactly():
    net = tiny_net()
    groups = unit_groups(net, SIZE)
    keep = {g.label: torch.zeros(0, dtype=torch.long) for g in groups}
    keep["head_k3"] = torch.tensor([0, 5])  # the head keeps two channels, every other block is its shortcut
    new = rebuild(net, keep)
    assert all(not b.paths and b.transformer is None for label, b in new.blocks.items() if label != "head")
    x = torch.randn(1, *SIZE)
    assert new.cost(SIZE).macs == torch_counted_macs(new.eval(), x)
    assert new(x).shape == net.eval()(x).shape


def test_zero_crossings_give_exact_zeros():
    net = tiny_net()
    groups = unit_groups(net, SIZE)[:2]
    w = groups[0].bn.weight
    with torch.no_grad():
        w.fill_(0.01)
        w[0] = 0.0
    before = [g.bn.weight.detach().clone() for g in groups]
    with torch.no_grad():
        w[1:3] = -0.002  # the step overshot zero
        w[0] = 1e-5  # a zero nudged by a gradient smaller than the penalty
    w.grad = torch.zeros_like(w)
    clip_zero_crossings_(groups, before, lam=1.0, normaliser=1.0)
    assert w[0] == 0 and (w[1:3] == 0).all() and (w[3:] == 0.01).all()


def test_recalibrate_bn_recomputes_statistics():
    net = tiny_net()
    x = torch.randn(8, *SIZE)
    bn = net.stem[1]
    with torch.no_grad():
        expected_mean = net.stem[0](x).mean((0, 2, 3))
    recalibrate_bn(net, [x])
    torch.testing.assert_close(bn.running_mean, expected_mean, rtol=1e-4, atol=1e-5)
    assert bn.momentum == 0.1  # restored after the cumulative average


def test_ema_follows_the_weights():
    net = tiny_net()
    ema = EMA(net, decay=0.5)
    p = net.stem[0].weight
    start = p.detach().clone()
    with torch.no_grad():
        p.add_(1.0)
    ema.update(net)  # effective decay min(0.5, 2 / 11)
    d = 2 / 11
    torch.testing.assert_close(ema.model.stem[0].weight, d * start + (1 - d) * p.detach())
    assert ema.model.stem[1].num_batches_tracked == net.stem[1].num_batches_tracked


def test_granularity_rounds_widths_up_keeping_the_next_most_important():
    space = HRNASSpace.from_preset("tiny", granularity=4)
    net = space.freeze(space.max_sample())
    groups = unit_groups(net, SIZE)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for grp in groups:
            w = torch.rand(grp.count, generator=g)
            w[torch.rand(grp.count, generator=g) < 0.5] *= EPS  # about half below eps
            grp.bn.weight.copy_(w)
    keep = threshold_keep(groups, EPS, width_rule=lambda label, n: space.round_up({label: n})[label])
    new = rebuild(net, keep)
    space.validate_sample(new.arch)  # every width is an allowed value of the space
    for grp in groups:
        importance = grp.importance()
        above = int((importance >= EPS).sum())
        kept = keep[grp.label]
        assert kept.numel() >= above and kept.numel() == space.round_up({grp.label: above})[grp.label]
        if kept.numel():  # the kept units are the most important ones
            dropped = torch.ones(grp.count, dtype=torch.bool)
            dropped[kept] = False
            if dropped.any():
                assert importance[kept].min() >= importance[dropped].max()


def test_path_overhead_is_shared_by_the_units_still_alive():
    net = tiny_net()
    plain = {g.label: g for g in unit_groups(net, SIZE)}
    groups = unit_groups(net, SIZE, path_overhead=1e6)
    g = groups[0]
    assert float(g.unit_cost()) == pytest.approx(plain[g.label].unit_macs + 1e6 / g.count)
    with (
        torch.no_grad()
    ):  # all but two units of the path removed (exact zeros, as the truncated gradient leaves them)
        g.bn.weight[2:] = 0.0
        g.bn.weight[:2] = 1.0
    assert float(g.unit_cost()) == pytest.approx(plain[g.label].unit_macs + 1e6 / 2)
    with torch.no_grad():
        g.bn.weight.zero_()
    assert float(g.unit_cost()) == pytest.approx(plain[g.label].unit_macs + 1e6)  # never divided by 0
    # the penalty's pull on a unit grows as its path thins (d penalty / d gamma = cost / normaliser)
    with torch.no_grad():
        g.bn.weight.fill_(1.0)
    penalty([g], 1.0).backward()
    full = g.bn.weight.grad[0].item()
    g.bn.weight.grad = None
    with torch.no_grad():
        g.bn.weight[1:] = 0.0
    penalty([g], 1.0).backward()
    assert g.bn.weight.grad[0].item() == pytest.approx(plain[g.label].unit_macs + 1e6)
    assert g.bn.weight.grad[0].item() > full


def test_min_path_width_removes_a_thinner_path_whole():
    """A label left with 1 to ``min_width - 1`` units above eps loses them all; one with none or
    with ``min_width`` or more keeps exactly its units above eps (counts set by hand per label)."""
    net = tiny_net()
    groups = unit_groups(net, SIZE)
    above_counts = [i % 5 for i in range(len(groups))]  # 0, 1, 2, 3, 4 units above eps in turn
    with torch.no_grad():
        for grp, above in zip(groups, above_counts, strict=True):
            grp.bn.weight.fill_(0.1 * EPS)
            grp.bn.weight[:above] = 1.0
    policy = pruning_policy(min_path_width=3)
    keep = threshold_keep(groups, EPS, width_rule=policy.width_rule)
    new = rebuild(net, keep)
    for grp, above in zip(groups, above_counts, strict=True):
        expected = above if above >= 3 else 0
        assert new.arch[grp.label] == expected, (grp.label, above)
        assert keep[grp.label].tolist() == list(range(expected))


def budget_case(seed: int):
    """A tiny network with every unit above eps, importance spread so that paths thin unevenly under
    a budget of 40% of its MACs: ``(net, groups, input, budget)``."""
    net = tiny_net()
    groups = unit_groups(net, SIZE)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for grp in groups:
            grp.bn.weight.copy_(torch.linspace(0.01, 1.0, grp.count) * torch.rand(1, generator=g))
    x = torch.randn(1, *SIZE)
    return net, groups, x, int(0.4 * torch_counted_macs(net.eval(), x))


def test_min_path_width_holds_when_the_last_step_prunes_to_a_budget():
    """Budget mode's final step (every unit ranked, the shortest prefix that meets the budget, units put back) leaves
    no path thinner than the minimum, and the network it builds meets the budget by an independent count."""
    net, groups, x, target = budget_case(seed=0)
    labels = {grp.label for grp in groups}
    for min_width in (1, 3):
        policy = pruning_policy(target_macs=target, min_path_width=min_width)
        new = rebuild(net, policy.keep(groups, net, last=True)).eval()
        widths = [w for label, w in new.arch.items() if label in labels]
        thin = [w for w in widths if 0 < w < 3]
        if min_width == 1:
            assert thin, "the budget alone leaves paths of 1-2 units: the minimum has something to do"
        else:
            assert not thin, widths
        assert torch_counted_macs(new, x) <= target


@pytest.mark.parametrize("min_width", [1, 3])
def test_last_step_fills_the_budget_back_up_to_where_no_removed_unit_fits(min_width):
    """The last step's shortest prefix of ranked units can land far under the budget (its last unit
    may take a whole path below the minimum width: the demo's search ended 15% under). It then puts
    back the most important removed units while the budget holds: no label can grow by one more
    step (one unit, or a removed path back at the minimum) without going over it. Counted
    independently on the rebuilt networks."""
    net, groups, x, target = budget_case(seed=1)
    policy = pruning_policy(target_macs=target, min_path_width=min_width)
    keep = policy.keep(groups, net, last=True)
    assert torch_counted_macs(rebuild(net, keep).eval(), x) <= target
    width_cost = WidthCost(net, SIZE)  # exact (tested against the counter): every label's next step
    widths = {label: int(idx.numel()) for label, idx in keep.items()}
    grown = {}
    for grp in groups:
        kept = keep[grp.label]
        ranked = torch.argsort(grp.importance(), descending=True)  # most important first
        assert set(kept.tolist()) == set(ranked[: kept.numel()].tolist()), "kept: the most important"
        if kept.numel() < grp.count:
            more = {**keep, grp.label: torch.sort(ranked[: max(kept.numel() + 1, min_width)]).values}
            grown[grp.label] = (width_cost.macs({**widths, grp.label: int(more[grp.label].numel())}), more)
    assert grown and all(macs > target for macs, _ in grown.values()), grown
    # the smallest next step, counted on the rebuilt network
    macs, more = min(grown.values(), key=lambda item: item[0])
    assert torch_counted_macs(rebuild(net, more).eval(), x) == macs > target


def test_last_step_lands_under_the_budget_when_the_floor_would_stay_far_above_it():
    """With a minimum path width, the units below eps can all sit in one path that the minimum removes
    whole: the floor (never prune below the budget) then keeps that path at the minimum, above the
    budget by more than the tolerance. An earlier step keeps it so; the last step lands at or under
    the budget instead (digits_kp with --min-path-width 8 and a budget ended 7-15% above it).
    Counted independently."""
    net = tiny_net()
    groups = unit_groups(net, SIZE)
    width_cost = WidthCost(net, SIZE)
    # the path whose removal costs the most MACs keeps 3 units above eps, one fewer than the minimum
    big = max(groups, key=lambda grp: width_cost.kernel_unit.get(grp.label, 0) * grp.count)
    min_width = 4
    with torch.no_grad():
        for grp in groups:
            grp.bn.weight.fill_(1.0)
        big.bn.weight.copy_(torch.linspace(0.1 * EPS, 0.9 * EPS, big.count))  # below eps, ranked
        big.bn.weight[-(min_width - 1) :] = 1.0
    x = torch.randn(1, *SIZE)
    full = torch_counted_macs(net.eval(), x)
    unit = width_cost.kernel_unit[big.label]
    without_path = full - big.count * unit  # what the threshold alone leaves: the path removed whole
    at_minimum = full - (big.count - min_width) * unit  # the floor: the path kept at the minimum
    target = without_path + min_width * unit // 2  # between the two
    tolerance = 0.001
    assert at_minimum > (1 + tolerance) * target, "the case needs the floor outside the tolerance"
    policy = pruning_policy(target_macs=target, target_tolerance=tolerance, min_path_width=min_width)
    earlier = rebuild(net, policy.keep(groups, net, last=False)).eval()
    assert earlier.arch[big.label] == min_width
    assert torch_counted_macs(earlier, x) == at_minimum  # never below the budget before the last step
    last = rebuild(net, policy.keep(groups, net, last=True)).eval()
    assert torch_counted_macs(last, x) <= target
    assert last.arch[big.label] == 0


@pytest.mark.parametrize(
    "warmup, path",
    [
        # by hand: 26 M to 6 M on a straight line that ends at 80% of 3 epochs (2.4) and begins when
        # the warm-up ends: after epochs 1, 2, 3 it is 0, 5/7 and all of the way (1 epoch of warm-up)
        (1.0, [26_000_000, 26_000_000 - 20_000_000 * 5 / 7, 6_000_000]),
        # or 5/12, 5/6 and all of the way (no warm-up: the path as before)
        (0.0, [26_000_000 - 20_000_000 * 5 / 12, 26_000_000 - 20_000_000 * 5 / 6, 6_000_000]),
    ],
)
def test_budget_path_starts_when_the_penalty_warm_up_ends(warmup, path):
    """Budget mode scales lambda by 1.5 when the search is behind the path to the target, down when
    ahead. During the warm-up the penalty ramps up from 0 and no gamma can reach eps, so the path
    starts at the supernet's MACs when the warm-up ends (the CPU default: 3 shrinking epochs, 1 of
    warm-up, and digits_seg's budgeted searches had lambda raised to 1.5x after the first epoch)."""
    start, target, epochs = 26_000_000, 6_000_000, 3
    policy = pruning_policy(target_macs=target, warmup_epochs=warmup)
    for epoch, desired in enumerate(path):
        behind, ahead, on = int(desired * 1.03), int(desired * 0.99), int(desired * 1.01)
        assert policy.next_lambda_scale(1.0, behind, start, epoch, epochs) == 1.5
        assert policy.next_lambda_scale(1.0, ahead, start, epoch, epochs) == pytest.approx(1 / 1.5)
        assert policy.next_lambda_scale(1.0, on, start, epoch, epochs) == 1.0
    # the first epoch of a search with a warm-up: nothing pruned yet, and that is on the path
    assert policy.next_lambda_scale(1.0, start, start, 0, epochs) == (1.0 if warmup else 1.5)
