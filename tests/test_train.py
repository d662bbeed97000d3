"""Trainer: real short runs on MSRS train128 with a tiny model, resume, kill, DDP, NaN, bad input."""

from __future__ import annotations

import csv
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from refinefuse.checkpoint import UnfinishedRunWarning, load_model, read_checkpoint
from refinefuse.cli import main
from refinefuse.config import TrainConfig, default_config_path, load_config, parse_overrides
from refinefuse.errors import InputError
from refinefuse.losses import FusionLoss
from refinefuse.training import EpochSampler, TrainingDiverged, build_config, lr_factor, train

SRC = Path(__file__).resolve().parents[1] / "src"
TINY = {"channels": [4, 4, 8, 8]}


def _config(data_dir: Path, out: Path, **kw) -> TrainConfig:
    base = dict(
        data=str(data_dir / "msrs" / "train128"),
        out=str(out),
        max_pairs=14,
        val_pairs=2,
        crop=32,
        batch_size=4,
        epochs=2,
        model_overrides=dict(TINY),
        optimizer="adam",
        lr=1e-2,
        workers=0,
        tensorboard=False,
        progress=False,
        val_metrics=[],
        threads=2,
    )
    base.update(kw)
    return TrainConfig.from_dict(base)


def _log(out: Path) -> list[dict]:
    with (out / "log.csv").open() as fh:
        return list(csv.DictReader(fh))


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    return env


def _cli_args(data_dir: Path, out: Path, epochs: int, *extra: str) -> list[str]:
    return [
        "train", "--data", str(data_dir / "msrs" / "train128"), "--out", str(out), "--epochs", str(epochs),
        "--batch-size", "4", "--crop", "32", "--max-pairs", "14", "--val-pairs", "2", "--optimizer", "adam",
        "--lr", "1e-2", "--no-progress", "--set", "model_overrides={channels: [4, 4, 8, 8]}",
        "--set", "val_metrics=[]", "--set", "threads=1", *extra,
    ]  # fmt: skip


# ----------------------------------------------------------------------------- config
def test_packaged_config_has_paper_defaults():
    cfg = load_config(default_config_path())
    assert (cfg.optimizer, cfg.lr, cfg.batch_size, cfg.epochs, cfg.crop, cfg.lam) == ("sgd", 1e-3, 8, 300, 256, 5.0)
    assert cfg.momentum == 0.9 and cfg.scheduler == "cosine"
    defaults = TrainConfig()
    assert (defaults.optimizer, defaults.lr, defaults.batch_size, defaults.epochs, defaults.crop) == (
        "sgd",
        1e-3,
        8,
        300,
        256,
    )


def test_overrides_are_parsed_and_checked():
    values = parse_overrides(["lr=1e-4", "model_overrides={channels: [8, 8, 16, 16]}", "max_pairs=5"])
    cfg = TrainConfig.from_dict(values)
    assert cfg.lr == 1e-4 and cfg.model_overrides == {"channels": [8, 8, 16, 16]} and cfg.max_pairs == 5
    with pytest.raises(InputError, match="unknown training setting 'lrate'"):
        TrainConfig.from_dict({"lrate": 1})
    with pytest.raises(InputError, match="'epochs' expects int"):
        TrainConfig.from_dict({"epochs": "many"})
    with pytest.raises(InputError, match="expected key=value"):
        parse_overrides(["lr"])


def test_lr_schedule_warmup_then_cosine():
    cfg = TrainConfig(epochs=11, warmup_epochs=1, lr=1e-3, min_lr=1e-5)
    factors = [lr_factor(e, cfg) for e in range(11)]
    assert factors[0] == pytest.approx(0.1) and factors[1] == pytest.approx(1.0)
    assert all(a > b for a, b in zip(factors[1:], factors[2:]))
    assert lr_factor(100, cfg) == pytest.approx(0.01)  # floor min_lr / lr


def test_epoch_sampler_is_deterministic_and_partitions():
    a, b = EpochSampler(10, seed=3), EpochSampler(10, seed=3)
    a.set_epoch(2), b.set_epoch(2)
    assert list(a) == list(b)
    b.set_epoch(3)
    assert [i for i, _ in a] != [i for i, _ in b]
    ranks = [EpochSampler(10, seed=3, rank=r, world_size=2) for r in (0, 1)]
    got = sorted(i for s in ranks for i, _ in s)
    assert got == list(range(10))


# ----------------------------------------------------------------------------- real runs
def test_short_run_lowers_loss_and_writes_loadable_checkpoints(data_dir, tmp_path):
    out = tmp_path / "run"
    best = train(_config(data_dir, out, epochs=4, val_every=3, tensorboard=True, val_metrics=["Qabf", "SCD"]))
    assert best == out / "best.pt"
    rows = _log(out)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    losses = [float(r["train_loss"]) for r in rows]
    assert losses[-1] < losses[0], losses
    assert all(float(r["pairs_per_s"]) > 0 for r in rows)
    for name in ("last.pt", "best.pt", "config.yaml", "val/epoch_0004.png"):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in (out / "val").iterdir()) == ["epoch_0003.png", "epoch_0004.png"]  # val_every=3 + last
    assert [bool(r["val_loss"]) for r in rows] == [False, False, True, True] and rows[-1]["val_Qabf"]
    assert sorted(p.name for p in out.glob("epoch_*.pt")) == ["epoch_0003.pt", "epoch_0004.pt"]  # keep_last=2
    assert any((out / "tb").iterdir())
    state = read_checkpoint(out / "last.pt")
    assert state["epoch"] == 4 and state["train_config"]["epochs"] == 4
    assert {"optimizer", "scheduler", "rng"} <= set(state)
    # a metric that cannot run on the crop (VIF needs 41x41) is skipped, not fatal
    train(_config(data_dir, tmp_path / "vif", epochs=1, val_metrics=["VIF"]))
    assert _log(tmp_path / "vif")[0]["val_loss"] and not _log(tmp_path / "vif")[0]["val_VIF"]
    model = load_model(out / "best.pt")
    fused = model(torch.rand(1, 1, 40, 56), torch.rand(1, 1, 40, 56))
    assert fused.shape == (1, 1, 40, 56) and 0 <= fused.min() and fused.max() <= 1


def test_resume_repeats_an_uninterrupted_run(data_dir, tmp_path):
    straight = tmp_path / "straight"
    train(_config(data_dir, straight, epochs=2, optimizer="sgd", lr=0.05))
    split = tmp_path / "split"
    train(_config(data_dir, split, epochs=1, optimizer="sgd", lr=0.05, workers=1))
    with pytest.raises(InputError, match="pass --resume"):
        train(_config(data_dir, split, epochs=2, optimizer="sgd", lr=0.05))
    # the schedule of the resumed run follows its config (epochs=2), like the straight run's
    resumed = build_config(overrides={"out": str(split), "epochs": 2}, resume=True)
    assert resumed.optimizer == "sgd" and resumed.max_pairs == 14  # settings come from last.pt
    train(resumed)
    a, b = read_checkpoint(straight / "last.pt"), read_checkpoint(split / "last.pt")
    assert a["epoch"] == b["epoch"] == 2
    for key in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][key], b["state_dict"][key], rtol=1e-4, atol=1e-6)
    assert [r["epoch"] for r in _log(split)] == ["1", "2"]


def test_checkpoints_are_independent_and_a_damaged_last_names_an_intact_one(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    train(_config(data_dir, out, epochs=2))
    names = ["last.pt", "best.pt", "epoch_0001.pt", "epoch_0002.pt"]
    stats = [(out / n).stat() for n in names]
    assert len({st.st_ino for st in stats}) == 4 and all(st.st_nlink == 1 for st in stats)  # copies, not links
    last = out / "last.pt"
    with last.open("r+b") as fh:
        fh.truncate(stats[0].st_size // 2)
    for name in names[1:]:
        load_model(out / name)  # untouched by the damage to last.pt
    assert read_checkpoint(out / "epoch_0002.pt")["epoch"] == 2
    best_epoch = read_checkpoint(out / "best.pt")["epoch"]

    def resume_error() -> str:
        with pytest.raises(InputError) as caught:
            build_config(overrides={"out": str(out), "epochs": 3}, resume=True)
        message = str(caught.value)
        assert "\n" not in message and message.startswith(f"{last}: ")  # then read_checkpoint's reason
        return message

    hint = f"{out / 'epoch_0002.pt'} is intact: copy it to last.pt to resume from epoch 2"
    assert resume_error().endswith(hint)
    with pytest.raises(InputError, match="epoch_0002.pt is intact"):  # train() itself (no build_config)
        train(_config(data_dir, out, epochs=3, resume=True))
    capsys.readouterr()
    assert main(_cli_args(data_dir, out, 3, "--resume")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("refinefuse: error:") and hint in err
    # the newest epoch file damaged too: the next intact one (best.pt when it is newer)
    (out / "epoch_0002.pt").write_bytes(b"garbage")
    newest = ("best.pt", best_epoch) if best_epoch == 2 else ("epoch_0001.pt", 1)
    assert resume_error().endswith(f"{out / newest[0]} is intact: copy it to last.pt to resume from epoch {newest[1]}")
    (out / "epoch_0001.pt").write_bytes(b"")
    assert resume_error().endswith(f"{out / 'best.pt'} is intact: copy it to last.pt to resume from epoch {best_epoch}")
    # following the advice resumes the run
    import shutil

    shutil.copyfile(out / "best.pt", last)
    train(build_config(overrides={"out": str(out), "epochs": 3}, resume=True))
    assert read_checkpoint(last)["epoch"] == 3 and load_model(out / "epoch_0003.pt")
    # nothing intact at all
    lost = tmp_path / "lost"
    lost.mkdir()
    (lost / "last.pt").write_bytes(b"garbage")
    (lost / "best.pt").write_bytes(b"")
    with pytest.raises(
        InputError, match=r"lost/last.pt: .*; no intact epoch_\*.pt or best.pt in .*lost to resume from$"
    ):
        build_config(overrides={"out": str(lost)}, resume=True)


def test_bad_pair_fails_before_the_run_folder_is_made(tmp_path, capsys):
    import numpy as np

    from refinefuse.io import write_image

    rng = np.random.default_rng(0)
    data = tmp_path / "d"
    for i in range(6):
        write_image(data / "ir" / f"{i}.png", rng.integers(0, 256, (32, 32), dtype=np.uint8))
        size = (32, 24, 3) if i == 4 else (32, 32, 3)  # pair 4: vis 24 wide, ir 32
        write_image(data / "vi" / f"{i}.png", rng.integers(0, 256, size, dtype=np.uint8))
    out = tmp_path / "runs" / "x"
    message = f"{data / 'vi' / '4.png'}: size 24x32 differs from its infrared image {data / 'ir' / '4.png'} (32x32)"
    with pytest.raises(InputError) as caught:
        train(
            TrainConfig.from_dict(
                dict(
                    data=str(data),
                    out=str(out),
                    epochs=1,
                    crop=32,
                    val_pairs=0,
                    workers=0,
                    model_overrides=dict(TINY),
                    tensorboard=False,
                    progress=False,
                )
            )
        )
    assert str(caught.value) == message
    assert not (tmp_path / "runs").exists()
    args = ["train", "--data", str(data), "--out", str(out), "--epochs", "1", "--crop", "32", "--val-pairs", "0"]
    assert main([*args, "--workers", "1", "--no-progress", "--set", "model_overrides={channels: [4, 4, 8, 8]}"]) == 2
    assert capsys.readouterr().err == f"refinefuse: error: {message}\n"
    assert not (tmp_path / "runs").exists()


def test_init_starts_a_new_run_from_a_checkpoint(data_dir, tmp_path):
    first = tmp_path / "first"
    train(_config(data_dir, first, epochs=1))
    # a near-zero learning rate keeps the copied weights: the second run starts from them
    second = tmp_path / "second"
    train(_config(data_dir, second, epochs=1, lr=1e-12, loss="B", init=str(first / "last.pt")))
    a, b = read_checkpoint(first / "last.pt"), read_checkpoint(second / "last.pt")
    assert b["epoch"] == 1 and b["train_config"]["init"] == str(first / "last.pt")
    for key in a["state_dict"]:
        torch.testing.assert_close(b["state_dict"][key], a["state_dict"][key], rtol=1e-5, atol=1e-7)
    fresh = tmp_path / "fresh"
    train(_config(data_dir, fresh, epochs=1, lr=1e-12))
    assert any(
        not torch.allclose(read_checkpoint(fresh / "last.pt")["state_dict"][k], a["state_dict"][k])
        for k in a["state_dict"]
    )
    with pytest.raises(InputError, match="last.pt: weights do not fit model 'refinefuse'"):  # init: weights must fit
        train(
            _config(
                data_dir, tmp_path / "other", model_overrides={"channels": [4, 4, 8, 16]}, init=str(first / "last.pt")
            )
        )
    with pytest.raises(InputError, match="no such checkpoint"):
        train(_config(data_dir, tmp_path / "missing", init=str(tmp_path / "nope.pt")))


def test_weight_average_is_checkpointed_validated_and_resumed(data_dir, tmp_path):
    # 12 training pairs at batch 4: 3 steps an epoch
    straight = tmp_path / "straight"
    train(_config(data_dir, straight, epochs=2, ema_decay=0.9))
    state = read_checkpoint(straight / "last.pt")
    assert state["ema_n_averaged"] == 6
    average, raw = state["state_dict"], state["train_state_dict"]
    assert average.keys() == raw.keys()
    assert any(not torch.allclose(average[k], raw[k]) for k in raw)  # the average lags the raw weights
    # validation scores the average, which is what load_model gives
    model = load_model(straight / "last.pt")
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, average[key])
    # a resumed run continues both the raw weights and the average
    split = tmp_path / "split"
    train(_config(data_dir, split, epochs=1, ema_decay=0.9))
    assert read_checkpoint(split / "last.pt")["ema_n_averaged"] == 3
    train(build_config(overrides={"out": str(split), "epochs": 2}, resume=True))
    resumed = read_checkpoint(split / "last.pt")
    assert resumed["ema_n_averaged"] == 6
    for name in ("state_dict", "train_state_dict"):
        for key in raw:
            torch.testing.assert_close(resumed[name][key], state[name][key], rtol=1e-4, atol=1e-6)
    assert float(_log(split)[-1]["val_loss"]) == pytest.approx(float(_log(straight)[-1]["val_loss"]), rel=1e-4)
    # a near-zero decay follows the raw weights; the same run without an average stores those alone
    follow = tmp_path / "follow"
    train(_config(data_dir, follow, epochs=1, ema_decay=1e-9))
    state = read_checkpoint(follow / "last.pt")
    for key in state["state_dict"]:
        torch.testing.assert_close(state["state_dict"][key], state["train_state_dict"][key])
    plain = tmp_path / "plain"
    train(_config(data_dir, plain, epochs=1))
    state_plain = read_checkpoint(plain / "last.pt")
    assert "train_state_dict" not in state_plain and "ema_n_averaged" not in state_plain
    for key in state_plain["state_dict"]:
        torch.testing.assert_close(state_plain["state_dict"][key], state["train_state_dict"][key])


def test_kill_during_training_then_resume(data_dir, tmp_path):
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "refinefuse", *_cli_args(data_dir, out, 40, "--max-pairs", "40", "--workers", "1")]
    proc = subprocess.Popen(args, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while not (out / "last.pt").exists():
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "no checkpoint within 90 s"
            time.sleep(0.05)
        time.sleep(0.5)  # somewhere inside a later epoch
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = read_checkpoint(out / "last.pt")["epoch"]
    assert 1 <= done < 40
    with pytest.warns(UnfinishedRunWarning, match=f"epoch {done} of 40"):
        load_model(out / "last.pt")  # never corrupted, and said to be from an unfinished run
    short = _cli_args(data_dir, out, done + 2, "--max-pairs", "40", "--workers", "1", "--resume")
    result = subprocess.run([sys.executable, "-m", "refinefuse", *short], env=_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert read_checkpoint(out / "last.pt")["epoch"] == done + 2
    assert [int(r["epoch"]) for r in _log(out)] == list(range(1, done + 3))
    load_model(out / "best.pt")


class _Killed(Exception):
    """Stands in for SIGKILL at one exact point of an epoch's end."""


@pytest.mark.parametrize("stop_in", ["log", "best.pt", "last.pt", "epoch_0003.pt"])
def test_stop_between_epoch_end_writes_loses_nothing(data_dir, tmp_path, monkeypatch, stop_in):
    # an epoch ends with several writes (log.csv row, best.pt, last.pt, epoch_XXXX.pt); wherever a
    # kill lands between them, the resumed run's log.csv holds every epoch once (CI once saw
    # [1, 2, 4, 5] after a SIGKILL), best.pt is the epoch of the lowest validation loss, and the
    # newest keep_last epoch files exist
    from refinefuse.training import loop, run_folder
    from refinefuse.training.run_folder import RunLog

    out = tmp_path / "run"
    if stop_in == "log":
        target, real = (RunLog, "log"), RunLog.log
    elif stop_in == "epoch_0003.pt":
        target, real = (run_folder, "atomic_copy"), run_folder.atomic_copy
    else:
        target, real = (loop, "_save"), loop._save

    def killed_at_epoch_3_or_best(*args, **kwargs):
        written = args[1]["epoch"] == 3 if stop_in == "log" else Path(args[-1]).name == stop_in
        if written and (stop_in != "best.pt" or args[1] >= 1):  # best.pt: its first write after epoch 1
            raise _Killed
        return real(*args, **kwargs)

    monkeypatch.setattr(*target, killed_at_epoch_3_or_best)
    with pytest.raises(_Killed):
        train(_config(data_dir, out, epochs=4, max_pairs=6, lr=3e-3))
    monkeypatch.setattr(*target, real)
    train(_config(data_dir, out, epochs=4, max_pairs=6, lr=3e-3, resume=True))
    rows = _log(out)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert read_checkpoint(out / "last.pt")["epoch"] == 4
    val = [float(r["val_loss"]) for r in rows]
    assert read_checkpoint(out / "best.pt")["epoch"] == val.index(min(val)) + 1
    assert sorted(p.name for p in out.glob("epoch_*.pt")) == ["epoch_0003.pt", "epoch_0004.pt"]


def test_loader_workers_survive_opencv_threads_in_the_parent(data_dir, tmp_path):
    # OpenCV's thread pool, once started, deadlocks forked loader workers unless the trainer stops it
    code = (
        "import sys, cv2, numpy as np; from refinefuse.cli import main; "
        "cv2.morphologyEx(np.random.rand(2000, 2000).astype(np.float32), cv2.MORPH_OPEN, np.ones((5, 5), np.uint8)); "
        "sys.exit(main(sys.argv[1:]))"
    )
    args = _cli_args(data_dir, tmp_path / "cv", 1, "--max-pairs", "10", "--workers", "2")
    env = dict(_env(), OMP_NUM_THREADS="2")
    result = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr[-2000:]
    assert read_checkpoint(tmp_path / "cv" / "last.pt")["epoch"] == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_cpu_processes_match_one_process(data_dir, tmp_path):
    # no augmentation, whole 128x128 images, 4 training pairs: one process with batch 4 and
    # two gloo processes with batch 2 each take the same SGD steps
    common = ["--crop", "128", "--max-pairs", "6", "--set", "augment=false", "--optimizer", "sgd", "--lr", "0.05"]
    ddp_out, single_out = tmp_path / "ddp", tmp_path / "single"
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(_free_port()),
    ]
    ddp = subprocess.run(
        [*torchrun, "-m", "refinefuse",
         *_cli_args(data_dir, ddp_out, 2, *common, "--batch-size", "2", "--workers", "0")],
        env=_env(), capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert main(_cli_args(data_dir, single_out, 2, *common, "--batch-size", "4", "--workers", "0")) == 0
    a, b = read_checkpoint(ddp_out / "last.pt"), read_checkpoint(single_out / "last.pt")
    assert a["meta"]["world_size"] == 2 and b["meta"]["world_size"] == 1
    for key in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][key], b["state_dict"][key], rtol=1e-4, atol=1e-5)
    assert float(_log(ddp_out)[-1]["train_loss"]) == pytest.approx(float(_log(single_out)[-1]["train_loss"]), rel=1e-4)
    load_model(ddp_out / "best.pt")


def test_nan_loss_stops_and_keeps_last_good_checkpoint(data_dir, tmp_path, monkeypatch):
    calls = {"n": 0}
    real_forward = FusionLoss.forward

    def poisoned(self, fused, ir, vis, salient=None):
        total, terms = real_forward(self, fused, ir, vis, salient)
        calls["n"] += torch.is_grad_enabled()
        if calls["n"] > 3:  # epoch 1 has 3 training steps (12 pairs, batch 4)
            total = total * float("nan")
        return total, terms

    monkeypatch.setattr(FusionLoss, "forward", poisoned)
    out = tmp_path / "nan"
    with pytest.raises(TrainingDiverged, match="non-finite loss at epoch 2, step 1"):
        train(_config(data_dir, out, epochs=3))
    state = read_checkpoint(out / "last.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values())
    load_model(out / "best.pt")


def test_cli_config_file_and_flag_precedence(data_dir, tmp_path):
    out = tmp_path / "from-yaml"
    (tmp_path / "run.yaml").write_text(
        f"data: {data_dir / 'msrs' / 'train128'}\nout: {out}\nepochs: 5\nmax_pairs: 8\nval_pairs: 0\n"
        "crop: 32\nbatch_size: 4\nworkers: 0\ntensorboard: false\nprogress: false\nloss: B\n"
        "model_overrides: {channels: [4, 4, 8, 8]}\n"
    )
    assert main(["train", "--config", str(tmp_path / "run.yaml"), "--epochs", "1"]) == 0  # flag beats file
    state = read_checkpoint(out / "last.pt")
    assert state["epoch"] == 1 and state["train_config"]["loss"] == "B" and state["meta"]["loss_setting"] == "B"
    assert state["model"]["config"]["channels"] == [4, 4, 8, 8]


# ----------------------------------------------------------------------------- bad input via the CLI
def test_cli_bad_input_is_one_line(data_dir, tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("refinefuse: error:") and "no such dataset folder" in err and "\n" not in err
    assert main(["train", "--out", str(tmp_path / "o")]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path), "--set", "nonsense=1"]) == 2
    assert "unknown training setting 'nonsense'" in capsys.readouterr().err


def test_bad_mask_in_worker_gives_one_line_error(tmp_path, capsys):
    import numpy as np

    from refinefuse.io import write_image

    rng = np.random.default_rng(0)
    for i in range(6):
        write_image(tmp_path / "d" / "ir" / f"{i}.png", rng.integers(0, 256, (32, 32), dtype=np.uint8))
        write_image(tmp_path / "d" / "vi" / f"{i}.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
        size = (16, 16) if i == 3 else (32, 32)
        write_image(tmp_path / "d" / "masks" / f"{i}.png", np.zeros(size, np.uint8))
    args = ["train", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "o"), "--epochs", "1", "--crop", "32"]
    args += ["--val-pairs", "0", "--workers", "1", "--no-progress", "--set", "model_overrides={channels: [4, 4, 8, 8]}"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("refinefuse: error:") and "3.png: mask is 16x16 but the image pair is 32x32" in err


def test_bfloat16_autocast_step_runs_on_cpu_and_lowers_the_loss(data_dir, tmp_path):
    """amp_dtype bfloat16 autocasts on the CPU too (1.6x faster training here, docs/training.md)."""
    import refinefuse.training.loop as tr

    seen = []
    real = torch.autocast

    def spy(device_type, *args, **kwargs):
        seen.append((device_type, kwargs.get("dtype"), kwargs.get("enabled")))
        return real(device_type, *args, **kwargs)

    tr.torch.autocast = spy
    try:
        train(
            _config(
                data_dir,
                tmp_path / "bf16",
                epochs=4,
                lr=2e-3,
                warmup_epochs=0,
                augment=False,
                amp=True,
                amp_dtype="bfloat16",
                device="cpu",
                val_pairs=0,
            )
        )
    finally:
        tr.torch.autocast = real
    assert seen and all(s == ("cpu", torch.bfloat16, True) for s in seen)
    losses = [float(r["train_loss"]) for r in _log(tmp_path / "bf16")]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]


def test_rescale_and_flat_patch_augmentations(data_dir):
    from refinefuse.data import PairedFusionDataset

    ds = PairedFusionDataset(data_dir / "msrs" / "train128", crop=64, rescale=(2, 4), flat_patch=1.0, max_pairs=4)
    item = ds[(0, 123)]
    assert item["ir"].shape == (1, 64, 64)
    again = ds[(0, 123)]
    assert torch.equal(item["vis"], again["vis"])  # deterministic per seed
    flat = (item["ir"] == item["vis"]) & ((item["ir"] == 0) | (item["ir"] == 1))
    assert flat.float().mean() > 0.05 and float(item["mask"][flat].max()) == 0.0
    with pytest.raises(InputError, match="rescale"):
        PairedFusionDataset(data_dir / "msrs" / "train128", rescale=(0, 2))


def test_train_restores_threads_opencv_and_random_state(data_dir, tmp_path):
    """The runtime sets threads and seeds for the run and puts back the caller's afterwards."""
    import random

    import cv2
    import numpy as np

    cv2_before = cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(3)
    torch.manual_seed(1234)
    np.random.seed(1234)
    random.seed(1234)
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(1234)
    np.random.seed(1234)
    random.seed(1234)
    train(_config(data_dir, tmp_path / "run", epochs=1, threads=2, max_pairs=6))
    try:
        assert torch.get_num_threads() == 1 and cv2.getNumThreads() == 3
        got = (torch.rand(3), np.random.rand(3), random.random())
        assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1]) and got[2] == expected[2]
    finally:
        torch.set_num_threads(2)
        cv2.setNumThreads(cv2_before)


def test_every_extra_loss_term_has_a_weight_in_the_config_and_the_loss():
    """``losses.EXTRA_TERMS`` is the one list of terms beyond the paper's: each has ``<name>_weight`` in
    ``TrainConfig`` (off at 0) and in ``fusion_loss``, and is reported and logged under its name."""
    import dataclasses
    import inspect

    from refinefuse.config import TrainConfig
    from refinefuse.losses import EXTRA_TERMS, fusion_loss
    from refinefuse.training.run_folder import LOSS_TERMS

    fields = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    params = inspect.signature(fusion_loss).parameters
    for name in EXTRA_TERMS:
        assert fields[f"{name}_weight"] == 0.0 and f"{name}_weight" in params, name
    assert LOSS_TERMS == ("loss", "int", "tex", *EXTRA_TERMS)


def test_log_records_the_extra_loss_terms_only_when_they_are_on(data_dir, tmp_path):
    """``flat_weight``/``scd_weight``/``halo_weight``/``max_int_weight``/``vif_weight``/``qabf_weight`` > 0
    add ``train_/val_flat``, ``_scd``, ``_halo``, ``_max_int``, ``_vif`` and ``_qabf`` columns, and the total
    is the paper's loss plus the weighted extra terms."""
    paper = tmp_path / "paper"
    train(_config(data_dir, paper, epochs=1))
    assert not {"train_scd", "train_flat", "train_halo", "train_max_int", "train_vif", "train_qabf"} & set(
        _log(paper)[0]
    )

    extra = tmp_path / "extra"
    weights = dict(
        flat_weight=2.0, scd_weight=0.1, halo_weight=10.0, max_int_weight=0.5, vif_weight=0.2, qabf_weight=0.3
    )
    train(_config(data_dir, extra, epochs=1, crop=48, **weights))
    row = _log(extra)[0]
    terms = ("flat", "scd", "halo", "max_int", "vif", "qabf")
    for key in [f"{split}_{term}" for split in ("train", "val") for term in terms]:
        assert math.isfinite(float(row[key])), key
    assert 0.0 < float(row["train_scd"]) < 4.0 and 0.0 <= float(row["val_halo"]) < 1.0
    assert 0.0 < float(row["train_qabf"]) < 1.0
    val_total = float(row["val_int"]) + 5.0 * float(row["val_tex"]) + 2.0 * float(row["val_flat"])
    val_total += 0.1 * float(row["val_scd"]) + 10.0 * float(row["val_halo"]) + 0.5 * float(row["val_max_int"])
    val_total += 0.2 * float(row["val_vif"]) + 0.3 * float(row["val_qabf"])
    assert float(row["val_loss"]) == pytest.approx(val_total, rel=1e-5)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"epochs": 0}, "epochs must be at least 1, got 0"),
        ({"loss": "D"}, "loss must be one of full, A, B, C, got 'D'"),
        ({"vif_weight": 0.5, "crop": 32}, "vif_weight needs crops of 41 px or more, got 32"),
        ({"ema_decay": 1.0}, "ema_decay must be in [0, 1), got 1.0"),
    ],
)
def test_unusable_settings_are_one_line_errors(data_dir, tmp_path, setting, message):
    with pytest.raises(InputError, match=re.escape(message)):
        train(_config(data_dir, tmp_path / "run", **setting))
    assert not (tmp_path / "run" / "last.pt").exists()
