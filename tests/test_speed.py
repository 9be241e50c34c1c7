"""tools/speed.py's pure parts (speed_report.py, profile_train.op_groups): ratios, side-by-side rows, the
conv-rate share, the markdown; and the FLOP count and training configs its cases use."""
from __future__ import annotations

from types import SimpleNamespace

import torch

from mgsrgan.models.generator import Generator
from tools import profile_train, speed, speed_report


def our_cases() -> dict:
    return {
        "matmul": {"case": "matmul", "seconds": 0.7, "fp32": {"gflops_peak": 200.0},
                   "bf16": {"gflops_peak": 400.0}},
        "infer_x4_fp32": {"case": "infer_x4_fp32", "seconds": 2.0, "conv_gflops": 100.0, "dtype": "float32",
                          "output_mp_per_s": 0.5},
        "infer_x4_auto": {"case": "infer_x4_auto", "seconds": 1.0, "conv_gflops": 260.0, "dtype": "bfloat16",
                          "output_mp_per_s": 1.0},
        "pixel_x4_fp32": {"case": "pixel_x4_fp32", "seconds": 2.0, "foreign_cpu_frac": 0.2, "hr_patch": 128,
                          "batch": 16, "pixel": "mse", "samples_per_s": 8.0},
        "pixel_x4_bf16": {"case": "pixel_x4_bf16", "seconds": 1.25, "hr_patch": 128, "batch": 16, "pixel": "mse",
                          "samples_per_s": 12.8},
        "srgan_x4_bf16": {"case": "srgan_x4_bf16", "seconds": 5.0, "d_update_s": 2.0, "g_update_s": 3.0,
                          "hr_patch": 128, "batch": 16, "content": "5_4", "adversarial": "standard"},
    }


def basicsr_results() -> dict:
    return {"results": {"infer_x4_lr256": {"median_s": 4.0}, "pixel_x4_hr128": {"median_s": 2.5},
                        "srgan_x4_hr128": {"median_s": 11.0, "contaminated": True},
                        "matmul_start": {"median_s": 0.7, "gflops_median": 196.0}}}


def test_speedup_is_basicsr_seconds_over_ours():
    assert speed_report.speedup(4.0, 2.0) == 2.0
    assert speed_report.speedup(2.0, 4.0) == 0.5
    assert speed_report.speedup(None, 2.0) is None and speed_report.speedup(4.0, None) is None


def test_compare_gives_both_ratios_and_checks_the_target_on_the_fast_precision():
    rows = {row["key"]: row for row in speed_report.compare(our_cases(), basicsr_results())}
    infer = rows["infer_x4"]
    assert (infer["ours_fp32_s"], infer["ours_fast_s"], infer["basicsr_s"]) == (2.0, 1.0, 4.0)
    assert infer["speedup_fp32"] == 2.0 and infer["speedup_fast"] == 4.0
    assert infer["target"] == 3.5 and infer["met"] is True and infer["busy"] == []
    pixel = rows["pixel_x4"]
    assert pixel["speedup_fast"] == 2.0 and pixel["met"] is False  # 2.0x < 2.5x
    assert pixel["busy"] == ["pixel_x4_fp32"]  # 20% foreign load during our fp32 case
    srgan = rows["srgan_x4"]
    assert srgan["ours_fp32_s"] is None and srgan["speedup_fp32"] is None
    assert srgan["speedup_fast"] == 11.0 / 5.0 and srgan["met"] is True
    assert srgan["busy"] == ["basicsr:srgan_x4_hr128"]


def test_without_basicsr_there_are_no_ratios():
    rows = speed_report.compare(our_cases(), None)
    assert all(row["basicsr_s"] is None and row["speedup_fast"] is None and row["met"] is None for row in rows)


def test_conv_rate_is_a_share_of_the_same_runs_matmul_peak():
    conv = speed_report.conv_vs_matmul(our_cases())
    assert conv["auto_fraction"] == 260.0 / 400.0 and conv["met"] is True  # 65% >= 60%
    assert conv["fp32_fraction"] == 100.0 / 200.0
    cases = our_cases()
    cases["infer_x4_auto"]["conv_gflops"] = 200.0
    assert speed_report.conv_vs_matmul(cases)["met"] is False
    assert speed_report.conv_vs_matmul({}) is None


def report(basicsr: dict | None) -> dict:
    cases = our_cases()
    return {"command": "python -m tools.speed --basicsr", "time": "2026-01-01T00:00:00Z",
            "git_commit": "0123456789abcdef", "settings": {"reps": 3, "warmup": 1, "threads": 2},
            "machine": {"cpu_model": "AMD EPYC 9R14", "cores": 2, "native_bf16": True, "torch": "2.13.0"},
            "cases": cases, "comparison": speed_report.compare(cases, basicsr),
            "conv_vs_matmul": speed_report.conv_vs_matmul(cases),
            "basicsr": basicsr}


def test_markdown_has_the_side_by_side_rows_and_the_verdicts():
    text = speed_report.markdown(report(basicsr_results()))
    assert "AMD EPYC 9R14 (2 cores" in text and "commit 0123456789" in text
    assert ("| what | ours fp32 (s) | ours bf16 (s) | BasicSR fp32 (s) | speed-up fp32 | speed-up bf16 | target |"
            in text)
    assert "| 2 | 1 | 4 | 2.00x | 4.00x | 3.5x: met |" in text
    assert "(busy: pixel_x4_fp32) | 2 | 1.25 | 2.5 | 1.25x | 2.00x | 2.5x: missed by 0.50x |" in text
    assert "| - | 5 | 11 | - | 2.20x | 2.0x: met |" in text
    assert "65% of this run's 4096^2 bf16 matmul peak (400 GFLOP/s); target 60%: met" in text
    assert "during pixel_x4_fp32, basicsr:srgan_x4_hr128" in text
    assert "| srgan_x4_bf16 | 5 | - | - | D 2.00 s + G 3.00 s" in text
    assert "| srgan_x4_hr128 | 11 |" in text  # BasicSR's own cases listed too


def test_markdown_without_basicsr_lists_our_cases_only():
    text = speed_report.markdown(report(None))
    assert "BasicSR fp32 (s)" not in text and "## BasicSR cases" not in text
    assert "| pixel_x4_bf16 | 1.25 | - | - | HR 128, batch 16, mse, 12.8 samples/s |" in text
    assert "| pixel_x4_fp32 | 2 | - | 20% |" in text


def test_op_groups_sum_self_time_per_group_without_counting_twice():
    events = [SimpleNamespace(key="aten::mkldnn_convolution", self_cpu_time_total=3e6),
              SimpleNamespace(key="aten::convolution_backward", self_cpu_time_total=5e6),
              SimpleNamespace(key="aten::_prelu_kernel", self_cpu_time_total=1e6),
              SimpleNamespace(key="aten::_foreach_addcdiv_", self_cpu_time_total=0.5e6),
              SimpleNamespace(key="aten::weird_op", self_cpu_time_total=0.25e6),
              SimpleNamespace(key="autograd::engine::evaluate_function: ConvolutionBackward0",
                              self_cpu_time_total=0.125e6)]
    assert profile_train.op_groups(events) == [("conv backward", 5.0), ("conv forward", 3.0),
                                       ("activations (PReLU, LeakyReLU, ReLU, sigmoid)", 1.0),
                                       ("optimizer (Adam, foreach)", 0.5), ("other", 0.25),
                                       ("autograd engine (the ops it calls are counted in their groups)", 0.125)]


def test_network_flops_count_the_9x9_tail_as_defined():
    generator = Generator(scale=2, num_blocks=1, channels=8).eval()
    lr_px, hr_px = 4 * 4, 8 * 8
    expected = 2 * (81 * 3 * 8 * lr_px + 2 * 9 * 8 * 8 * lr_px + 9 * 8 * 8 * lr_px  # head, block, body tail
                    + 9 * 8 * 32 * lr_px + 81 * 8 * 3 * hr_px)  # upsample conv, 9x9 tail on the HR grid
    assert speed.network_flops(generator, torch.rand(1, 3, 4, 4)) == expected


def test_training_cases_use_the_configs_own_losses_at_the_asked_precision():
    cfg = speed.train_config("config.yaml", "fp32", 128, 16)
    assert (cfg.runtime.amp, cfg.data.hr_patch, cfg.data.batch_size) == ("none", 128, 16)
    assert (cfg.loss.vgg_weights, cfg.loss.content_layer) == ("random", "5_4")  # same trunk and cost, no download
    scaled = speed.train_config("config_scaled.yaml", "bf16", None, 16)
    assert scaled.runtime.amp == "bf16" and scaled.data.hr_patch == 96 and scaled.loss.content_weight == 0


def test_pixel_steps_are_shares_of_the_peak_of_their_own_precision():
    cases = our_cases()
    cases["pixel_campaign_x2_bf16"] = {"case": "pixel_campaign_x2_bf16", "precision": "bf16", "seconds": 1.0,
                                       "conv_gflops": 250.0, "hr_patch": 96, "batch": 16, "pixel": "l1",
                                       "samples_per_s": 16.0}
    cases["pixel_campaign_x2_fp32"] = {**cases["pixel_campaign_x2_bf16"], "case": "pixel_campaign_x2_fp32",
                                       "precision": "fp32", "conv_gflops": 150.0}
    conv = speed_report.conv_vs_matmul(cases)
    assert conv["steps"]["pixel_campaign_x2_bf16"]["fraction"] == 250.0 / 400.0
    assert conv["steps"]["pixel_campaign_x2_fp32"]["fraction"] == 150.0 / 200.0
    assert "pixel_x4_bf16" not in conv["steps"]  # no FLOP count recorded: no share claimed
    text = speed_report.markdown({**report(None), "cases": cases, "conv_vs_matmul": conv})
    assert ("`pixel_campaign_x2_bf16` (the network's conv FLOPs x 3 for forward and backward): 250 GFLOP/s = 62% of "
            "this run's bf16 matmul peak (400 GFLOP/s); target 60%.") in text


def test_the_campaign_case_trains_the_campaign_stages_network():
    from mgsrgan.train.campaign import load_plan, stage_of

    stage = stage_of(load_plan(speed.ROOT / "configs" / "campaign.yaml"), "x2-pixel")
    cfg = speed.train_config(stage.config, "bf16", None, 16, tuple(a for a in stage.set if a.startswith("model.")))
    assert (cfg.model.num_blocks, cfg.model.channels) == (16, 64)
