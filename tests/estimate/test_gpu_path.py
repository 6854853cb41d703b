"""The GPU path: without a GPU every CUDA request is one clear ``ConfigError``, the GPU check
script runs end to end on the CPU (as the GPU machine runs it: without Ray), and on a GPU
machine CUDA results agree with CPU ones.

This module imports neither Ray nor the CLI, so the GPU machine, which has no Ray, runs it with
``python3 -m pytest --noconftest tests/estimate/test_gpu_path.py`` (``benchmarks/gpu_check.sh``).
"""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from raynas.data import load_data
from raynas.errors import ConfigError
from raynas.estimate import BNIndicator, score_direct
from raynas.estimate.calibration import CalibrationConfig, calibrate_and_evaluate, calibrate_bn, evaluate
from raynas.estimate.latency import (
    cache_path,
    device_key,
    measure_children_ms,
    measure_latency_table,
    resolve_device,
)
from raynas.space import load_space
from raynas.supernet import BATCHNORMS, build_supernet

ROOT = Path(__file__).resolve().parents[2]
QUICK = {"repeats": 2, "warmup": 0, "rounds": 1}
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a machine without a GPU")
GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
MISSING_GPU = r"device 'cuda' was asked for, but torch\.cuda\.is_available\(\) is False"
WITHOUT_RAY = """
import importlib.abc, runpy, sys

class NotInstalled(importlib.abc.MetaPathFinder):  # the GPU machine has neither
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] in ("ray", "optuna"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, NotInstalled())
sys.argv[0] = "gpu_check"
runpy.run_module("benchmarks.gpu_check", run_name="__main__")
"""


@pytest.fixture(scope="module")
def setup():
    space = load_space("tiny")
    data = load_data("synthetic")
    return space, build_supernet(space, data.num_classes, data.channels, seed=0), data


def bn_state(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in net.state_dict().items() if "running" in k}


# --- no GPU: one clear error for every entry point -----------------------------------------------
def cuda_requests(space, net, data):
    config = CalibrationConfig(images=8, batch_size=8)
    child = net.export(space.min())
    return {
        "latency table": lambda: measure_latency_table(space, "cuda", **QUICK),
        "latency table bf16": lambda: measure_latency_table(space, "cuda", amp="bf16", channels_last=True, **QUICK),
        "children": lambda: measure_children_ms([child], [12], "cuda", **QUICK),
        "device key": lambda: device_key("cuda"),
        "cache path": lambda: cache_path(space, "cuda"),
        "calibrate_bn": lambda: calibrate_bn(net, space.min(), data.calib.images, data.mean, data.std, 8, "cuda"),
        "evaluate": lambda: evaluate(net, space.min(), data.val, data.mean, data.std, 8, device="cuda"),
        "calibrate_and_evaluate": lambda: calibrate_and_evaluate(
            net, space.min(), data.calib, data.val, data.mean, data.std, config, device="cuda"),
    }


@NO_GPU
@pytest.mark.parametrize("entry", ["latency table", "latency table bf16", "children", "device key", "cache path",
                                   "calibrate_bn", "evaluate", "calibrate_and_evaluate"])
def test_cuda_without_a_gpu_is_one_clear_error(setup, entry):
    space, net, data = setup
    with pytest.raises(ConfigError, match=MISSING_GPU) as err:
        cuda_requests(space, net, data)[entry]()
    assert "\n" not in str(err.value)
    assert next(net.parameters()).device.type == "cpu"  # refused before anything moved


@pytest.mark.parametrize("device", ["tpu", "mps", "cuda:x"])
def test_a_device_that_is_not_cpu_or_cuda_is_refused(device):
    with pytest.raises(ConfigError, match=f"device must be 'cpu' or 'cuda\\[:index\\]', got '{device}'"):
        resolve_device(device)


def test_calibration_on_an_explicit_cpu_equals_where_the_supernet_is(setup):
    space, net, data = setup
    config = CalibrationConfig(images=16, batch_size=8)
    here = calibrate_and_evaluate(net, space.max(), data.calib, data.val, data.mean, data.std, config)
    stats = bn_state(net)
    explicit = calibrate_and_evaluate(net, space.max(), data.calib, data.val, data.mean, data.std, config, "cpu")
    assert {k: here[k] for k in ("accuracy", "loss")} == {k: explicit[k] for k in ("accuracy", "loss")}
    assert all(torch.equal(stats[k], v) for k, v in bn_state(net).items())


# --- the GPU check script ----------------------------------------------------------------------------
def test_gpu_check_quick_runs_on_cpu_without_ray_and_writes_its_json(tmp_path):
    args = ["--device", "cpu", "--quick", "--space", "tiny", "--threads", "1", "--out", str(tmp_path)]
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    run = subprocess.run([sys.executable, "-c", WITHOUT_RAY, *args], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((tmp_path / "gpu_check_cpu_quick.json").read_text())
    assert {"device", "quick", "space", "torch", "sizes", "seconds", "machine"} <= set(result)
    assert (result["device"], result["quick"], result["space"]) == ("cpu", True, "tiny")
    assert set(result["seconds"]) == {"train", "bn_score", "calibration", "latency"}
    train = result["train"]
    assert {(r["mode"], r["amp"], r["channels_last"]) for r in train} == {
        (mode, amp, cl) for mode in ("bn_only", "full") for amp in ("off", "bf16") for cl in (False, True)}
    assert all(r["images_per_s"] > 0 and r["step_ms"] > 0 for r in train)
    assert all(r["trainable_params"] < f["trainable_params"] for r, f in zip(train[::2], train[1::2]))
    assert result["bn_score"]["archs_per_s"] > 0 and result["bn_score"]["direct_max_abs_diff"] < 1e-12
    assert result["calibration"]["children_per_s"] > 0 and result["calibration"]["calib_images_per_s"] > 0
    keys = [row["device_key"] for row in result["latency"]]
    assert keys[1] == keys[0] + "-bf16-cl" and all(row["entries"] > 0 for row in result["latency"])
    assert "train: tiny on cpu" in run.stdout and "images_per_s" in run.stdout


# --- on a GPU: CUDA agrees with the CPU ---------------------------------------------------------------
@GPU
@pytest.mark.parametrize(("amp", "channels_last"), [("off", False), ("bf16", True)])
def test_cuda_latency_table_has_the_cpu_tables_keys(amp, channels_last):
    space = load_space("tiny")
    cpu = measure_latency_table(space, "cpu", **QUICK)
    gpu = measure_latency_table(space, "cuda", amp=amp, channels_last=channels_last, **QUICK)
    assert set(gpu.entries) == set(cpu.entries) and all(ms > 0 for ms in gpu.entries.values())
    assert gpu.device_key.startswith("cuda-") and gpu.meta["clock"] == "cuda_events"
    assert gpu.device_key.endswith("-bf16-cl") == (amp == "bf16")


@GPU
def test_cuda_device_index_out_of_range_is_refused():
    with pytest.raises(ConfigError, match="GPU\\(s\\)"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


@GPU
def test_calibration_on_cuda_matches_cpu(setup):
    """Host-memory images are moved batch by batch; TF32 off, so only summation order differs."""
    space, net, data = setup
    config = CalibrationConfig(images=30, batch_size=8)
    results, stats = [], []
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        for device in ("cpu", "cuda"):
            model = copy.deepcopy(net)
            results.append(calibrate_and_evaluate(model, space.max(), data.calib, data.val, data.mean, data.std,
                                                  config, device))
            assert next(model.parameters()).device.type == device
            stats.append(bn_state(model))
    for key in stats[0]:
        torch.testing.assert_close(stats[1][key], stats[0][key], rtol=1e-4, atol=1e-5)
    assert results[1]["loss"] == pytest.approx(results[0]["loss"], rel=1e-4)
    assert abs(results[1]["accuracy"] - results[0]["accuracy"]) <= 1 / len(data.val)


@GPU
def test_bn_indicator_fits_a_cuda_supernet_like_a_cpu_one(setup):
    space, net, _ = setup
    gpu_net = copy.deepcopy(net).cuda()
    for bn in (m for m in gpu_net.modules() if isinstance(m, BATCHNORMS)):
        torch.nn.init.uniform_(bn.weight, 0.5, 1.5)  # gammas that differ per channel
    matrix = space.sample_index_matrix(64, seed=0)
    on_gpu = BNIndicator().fit(gpu_net).score(matrix)
    on_cpu = BNIndicator().fit(copy.deepcopy(gpu_net).cpu()).score(matrix)
    assert on_gpu.tolist() == on_cpu.tolist()
    assert score_direct(gpu_net, space.max()) == pytest.approx(BNIndicator().fit(gpu_net).score([space.max()])[0])
