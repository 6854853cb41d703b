"""A shipped child: the same folder from every path, programs that need no raynas, clear errors."""

import json
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
import torch

from raynas.cli import main
from raynas.data import to_model_input
from raynas.deploy import export_top_k, load_shipped, ship_child, ship_retrained, top_calibrated
from raynas.errors import ConfigError
from raynas.results import ResultStore
from raynas.results.report import write_run_metadata
from raynas.space import load_space
from raynas.supernet import build_supernet, load_child, read_child_record
from raynas.train import DataInfo, TrainConfig, load_checkpoint
from raynas.train.checkpoint import write_checkpoint
from raynas.train.loop import FixedChild
from tests.supernet.test_export import randomise_bn

# digits' own normalisation, so the CLI can calibrate on the embedded dataset
DIGITS = DataInfo("digits", num_classes=10, in_channels=1, image_size=8, mean=(0.30542442202568054,),
                  std=(0.37581443786621094,), hflip=False)


@pytest.fixture(scope="module")
def space():
    return load_space("tiny")


@pytest.fixture(scope="module")
def net(space):
    supernet = build_supernet(space, num_classes=10, in_channels=1, seed=1)
    randomise_bn(supernet, seed=2)
    return supernet.eval()


@pytest.fixture(scope="module")
def shipped(net, space, tmp_path_factory):
    arch = space.sample(5)
    out = ship_child(net.export(arch), space, arch, tmp_path_factory.mktemp("ship") / "child", DIGITS, "private",
                     {"accuracy": 0.9, "split": "val", "train_seconds": 1.5})
    return out, arch


def raynas_logits(net, arch, images: torch.Tensor) -> torch.Tensor:
    """The raynas path: uint8 images -> to_model_input -> the child."""
    with torch.no_grad():
        return net.export(arch)(to_model_input(images, DIGITS.mean, DIGITS.std, arch["resolution"]))


def uint8_images(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_programs_run_without_raynas_and_match_it(net, shipped, tmp_path):
    folder, arch = shipped
    res = arch["resolution"]
    batches = {"small": uint8_images(4, 1, 8, 8), "native": uint8_images(2, 1, res, res, seed=1),
               "odd": uint8_images(3, 1, 21, 13, seed=2)}
    torch.save({k: v.float() / 255 for k, v in batches.items()}, tmp_path / "images.pt")
    script = textwrap.dedent(f"""
        import sys
        sys.modules["raynas"] = None  # any import of raynas now fails
        import torch
        images = torch.load({str(tmp_path / "images.pt")!r})
        extra = {{"arch.json": ""}}
        ts = torch.jit.load({str(folder / "model.ts")!r}, _extra_files=extra)
        pt2 = torch.export.load({str(folder / "model.pt2")!r}).module()
        with torch.no_grad():
            out = {{k: (ts(x), pt2(x)) for k, x in images.items()}}
        saved = {{"logits": out, "record": extra["arch.json"], "resolution": ts.resolution}}
        torch.save(saved, {str(tmp_path / "out.pt")!r})
    """)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, timeout=120)
    saved = torch.load(tmp_path / "out.pt")
    assert json.loads(saved["record"]) == json.loads((folder / "arch.json").read_text())
    assert saved["resolution"] == res
    logits = saved["logits"]
    for name, images in batches.items():
        expected = raynas_logits(net, arch, images)
        for program in logits[name]:
            assert program.shape == (len(images), 10)
            torch.testing.assert_close(program, expected, rtol=1e-5, atol=1e-6, msg=name)


def test_load_shipped_takes_images_in_0_1_and_keeps_the_record(net, shipped):
    folder, arch = shipped
    module, record = load_shipped(folder)
    images = uint8_images(5, 1, 8, 8, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(module(images.float() / 255), raynas_logits(net, arch, images), rtol=1e-5, atol=1e-6)
    assert record.metrics == {"accuracy": 0.9, "split": "val", "train_seconds": 1.5}
    assert record.preprocessing.mean == DIGITS.mean and record.arch == net.space.key(arch)
    with pytest.raises(ValueError, match=r"images must be shaped \(N, 1, H, W\), got \[2, 3, 8, 8\]"):
        module(torch.zeros(2, 3, 8, 8))


def test_a_shipped_folder_names_its_data_but_carries_no_host_path(net, space, tmp_path):
    arch = space.sample(6)
    located = DataInfo(f"imagefolder:{tmp_path}/private/cifar-jpeg", 10, 1, 8, DIGITS.mean, DIGITS.std)
    out = ship_child(net.export(arch), space, arch, tmp_path / "child", located, "private", {"accuracy": 0.5})
    assert read_child_record(out).model.data.spec == "imagefolder:cifar-jpeg"
    for file in out.iterdir():  # arch.json, metrics.json, weights, and the programs that embed arch.json
        assert str(tmp_path).encode() not in file.read_bytes(), f"{file.name} carries a path of this host"
    assert load_child(out)[1] == arch


def test_child_weights_that_would_run_code_are_refused_in_one_line(shipped, tmp_path):
    from tests.train.test_checkpoint_safety import Payload

    folder, _ = shipped
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    for file in folder.iterdir():
        (tampered / file.name).write_bytes(file.read_bytes())
    marker = tmp_path / "ran"
    torch.save({"stem.conv.weight": Payload(marker)}, tampered / "weights.pt")
    with pytest.raises(ConfigError) as refused:
        load_child(tampered)
    message = str(refused.value)
    assert "weights.pt was refused: it asks to load io.open" in message and len(message.splitlines()) == 1
    assert "weights_only=False" not in message and not marker.exists()  # nothing ran, no dangerous advice
    (tampered / "weights.pt").write_bytes(b"not a torch file")
    with pytest.raises(ConfigError, match=r"weights.pt is not a readable child's weights file \(truncated or corrupt\)"):
        load_child(tampered)


def retrain_checkpoint(run_dir, net, space, arch, epochs=2):
    """What `raynas retrain` leaves: FixedChild weights (keys prefixed `child.`) and meta with fixed_arch."""
    model = FixedChild(net.export(arch))
    history = [{"epoch": e + 1, "val_accuracy": 0.5 + e / 10, "epoch_seconds": 2.0} for e in range(epochs)]
    meta = {"format": "raynas-checkpoint/1", "run_name": run_dir.name, "epoch": epochs, "space": space.definition,
            "space_name": space.name, "config": TrainConfig(mode="full").to_dict(), "data": DIGITS.to_dict(),
            "fixed_arch": arch.to_dict(), "metrics": history}
    return write_checkpoint(run_dir / f"checkpoint_epoch_{epochs:04d}", {"model": model.state_dict()}, meta)


def test_retrained_checkpoint_ships_and_exports(net, space, tmp_path, capsys):
    arch = space.sample(8)
    run = tmp_path / "retrain"
    checkpoint = retrain_checkpoint(run, net, space, arch)
    # a retrain run folder without model/ (as older versions left it) exports from its latest checkpoint
    assert main(["export", str(run), "--out", str(tmp_path / "exported")]) == 0
    assert "exported" in capsys.readouterr().out
    out = ship_retrained(checkpoint, run / "model")
    child, loaded, _ = load_child(out)
    x = torch.randn(2, 1, arch["resolution"], arch["resolution"])
    with torch.no_grad():
        assert loaded == arch and torch.equal(child(x), net(x, arch))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(0.6) and metrics["split"] == "val" and metrics["epochs"] == 2
    assert metrics["train_seconds"] == pytest.approx(4.0)
    assert read_child_record(tmp_path / "exported").metrics == metrics
    # now the run folder stands for its shipped child, which is written again
    assert main(["export", str(run), "--out", str(tmp_path / "again")]) == 0
    assert read_child_record(tmp_path / "again") == read_child_record(out)


def test_version_1_folder_is_upgraded_by_export(net, space, tmp_path, capsys):
    arch = space.sample(9)
    folder = tmp_path / "v1"
    folder.mkdir()
    torch.save(net.export(arch).state_dict(), folder / "weights.pt")
    (folder / "arch.json").write_text(json.dumps({
        "format": "raynas-child/1", "space": space.definition, "space_name": space.name, "arch": space.key(arch),
        "dims": arch.to_dict(), "resolution": arch["resolution"], "num_classes": 10, "in_channels": 1,
        "bn_layout": "private"}))
    (folder / "metrics.json").write_text(json.dumps({"arch": space.key(arch), "mean": list(DIGITS.mean),
                                                     "std": list(DIGITS.std), "accuracy": 0.7}))
    assert main(["export", str(folder), "--out", str(tmp_path / "v3")]) == 2  # no data description
    assert "records no data description" in capsys.readouterr().err
    assert main(["export", str(folder), "--data", "digits", "--out", str(tmp_path / "v3")]) == 0
    module, record = load_shipped(tmp_path / "v3")
    assert record.format == "raynas-child/3" and record.metrics == {"arch": space.key(arch), "accuracy": 0.7}
    assert record.model.data.spec == "digits" and record.model.data.mean == DIGITS.mean
    images = uint8_images(2, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(module(images.float() / 255), raynas_logits(net, arch, images))
    with pytest.raises(ConfigError, match="records no preprocessing"):
        load_shipped(folder)


@pytest.fixture(scope="module")
def search_run(net, space, tmp_path_factory):
    """A supernet checkpoint on digits and a run folder with calibrated rows of it."""
    root = tmp_path_factory.mktemp("search")
    meta = {"format": "raynas-checkpoint/1", "run_name": "sn", "epoch": 1, "space": space.definition,
            "space_name": space.name, "config": TrainConfig(seed=1).to_dict(), "data": DIGITS.to_dict(),
            "metrics": []}
    checkpoint = write_checkpoint(root / "sn" / "checkpoint_epoch_0001", {"model": net.state_dict()}, meta)
    checkpoint_id = load_checkpoint(checkpoint).checkpoint_id
    archs = [space.sample(i) for i in range(4)]
    rows = [{"run_id": "r", "trial": i, "arch": a, "status": "ok", "evaluator": "calibrate", "accuracy": acc,
             "split": "val", "checkpoint_id": checkpoint_id}
            for i, (a, acc) in enumerate(zip(archs, [0.5, 0.8, 0.6, 0.7]))]
    rows.append({"run_id": "r", "trial": 0, "arch": archs[0], "status": "ok", "evaluator": "bn_score", "bn_score": 9.0})
    ResultStore(root / "run" / "results", space).write_batch(rows)
    write_run_metadata(root / "run", space, checkpoint=str(checkpoint))
    return checkpoint, root / "run", [space.key(archs[i]) for i in (1, 3, 2, 0)]


def test_top_k_exports_the_most_accurate_calibrated_children(search_run, tmp_path, capsys):
    checkpoint, run, ranked = search_run
    assert top_calibrated(run, load_space("tiny"), 10, load_checkpoint(checkpoint).checkpoint_id) == ranked
    assert main(["export", "--top-k", "2", "--from", str(run), "--calib-images", "64", "--out", str(tmp_path)]) == 0
    folders = sorted(p for p in tmp_path.iterdir() if p.is_dir())
    assert [p.name[:3] for p in folders] == ["01_", "02_"]
    assert [read_child_record(p).arch for p in folders] == ranked[:2]
    for folder in folders:
        metrics = read_child_record(folder).metrics
        assert metrics["calib_images"] == 64 and metrics["split"] == "val" and 0 <= metrics["accuracy"] <= 1
        assert load_child(folder)[0] is not None
    printed = capsys.readouterr().out
    assert "exported 2 of the top 2" in printed and "[raynas] exported 1/2 (" in printed  # progress with rate and ETA


def test_export_one_arch_of_a_supernet_checkpoint(search_run, tmp_path):
    checkpoint, _, ranked = search_run
    out = tmp_path / "one"
    assert main(["export", str(checkpoint), "--arch", ranked[0], "--calib-images", "64", "--out", str(out)]) == 0
    record = read_child_record(tmp_path / "one")
    assert record.arch == ranked[0] and record.metrics["checkpoint_id"] == load_checkpoint(checkpoint).checkpoint_id
    assert {"accuracy", "top5", "loss", "calib_images"} <= record.metrics.keys()
    assert (tmp_path / "one" / "model.ts").is_file() and (tmp_path / "one" / "model.pt2").is_file()


def test_bad_export_input_is_a_clear_error(search_run, tmp_path, capsys):
    checkpoint, run, _ = search_run
    cases = [
        (["export", str(tmp_path / "nowhere"), "--out", str(tmp_path)], "export source .*nowhere does not exist"),
        (["export", str(tmp_path), "--out", str(tmp_path / "o")], "must be a child folder .*it is none of these"),
        (["export", str(checkpoint), "--arch", "r99-bogus", "--out", str(tmp_path)], "r99-bogus"),
        (["export", str(checkpoint), "--out", str(tmp_path)], "is a supernet checkpoint: choose its child with --arch"),
        (["export", str(checkpoint), "--top-k", "0", "--from", str(run), "--out", str(tmp_path)],
         "top-k must be >= 1, got 0"),
        (["export", str(checkpoint), "--top-k", "2", "--out", str(tmp_path)], "--top-k and --from go together"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("raynas export: error: ") and len(err.strip().splitlines()) == 1, err
        assert pd.Series([err]).str.contains(message).all(), (message, err)


def test_results_without_calibrated_rows_are_refused(search_run, space, tmp_path):
    checkpoint, _, _ = search_run
    loaded = load_checkpoint(checkpoint)
    ResultStore(tmp_path / "results", space).write_batch(
        [{"run_id": "r", "trial": 0, "arch": space.max(), "status": "ok", "evaluator": "bn_score", "bn_score": 1.0}])
    rule = r"must have calibrated rows .*got none among 1 rows; evaluators found: \['bn_score'\]"
    with pytest.raises(ConfigError, match=rule):
        export_top_k(loaded, tmp_path, 3, tmp_path / "out")
    with pytest.raises(ConfigError, match="results .*nothing does not exist"):
        top_calibrated(tmp_path / "nothing", space, 1, loaded.checkpoint_id)
    with pytest.raises(ConfigError, match=r"calibrated rows must come from checkpoint 'other'"):
        top_calibrated(search_run[1], space, 1, "other")
