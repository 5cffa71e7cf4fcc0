"""Two-phase curriculum: the switch step, per-phase proportions and filters, config errors, LR."""

import math
import os

import numpy as np
import pytest

from elmjax import config as C
from elmjax.data.curriculum import TrainData, curriculum_phases
from elmjax.presets import config_module
from elmjax.train import optimizer as opt_lib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
quickstart_two_phase = config_module(os.path.join(REPO, "experiments", "quickstart_two_phase.py"))


def small_two_phase(steps=40, start=0.5):
    cfg = quickstart_two_phase.get_config(f"steps={steps},phase2_start={start}")
    cfg.data.seq_len = 64
    cfg.train.global_batch_size = 8
    cfg.data.prefetch = 0
    cfg.optim.warmup_steps = 5
    return C.validate(cfg)


def test_phases_split_the_run_as_configured():
    cfg = small_two_phase(steps=40, start=0.75)
    spans = curriculum_phases(cfg)
    assert [(s.name, s.start, s.end) for s in spans] == [("web", 0, 30), ("refined", 30, 40)]
    assert spans[1].data == {"min_chars": 400, "min_quality": 0.9}


def test_switch_at_the_configured_step_with_each_phase_mixture():
    cfg = small_two_phase(steps=40, start=0.5)
    data = TrainData(cfg)
    seen = []
    for step in range(40):
        data.next_batch(step)
        seen.append(data.phase_name(step))
        if step == 19:
            web = data.stats()
    refined = data.stats()
    data.close()
    assert seen == ["web"] * 20 + ["refined"] * 20
    assert set(web) == {"refinedweb", "redpajama", "dolma"}
    assert set(refined) == {"pile_books", "poems", "synthetic"}
    # Realised token proportions follow each phase's weights to within one mixing block.
    block = max(8 * cfg.data.seq_len, 1024)
    for stats, mixture in ((web, "data_mixtures/quickstart_phase1.yaml"),
                           (refined, "data_mixtures/quickstart_phase2.yaml")):
        from elmjax.data.mixture import load

        weights = {s.name: s.weight for s in load(os.path.join(REPO, mixture))}
        packed = {k: v["tokens_packed"] for k, v in stats.items()}
        total = sum(packed.values())
        for name, w in weights.items():
            assert abs(packed[name] / total - w) <= 1.5 * block / total, (name, packed, total)
    # Phase 2's quality filter dropped the worksheets with wrong answers (score < 0.9).
    assert refined["synthetic"]["documents_filtered"].get("below_quality", 0) > 0


def test_phase_data_overrides_reach_the_pipeline():
    cfg = small_two_phase()
    refined = curriculum_phases(cfg)[1]
    from elmjax.data.curriculum import phase_config

    pc = phase_config(cfg, refined)
    assert pc.data.min_chars == 400 and pc.data.min_quality == 0.9
    assert pc.data.mixture.endswith("quickstart_phase2.yaml")
    assert cfg.data.min_chars == 200  # the run's own config is untouched


def test_resumed_data_position_is_identical_before_at_and_after_the_boundary():
    cfg = small_two_phase(steps=12, start=0.5)
    straight = TrainData(cfg)
    batches, states = [], {}
    for step in range(12):
        states[step] = straight.get_state()  # the position before `step` runs
        batches.append(straight.next_batch(step))
    straight.close()
    for k in (5, 6, 7):  # before, exactly at, and after the switch at step 6
        resumed = TrainData(cfg)
        resumed.set_state(states[k])
        for step in range(k, 12):
            got = resumed.next_batch(step)
            for key in got:
                np.testing.assert_array_equal(got[key], batches[step][key], err_msg=f"k={k} {key}")
        resumed.close()


@pytest.mark.parametrize("mutate,needle", [
    (lambda c: setattr(c.curriculum.refined, "fraction", 0.4), "cover"),
    (lambda c: setattr(c.curriculum.refined, "mixture", "data_mixtures/nope.yaml"), "nope.yaml"),
    (lambda c: setattr(c.curriculum, "phases", "web,refined,extra"), "curriculum.extra"),
    (lambda c: c.curriculum.refined.data.__setattr__("min_lenght", 3), "min_lenght"),
    (lambda c: setattr(c.curriculum.refined, "lr_schedule", "warp"), "lr_schedule"),
])
def test_bad_curricula_fail_at_start_up(mutate, needle):
    cfg = quickstart_two_phase.get_config()
    mutate(cfg)
    with pytest.raises(C.ConfigError, match=needle):
        C.validate(cfg)


def test_learning_rate_decays_across_phase_two_and_is_continuous():
    cfg = small_two_phase(steps=40, start=0.5)
    o = cfg.optim
    lr = opt_lib.run_schedule(cfg)
    floor = o.peak_lr * o.min_lr_ratio
    assert float(lr(o.warmup_steps + 1)) == pytest.approx(o.peak_lr)
    assert float(lr(19)) == pytest.approx(o.peak_lr)  # flat (stable) to the end of phase 1
    assert float(lr(20)) == pytest.approx(o.peak_lr)  # continuous at the boundary
    assert float(lr(30)) == pytest.approx(o.peak_lr + (floor - o.peak_lr) * 0.5, rel=1e-5)
    assert float(lr(40)) == pytest.approx(floor, rel=1e-5)


def test_single_phase_config_has_one_unnamed_phase():
    cfg = config_module(os.path.join(REPO, "experiments", "quickstart.py")).get_config()
    (span,) = curriculum_phases(cfg)
    assert (span.start, span.end, span.mixture) == (0, cfg.train.steps, cfg.data.mixture)
    assert math.isclose(float(opt_lib.run_schedule(cfg)(100)),
                        float(opt_lib.learning_rate_schedule(cfg.optim, cfg.train.steps)(100)))
