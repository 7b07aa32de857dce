"""Recipes: the paper values (docs/method.md), the annealing table of §4, the LR/momentum schedules at
their key points, the optimiser's parameter groups, and the mini scale."""

from __future__ import annotations

import json

import pytest
import torch

from descbench import registry
from descbench.errors import DescbenchError
from descbench.train.loop import _set_schedule, build_optimiser
from descbench.train.recipe import Optimiser, annealing_table

# docs/method.md §4: cycle -> (K, threshold, lr as printed there, 3 significant digits)
METHOD_TABLE = [
    (2816, -0.10, 1.50e-6), (2688, -0.05, 1.13e-6), (2560, 0.00, 8.44e-7), (2432, 0.05, 6.33e-7),
    (2304, 0.10, 4.75e-7), (2176, 0.15, 3.56e-7), (2048, 0.20, 2.67e-7), (1920, 0.25, 2.00e-7),
    (1792, 0.30, 1.50e-7), (1664, 0.35, 1.13e-7), (1536, 0.40, 8.45e-8), (1408, 0.45, 6.34e-8),
    (1280, 0.50, 4.75e-8), (1152, 0.55, 3.56e-8), (1024, 0.60, 2.67e-8),
]


def test_annealing_schedule_equals_the_method_table():
    table = annealing_table()
    assert len(table) == 15
    for (k, t, lr), (k_ref, t_ref, lr_ref) in zip(table, METHOD_TABLE):
        assert k == k_ref
        assert t == pytest.approx(t_ref, abs=1e-12)
        assert lr == pytest.approx(lr_ref, rel=5e-3)
    stages = registry.get("balanced").recipe.stages
    assert [(s.n_classes, s.loss_kwargs["threshold"]) for s in stages] == [(k, t) for k, t, _ in table]
    for stage, (_, _, lr) in zip(stages, table):
        assert stage.loss == "AnnealingLoss" and stage.loss_kwargs["B"] == 4.25
        assert (stage.n_per_class, stage.epochs, stage.steps_per_epoch) == (2, 1, 1400)
        assert stage.optimiser.schedule == "flat_cos" and stage.optimiser.pct_start == 0.6
        assert stage.optimiser.lr == lr
        # a fresh fastai Adam per cycle (mom 0.9) under fit_flat_cos, which schedules no momentum
        # (Self-TNet ftrain.py:187-210; fastai2 optimizer.py:176, schedule.py:128-135)
        assert {stage.optimiser.beta1_at(k, 1400) for k in (0, 700, 1399)} == {0.9}
    fixed = registry.get("balanced-fixed-hardness").recipe.stages
    assert {(s.n_classes, s.loss_kwargs["threshold"]) for s in fixed} == {(2816, -0.10)}
    assert [s.optimiser.lr for s in fixed] == [s.optimiser.lr for s in stages]


def test_stage1_and_ablation_recipes_carry_the_paper_values():
    (stage,) = registry.get("balanced-no-annealing").recipe.stages
    assert (stage.n_classes, stage.n_per_class, stage.epochs, stage.steps_per_epoch) == (2560, 3, 25, 1582)
    opt = stage.optimiser
    assert (opt.kind, opt.lr, opt.div, opt.div_final, opt.pct_start, opt.weight_decay) == \
        ("adamw", 3.3e-3, 25.0, 1e5, 0.25, 0.1)
    assert (opt.moms, opt.beta2, opt.eps) == ((0.95, 0.85, 0.95), 0.99, 1e-5)
    assert stage.loss_kwargs == {"R": 1.0, "A": 1.05, "tau_lower": -0.55, "tau_upper": 0.10}
    assert stage.teacher and stage.augment == "affine"
    (no_mod,) = registry.get("balanced-no-modulation-stage1").recipe.stages
    assert no_mod.loss_kwargs["fixed_bound"] == 3.7 and no_mod.teacher
    (no_self,) = registry.get("balanced-no-selfsup-stage1").recipe.stages
    assert no_self.loss_kwargs["self_supervised"] is False and not no_self.teacher
    for name in ("balanced-no-modulation", "balanced-no-selfsup"):  # same stage 2 as balanced
        assert registry.get(name).recipe == registry.get("balanced").recipe
        assert registry.get(name).init_from == f"{name}-stage1"
    (hardnet,) = registry.get("hardnet").recipe.stages
    assert (hardnet.optimiser.kind, hardnet.optimiser.lr, hardnet.optimiser.schedule) == ("sgd", 10.0, "linear")
    assert (hardnet.n_classes, hardnet.n_per_class, hardnet.epochs) == (1024, 2, 10)
    for name in registry.all_descriptors():
        desc = registry.get(name)
        if desc.recipe is not None:
            json.dumps(desc.recipe.to_json())  # JSON-able for model.pt's metadata
            for s in desc.recipe.stages:
                s.build_loss()


def test_one_cycle_matches_fastai_at_key_points():
    opt = Optimiser(kind="adamw", lr=3.3e-3, schedule="one_cycle", div=25.0, div_final=1e5,
                    pct_start=0.25)
    total = 1000
    assert opt.lr_at(0, total) == pytest.approx(3.3e-3 / 25)
    assert opt.lr_at(125, total) == pytest.approx((3.3e-3 / 25 + 3.3e-3) / 2)  # cosine midpoint
    assert opt.lr_at(250, total) == pytest.approx(3.3e-3)
    assert opt.lr_at(625, total) == pytest.approx((3.3e-3 + 3.3e-8) / 2)
    assert opt.lr_at(total, total) == pytest.approx(3.3e-8)
    assert opt.beta1_at(0, total) == pytest.approx(0.95)
    assert opt.beta1_at(125, total) == pytest.approx(0.90)
    assert opt.beta1_at(250, total) == pytest.approx(0.85)
    assert opt.beta1_at(total, total) == pytest.approx(0.95)
    lrs = [opt.lr_at(s, total) for s in range(total)]
    assert max(lrs) == pytest.approx(3.3e-3) and lrs.index(max(lrs)) == 250


def test_flat_cos_and_linear_schedules():
    opt = Optimiser(kind="adamw", lr=1.5e-6, schedule="flat_cos", pct_start=0.6, div_final=1e5)
    assert opt.lr_at(0, 1400) == opt.lr_at(839, 1400) == 1.5e-6
    assert opt.lr_at(1120, 1400) == pytest.approx((1.5e-6 + 1.5e-11) / 2)
    assert opt.lr_at(1400, 1400) == pytest.approx(1.5e-11)
    assert opt.beta1_at(700, 1400) == 0.95
    # HardNet's adjust_learning_rate runs after each update, its counter starting at 0: updates
    # 0 and 1 at lr, then lr * (1 - (k - 1) / (decay_span * total))
    sgd = Optimiser(kind="sgd", lr=10.0, schedule="linear")
    assert [sgd.lr_at(s, 4) for s in range(4)] == [10.0, 10.0, 7.5, 5.0]


def test_hardnet_schedule_follows_its_training_script():
    """DagnyT/hardnet HardNet.py:435,491-502 (n_triplets 5,000,000, batch 1024, 10 epochs)."""
    (stage,) = registry.get("hardnet").recipe.stages
    assert stage.optimiser.decay_span * stage.total_steps == pytest.approx(48828.125, rel=1e-15)
    assert (stage.steps_per_epoch, stage.last_batch_classes) == (4883, 832)  # 4882 * 1024 + 832
    assert [stage.classes_at(k) for k in (0, 4881, 4882, 4883, 2 * 4883 - 1)] == \
        [1024, 1024, 832, 1024, 832]
    # the script's own recurrence: group['step'] is created at 0 after the first update
    lr, counter, script = 10.0, None, []
    for _ in range(6):
        script.append(lr)  # the update runs at the current lr, then adjust_learning_rate
        counter = 0.0 if counter is None else counter + 1.0
        lr = 10.0 * (1.0 - counter * 1024 / (5_000_000 * 10.0))
    ours = [stage.optimiser.lr_at(k, stage.total_steps) for k in range(6)]
    assert ours == pytest.approx(script, rel=1e-15, abs=0)
    # HardNet+ is the same recipe with run_me.sh's --fliprot=True
    (plus,) = registry.get("hardnet-plus").recipe.stages
    assert plus.augment == "flip" and stage.augment == "none"
    assert plus.optimiser == stage.optimiser and plus.loss_kwargs == stage.loss_kwargs
    for name in ("hardnet", "hardnet-plus", "hynet", "sosnet"):  # cv2.resize INTER_LINEAR
        assert registry.get(name).recipe.resize == "cv2", name
    assert registry.get("balanced").recipe.resize == "pil"


def test_hynet_trainer_epochs_follow_the_training_set():
    """yuruntian/HyNet utils.py:121: int(#patches / (2 * 512)) batches per epoch."""
    for name in ("hynet", "sosnet"):
        recipe = registry.get(name).recipe
        for n_patches, steps in ((450092, 439), (468159, 457), (633587, 618)):
            (stage,) = recipe.for_train_set(n_patches).stages
            assert (stage.steps_per_epoch, stage.total_steps) == (steps, 200 * steps)
            assert stage.augment == "rot90_flipud"
        with pytest.raises(DescbenchError, match="for_train_set"):
            recipe.total_steps
        with pytest.raises(DescbenchError, match="only 100 patches"):
            recipe.for_train_set(100)
        # mini shrinks the Liberty-length schedule, whatever the size of the mini set
        mini = recipe.scale("mini")
        assert mini.for_train_set(1796) == mini and mini.total_steps == 44
    with pytest.raises(DescbenchError, match="schedule"):
        Optimiser(kind="sgd", lr=1.0, schedule="step").lr_at(0, 1)


def test_adamw_decays_what_fastai_decays():
    """fastai2 0.0.16 Learner(wd_bn_bias=False): no decay for the parameters of BatchNorm/InstanceNorm
    modules and for every ``.bias`` (torch_core.py:518-526, learner.py:129-133); FRN's weight and
    TLU's tau are decayed."""
    desc = registry.get("balanced-no-annealing")
    (stage,) = desc.recipe.stages
    net = desc.network()
    optimiser = build_optimiser(stage, net)
    decayed = {id(p) for g in optimiser.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    names = dict(net.named_parameters())
    assert len(names) == 7 * 1 + 6 * 1 + 7 * 3  # 7 conv weights, 6 conv biases, 7 FRN+TLU (w, b, tau)
    expected = {n for n in names if not n.endswith(".bias")}  # conv/FRN weights and TLU taus
    assert sum(n.endswith(".tau") for n in expected) == 7
    assert {n for n, p in names.items() if id(p) in decayed} == expected
    bn = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2),
                             torch.nn.InstanceNorm2d(2, affine=True), torch.nn.Linear(2, 2))
    optimiser_bn = build_optimiser(stage, bn)
    decayed = {id(p) for g in optimiser_bn.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert {n for n, p in bn.named_parameters() if id(p) in decayed} == {"0.weight", "3.weight"}
    optimiser = build_optimiser(stage, net)
    assert isinstance(optimiser, torch.optim.AdamW)
    _set_schedule(optimiser, stage, stage.total_steps // 4)
    assert optimiser.param_groups[0]["lr"] == pytest.approx(3.3e-3, rel=1e-3)
    assert optimiser.param_groups[0]["betas"][0] == pytest.approx(0.85, abs=1e-3)
    assert optimiser.param_groups[0]["betas"][1] == 0.99 and optimiser.param_groups[0]["eps"] == 1e-5


def test_mini_scale_shrinks_steps_and_classes_and_keeps_every_cycle():
    for name, desc in registry.all_descriptors().items():
        if desc.recipe is None:
            continue
        paper, mini = desc.recipe.for_train_set(450092), desc.recipe.scale("mini")
        assert desc.recipe.scale("paper") is desc.recipe
        assert len(mini.stages) == len(paper.stages) and mini.scale_name == "mini"
        assert mini.total_steps <= 60 and mini.total_steps < paper.total_steps
        for small, big in zip(mini.stages, paper.stages):
            assert 16 <= small.n_classes < big.n_classes
            assert small.loss_kwargs == big.loss_kwargs and small.n_per_class == big.n_per_class
    annealing = [s.n_classes for s in registry.get("balanced").recipe.scale("mini").stages]
    assert annealing == sorted(annealing, reverse=True) and annealing[0] > annealing[-1]
    hardnet = registry.get("hardnet").recipe.scale("mini").stages[0]
    assert hardnet.optimiser.lr == pytest.approx(10.0 * 16 / 1024)  # linear scaling rule for SGD
    with pytest.raises(DescbenchError, match="unknown scale"):
        registry.get("hardnet").recipe.scale("huge")
