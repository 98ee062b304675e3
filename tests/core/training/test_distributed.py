"""Two CPU workers with gloo on localhost (torch.multiprocessing spawn), a few updates each."""

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from conftest import _ephemeral_range, free_ports
from conftest import tiny_config as shared_tiny_config
from napari_colorrl.core.config import ColorRLConfig
from napari_colorrl.core.data.files import Sample
from napari_colorrl.core.data.synthetic import make_cells_2d
from napari_colorrl.core.model.checkpoint import load_checkpoint
from napari_colorrl.core.training import distributed

WORLD = 2
BATCH = 2
UPDATES = 3


def tiny_config(**train) -> ColorRLConfig:
    return shared_tiny_config(min_size=2, network={"features": [4, 8, 16]}, train={
        "batch_size": BATCH, "episodes": UPDATES * BATCH * WORLD, **train})


def samples(n: int = 4) -> list[Sample]:
    out = []
    for i in range(n):
        image, labels = make_cells_2d(shape=(40, 40), n_objects=5, seed=i)
        out.append(Sample(name=f"s{i}", image=image, labels=labels))
    return out


def _join(rank: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank))


def _train_checked(config: ColorRLConfig, out: Path, resume: Path | None) -> dict:
    """Run ``train`` as this rank; after every update compare the weights of all ranks."""
    from napari_colorrl.core.training import trainer

    original = trainer.run_update
    record: dict = {"max_diff": [], "local_reward": [], "wrapped": []}

    def run_update_checked(model, *args, **kwargs):
        stats = original(model, *args, **kwargs)
        flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        everyone = [torch.empty_like(flat) for _ in range(WORLD)]
        dist.all_gather(everyone, flat)
        record["max_diff"].append(max(float((w - everyone[0]).abs().max()) for w in everyone))
        record["local_reward"].append(stats.reward)
        record["wrapped"].append(isinstance(model, distributed.DistributedNet))
        return stats

    trainer.run_update = run_update_checked
    try:
        reports = list(trainer.train(config, samples(), samples(1), out=out, resume=resume))
    finally:
        trainer.run_update = original
    record["updates"] = [r.update for r in reports]
    record["episodes"] = [r.episodes for r in reports]
    record["reward"] = [r.reward for r in reports]
    record["validated"] = [r.validation is not None for r in reports]
    record["group_left"] = not dist.is_initialized()
    return record


def _gradient_check() -> float:
    """Encode once + T forwards through DistributedNet, one backward: DDP's gradients must be
    the mean over ranks of the gradients of the same computation on a plain copy."""
    from napari_colorrl.core.model.networks import build_network

    config = tiny_config()
    torch.manual_seed(0)
    net = build_network(config)
    plain = build_network(config)
    plain.load_state_dict(net.state_dict())
    wrapped = distributed.DistributedNet(net, torch.device("cpu"))
    torch.manual_seed(100 + dist.get_rank())  # a different episode on each rank
    image = torch.rand(2, 1, 32, 32)
    steps = [torch.randint(-1, 2, (2, config.steps, 32, 32)).float() for _ in range(3)]

    def loss_of(model):
        cache = model.encode_image(image)
        total = 0.0
        for s in steps:
            logits, value = model(image, s, image_features=cache)
            total = total + logits.square().mean() + value.mean()
        return total

    loss_of(wrapped).backward()
    loss_of(plain).backward()
    worst = 0.0
    for p_ddp, p_plain in zip(net.parameters(), plain.parameters(), strict=True):
        mean = p_plain.grad.clone()
        dist.all_reduce(mean)
        mean /= WORLD
        worst = max(worst, float((p_ddp.grad - mean).abs().max()))
    return worst


def _train_nan_on_rank1(config: ColorRLConfig, out: Path) -> str | None:
    """Train with the loss of update 2 NaN on rank 1 only; the error every rank ends with.

    Rank 1 used to skip its backward pass, so rank 0 waited forever in DDP's gradient
    all-reduce. SIGALRM ends a hung worker, so a regression fails instead of hanging."""
    import signal

    from napari_colorrl.core.training import rollout, trainer

    run_update, masked_mean, updates = trainer.run_update, rollout.masked_mean, []

    def counting(*args, **kwargs):
        updates.append(1)
        return run_update(*args, **kwargs)

    def poisoned(values, mask):
        mean = masked_mean(values, mask)
        return mean * float("nan") if dist.get_rank() == 1 and len(updates) == 2 else mean

    trainer.run_update, rollout.masked_mean = counting, poisoned
    signal.alarm(120)
    try:
        for _ in trainer.train(config, samples(), out=out):
            pass
    except trainer.TrainingError as error:
        return str(error)
    finally:
        signal.alarm(0)
        trainer.run_update, rollout.masked_mean = run_update, masked_mean
    return None


def _setup_fails_on_rank1(config: ColorRLConfig, folder: Path) -> str | None:
    """Rank 1 resumes from a file that is not there; the error every rank ends with.

    Rank 0 used to go on into DDP's first broadcast and wait there until the process group's
    timeout (30 minutes). SIGALRM ends a hung worker, so a regression fails instead of hanging."""
    import signal

    from napari_colorrl.core.training import trainer

    resume = folder / ("missing.pt" if os.environ["RANK"] == "1" else "dist.pt")
    signal.alarm(60)
    try:
        for _ in trainer.train(config, samples(), out=folder / "setup.pt", resume=resume):
            pass
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    finally:
        signal.alarm(0)
    return None


def _worker(rank: int, ports: list[int], folder: str) -> None:
    torch.set_num_threads(1)
    folder = Path(folder)
    out = folder / "dist.pt"
    result = {}
    _join(rank, ports[0])
    result["first"] = _train_checked(tiny_config(), out, None)
    _join(rank, ports[1])  # a distributed run resumed from the distributed checkpoint
    more = tiny_config(episodes=(UPDATES + 1) * BATCH * WORLD)
    result["resumed"] = _train_checked(more, folder / "dist_resumed.pt", out)
    _join(rank, ports[2])  # a time budget: every rank stops after the same update
    timed = tiny_config(minutes=0.005, val_every=1000, checkpoint_every=1000)
    result["timed"] = _train_checked(timed, folder / "timed.pt", None)
    _join(rank, ports[3])
    nan = tiny_config(checkpoint_every=1, val_every=1000)
    result["nan_error"] = _train_nan_on_rank1(nan, folder / "nan.pt")
    _join(rank, ports[4])
    result["setup_error"] = _setup_fails_on_rank1(tiny_config(), folder)
    _join(rank, ports[5])
    dist.init_process_group("gloo")
    try:
        result["gradient_diff"] = _gradient_check()
    finally:
        distributed.teardown(distributed.DistributedContext(world_size=WORLD, owns_group=True))
    (folder / f"rank{rank}.json").write_text(json.dumps(result))


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    folder = tmp_path_factory.mktemp("distributed")
    ports = free_ports(6)
    mp.spawn(_worker, args=(ports, str(folder)), nprocs=WORLD, join=True)
    results = [json.loads((folder / f"rank{r}.json").read_text()) for r in range(WORLD)]
    return folder, results


def test_ranks_hold_identical_weights_after_every_update(two_workers):
    _, results = two_workers
    for result in results:
        for run in ("first", "resumed", "timed"):
            assert all(result[run]["wrapped"])
            assert result[run]["max_diff"] == [0.0] * len(result[run]["max_diff"])
            assert result[run]["group_left"]
    timed = [r["timed"] for r in results]
    assert timed[0]["updates"] == timed[1]["updates"] and len(timed[0]["updates"]) >= 1
    first = [r["first"] for r in results]
    assert first[0]["updates"] == first[1]["updates"] == [1, 2, 3]
    assert first[0]["episodes"] == [4, 8, 12]  # totals over both workers
    # own episodes per worker, reports averaged over the workers
    assert first[0]["local_reward"] != first[1]["local_reward"]
    assert first[0]["reward"] == pytest.approx(first[1]["reward"])
    mean = [(a + b) / 2 for a, b in zip(first[0]["local_reward"], first[1]["local_reward"],
                                        strict=True)]
    assert first[0]["reward"] == pytest.approx(mean)
    assert all(first[0]["validated"]) and not any(first[1]["validated"])  # rank 0 validates


def test_ddp_gradients_are_the_mean_over_ranks(two_workers):
    _, results = two_workers
    assert all(r["gradient_diff"] < 1e-6 for r in results)


def test_nan_on_one_rank_stops_every_rank(two_workers):
    folder, results = two_workers
    for result in results:
        assert result["nan_error"] and "loss became nan at update 2" in result["nan_error"]
    good = load_checkpoint(folder / "nan.pt")  # written by rank 0 after update 1
    assert good.step == 1
    assert all(torch.isfinite(v).all() for v in good.model_state.values()
               if v.is_floating_point())


def test_a_setup_failure_on_one_rank_stops_every_rank_at_once(two_workers):
    folder, results = two_workers
    assert "missing.pt" in results[1]["setup_error"]  # rank 1: its own message
    assert results[0]["setup_error"].startswith("WorkerFailed: Worker(s) 1 of the torchrun job")
    assert not (folder / "setup.pt").exists()


def test_rank0_checkpoint_loads_and_resumes(two_workers, tmp_path):
    from napari_colorrl.core.model.networks import build_network
    from napari_colorrl.core.training.trainer import train

    folder, results = two_workers
    ckpt = load_checkpoint(folder / "dist.pt")
    assert ckpt.step == UPDATES and ckpt.episodes == UPDATES * BATCH * WORLD
    assert not any(key.startswith("module.") or key.startswith("ddp.") for key in ckpt.model_state)
    build_network(ckpt.config).load_state_dict(ckpt.model_state)  # strict: same keys as plain
    assert results[0]["resumed"]["updates"] == [UPDATES + 1]
    assert load_checkpoint(folder / "dist_resumed.pt").step == UPDATES + 1

    # a single process continues the two-process run: budget counted in episodes
    config = tiny_config(episodes=UPDATES * BATCH * WORLD + 2 * BATCH)
    reports = list(train(config, samples(), out=tmp_path / "single.pt", resume=folder / "dist.pt"))
    assert [r.update for r in reports] == [UPDATES + 1, UPDATES + 2]
    assert reports[-1].episodes == UPDATES * BATCH * WORLD + 2 * BATCH
    resumed = load_checkpoint(tmp_path / "single.pt")
    assert resumed.step == UPDATES + 2 and set(resumed.model_state) == set(ckpt.model_state)


def test_no_torchrun_variables_change_nothing(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    context, device = distributed.setup("cpu")
    assert not context.enabled and context.is_main and device == torch.device("cpu")
    assert not dist.is_initialized()
    net = torch.nn.Linear(2, 2)
    assert distributed.wrap(net, context, device) is net
    assert distributed.shard([1, 2, 3], context) == [1, 2, 3]
    assert distributed.describe(4, 1e-4) is None


def test_free_ports_are_outside_the_ephemeral_range():
    """The CI failure: a pre-picked ephemeral port was taken by a connection before its use."""
    low, high = _ephemeral_range()
    ports = free_ports(20)
    assert len(set(ports)) == 20
    assert all(not low <= port <= high for port in ports)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[0]))


def test_shard_and_description(monkeypatch):
    context = distributed.DistributedContext(rank=1, world_size=3)
    assert distributed.shard(list(range(7)), context) == [1, 4]
    assert distributed.shard([0, 1], context) == [0, 1]  # fewer samples than workers: all
    monkeypatch.setenv("WORLD_SIZE", "8")
    line = distributed.describe(4, 3e-4, "cpu")
    assert "8 processes" in line and "effective batch 32" in line and "lr 0.0003" in line


def test_cli_train_under_torchrun(tmp_path):
    """``colorrl train`` itself under torchrun: 2 processes, rank 0 alone prints and writes."""
    import subprocess
    import sys

    import napari_colorrl
    from napari_colorrl.core.data.writing import write_labels, write_tiff

    for sub in ("images", "masks"):
        (tmp_path / "data" / "train" / sub).mkdir(parents=True)
    for sample in samples(2):
        write_tiff(tmp_path / "data" / "train" / "images" / f"{sample.name}.tif", sample.image)
        write_labels(tmp_path / "data" / "train" / "masks" / f"{sample.name}.tif", sample.labels)
    config = tmp_path / "config.json"
    config.write_text(tiny_config().to_json())
    src = str(Path(napari_colorrl.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
               "--nproc-per-node", "2", "--rdzv-backend", "c10d",
               "--rdzv-endpoint", f"127.0.0.1:{free_ports(1)[0]}",
               "-m", "napari_colorrl", "train", "--data", str(tmp_path / "data"),
               "--config", str(config), "--episodes", "4", "--batch-size", "1", "--steps", "3",
               "--out", str(tmp_path / "run.pt"), "--log-file", str(tmp_path / "run.jsonl")]
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert done.stdout.count("checkpoint written to") == 1  # rank 0 only
    assert "Distributed: 2 processes (gloo on CPU) x 1 environments" in done.stdout
    assert "effective batch 2" in done.stdout
    rows = [json.loads(line) for line in (tmp_path / "run.jsonl").read_text().splitlines()]
    assert [row["episodes"] for row in rows] == [2, 4]
    assert load_checkpoint(tmp_path / "run.pt").episodes == 4
