"""Benchmark the service scaled out: shards over pool processes, a whole-service evaluation against a plain
loop, API throughput from one and several processes, and a job on a machine busy with other work.

Usage: python benchmarks/bench_shards.py [--parts pgd,shared,autoattack,api] [--redis-url URL]
       [--aa-samples 500] [--pgd-samples 2000 --pgd-steps 40 --pgd-batch 256] [--api-seconds 10]

Needs Postgres (GAUNTLET_TEST_POSTGRES_URL) and a Redis database nobody else uses (it is flushed).
  autoattack  AutoAttack standard on digits (linf eps 0.1) through the live service, split into two shards:
              one worker of one pool process, then one of two; seconds, speed-up, same report
  pgd         a ResNet-18 for 3x32x32 built here, exported to ONNX and uploaded like a user's, PGD (linf
              8/255, random start) on random images labelled by the model; upload-to-ready and
              submit-to-stored through the service against a plain PyTorch loop of the same passes
              (clean pass, steps, final pass) on the same model, before and after, in this process
  shared      the same PGD job and plain loop while a CPU-heavy process (torch matmuls on every core) runs
  api         16 concurrent loopback clients (wrk where installed, else httpx): job submissions/s and status
              reads/s with the API in 1 process and in as many processes as cores (no worker runs: jobs stay
              queued)
Prints one JSON document with the machine (cores, load average before and after) and every figure.
"""

import argparse
import copy
import io
import json
import math
import os
import platform
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import torch
from torch import nn
from torch.nn import functional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from api_load import hammer  # noqa: E402
from live_service import LiveService, run_job, upload_dataset, upload_model  # noqa: E402

from worker.engine.training.classifier import train_digits_model  # noqa: E402
from worker.runtime import usable_cores  # noqa: E402

EPS = 8 / 255
LOAD = "import torch\nwhile True:\n    torch.randn(512, 512) @ torch.randn(512, 512)\n"


class Block(nn.Module):
    """ResNet's basic block (He et al., 2016)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out)
        self.conv2, self.bn2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = functional.relu(self.bn1(self.conv1(x)))
        return functional.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def resnet18() -> nn.Module:
    """ResNet-18 for 3x32x32 inputs (the CIFAR variant: 3x3 stem, no max-pool), randomly initialised."""
    torch.manual_seed(0)
    blocks, channels = [], 64
    for c_out, stride in ((64, 1), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1)):
        blocks.append(Block(channels, c_out, stride))
        channels = c_out
    stem = [nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()]
    head = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 10)]
    return nn.Sequential(*stem, *blocks, *head).eval()


def onnx_bytes(model: nn.Module, shape: tuple[int, ...]) -> bytes:
    """The model exported like a user would (dynamic batch)."""
    buffer = io.BytesIO()
    torch.onnx.export(
        model, (torch.rand(1, *shape),), buffer, dynamo=False, input_names=["input"],
        output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )  # fmt: skip
    return buffer.getvalue()


def plain_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, batch: int) -> float:
    """Seconds of a plain PyTorch loop: clean pass, random start, steps of PGD, final pass."""
    started = time.perf_counter()
    alpha = 2.5 * EPS / steps
    generator = torch.Generator().manual_seed(0)
    for start in range(0, len(x), batch):
        x0, labels = x[start : start + batch], y[start : start + batch]
        with torch.no_grad():
            model(x0).argmax(1)
        x_adv = (x0 + EPS * (torch.rand(x0.shape, generator=generator) * 2 - 1)).clamp(0, 1)
        for _ in range(steps):
            x_adv.requires_grad_(True)
            (grad,) = torch.autograd.grad(
                functional.cross_entropy(model(x_adv), labels, reduction="sum"), x_adv
            )
            with torch.no_grad():
                x_adv = torch.min(torch.max(x_adv + alpha * grad.sign(), x0 - EPS), x0 + EPS).clamp(0, 1)
        with torch.no_grad():
            model(x_adv).argmax(1)
    return time.perf_counter() - started


def figures(report: dict[str, Any]) -> dict[str, Any]:
    """What a report measures, without seconds and the envelope."""
    keep = copy.deepcopy(
        {key: report[key] for key in ("n_samples", "clean_accuracy", "attacks", "worst_case")}
    )
    for attack in keep["attacks"]:
        for row in attack["results"]:
            row.pop("seconds", None)
    return keep


def pgd_setup(args: argparse.Namespace, client: httpx.Client) -> dict[str, Any]:
    """Build the ResNet-18 and its data, upload both like a user; the upload-to-ready seconds."""
    model = resnet18()
    x = torch.rand(args.pgd_samples, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = torch.cat([model(x[i : i + 64]).argmax(1) for i in range(0, len(x), 64)])
    started = time.perf_counter()
    model_id = upload_model(client, onnx_bytes(model, (3, 32, 32)), "resnet18", [3, 32, 32], 10)
    dataset_id = upload_dataset(client, "random-32", x=x.numpy(), y=y.numpy())
    upload_s = time.perf_counter() - started
    attack = {"name": "pgd", "norm": "linf", "eps": [EPS], "steps": args.pgd_steps}
    # No sanity runs: the plain loop makes only the evaluation's passes (the report's extra checks would
    # add an unbounded PGD on 100 samples and a doubled budget on 200).
    params = {"attacks": [attack], "max_samples": args.pgd_samples, "batch_size": args.pgd_batch,
              "sanity_runs": False}  # fmt: skip
    spec = {"kind": "evasion", "model_id": model_id, "dataset_id": dataset_id, "seed": 0, "params": params}
    return {"model": model, "x": x, "y": y, "spec": spec, "upload_to_ready_s": upload_s}


def pgd_versus_plain(args: argparse.Namespace, client: httpx.Client, setup: dict[str, Any]) -> dict[str, Any]:
    """The job through the service between two plain loops of the same passes."""
    torch.set_num_threads(usable_cores())  # what the one pool process of a one-process worker uses
    plain = [plain_pgd(setup["model"], setup["x"], setup["y"], args.pgd_steps, args.pgd_batch)]
    started = time.perf_counter()
    final, report = run_job(client, setup["spec"], timeout=args.timeout)
    job_s = time.perf_counter() - started
    plain.append(plain_pgd(setup["model"], setup["x"], setup["y"], args.pgd_steps, args.pgd_batch))
    floor = sum(plain) / len(plain)
    return {
        "samples": args.pgd_samples, "steps": args.pgd_steps, "batch_size": args.pgd_batch,
        "n_attacked": report["attacks"][0]["n_attacked"], "plain_s": plain, "submit_to_stored_s": job_s,
        "ratio_job": job_s / floor, "ratio_with_upload": (job_s + setup["upload_to_ready_s"]) / floor,
        "shards": len(final["shards"]),
    }  # fmt: skip


def timeline(view: dict[str, Any]) -> dict[str, Any]:
    """Where a split job's time went: queued, before its shards (claim, clean pass, split), each shard, and
    after the last shard (merge: metrics, sanity runs, store), in seconds."""
    at = {key: datetime.fromisoformat(view[key]) for key in ("created_at", "started_at", "finished_at")}
    shards = [
        (datetime.fromisoformat(s["started_at"]), datetime.fromisoformat(s["finished_at"]))
        for s in view["shards"]
        if s["started_at"] and s["finished_at"]
    ]
    out: dict[str, Any] = {"queued_s": (at["started_at"] - at["created_at"]).total_seconds()}
    if shards:
        out["before_shards_s"] = (min(start for start, _ in shards) - at["started_at"]).total_seconds()
        out["shard_s"] = [round((end - start).total_seconds(), 1) for start, end in shards]
        out["after_shards_s"] = (at["finished_at"] - max(end for _, end in shards)).total_seconds()
    return out


def part_autoattack(
    args: argparse.Namespace, service: LiveService, client: httpx.Client, model_id: str
) -> dict[str, Any]:
    """AutoAttack standard on digits, two shards: one pool process, then two."""
    n = args.aa_samples
    spec = {
        "kind": "evasion", "model_id": model_id, "dataset_id": "builtin:digits", "seed": 0,
        "params": {"attacks": [{"name": "autoattack", "eps": [0.1]}], "max_samples": n, "batch_size": 32},
        "sharding": {"samples_per_shard": math.ceil(n / 2)},
    }  # fmt: skip
    runs: dict[int, dict[str, Any]] = {}
    for processes in (1, 2):
        service.stop(*[name for name in service.processes if name.startswith("worker")])
        service.start_worker(f"worker-aa{processes}", "--concurrency", str(processes))
        started = time.perf_counter()
        final, report = run_job(client, spec, timeout=args.timeout)
        runs[processes] = {"seconds": time.perf_counter() - started, "report": figures(report),
                           "shards": len(final["shards"]), "robust": report["worst_case"],
                           "timeline": timeline(final)}  # fmt: skip
    return {
        "samples": n, "one_process_s": runs[1]["seconds"], "two_processes_s": runs[2]["seconds"],
        "speed_up": runs[1]["seconds"] / runs[2]["seconds"], "shards": runs[2]["shards"],
        "same_report": runs[1]["report"] == runs[2]["report"], "worst_case": runs[2]["robust"],
        "timeline_one_process": runs[1]["timeline"], "timeline_two_processes": runs[2]["timeline"],
    }  # fmt: skip


def part_api(args: argparse.Namespace, service: LiveService, headers: dict[str, str], model_id: str) -> dict:
    """Submissions/s and status reads/s from 16 clients, the API in 1 and in `cores` processes."""
    service.stop(*[name for name in service.processes if name.startswith("worker")])
    spec = {"kind": "evasion", "model_id": model_id, "dataset_id": "builtin:digits-test", "seed": 0,
            "params": {"attacks": [{"name": "fgsm", "eps": [0.1]}], "max_samples": 10}}  # fmt: skip
    out = {}
    for processes in sorted({1, usable_cores()}):
        url = service.start_api(processes)
        job_id = httpx.post(f"{url}/v1/jobs", headers=headers, json=spec).json()["id"]
        submitted = hammer(f"{url}/v1/jobs", headers, args.api_seconds, "POST", spec)
        reads = hammer(f"{url}/v1/jobs/{job_id}", headers, args.api_seconds)
        out[f"{processes}_process"] = {
            "submissions_per_s": submitted["per_s"], "submission_errors": submitted["failed"],
            "status_reads_per_s": reads["per_s"], "status_read_errors": reads["failed"],
            "load_generator": submitted["generator"],
        }  # fmt: skip
    service.start_api(1)
    return out


def main() -> None:
    """Run the chosen parts against one live service and print the figures as JSON."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--parts", default="pgd,shared,autoattack,api")
    parser.add_argument(
        "--redis-url", default=os.environ.get("GAUNTLET_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
    )
    parser.add_argument("--aa-samples", type=int, default=500)
    parser.add_argument("--pgd-samples", type=int, default=2000)
    parser.add_argument("--pgd-steps", type=int, default=40)
    parser.add_argument("--pgd-batch", type=int, default=256)
    parser.add_argument("--api-seconds", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=6 * 3600)
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    results: dict[str, Any] = {
        "machine": {"cores": usable_cores(), "cpu": platform.processor() or platform.machine(),
                    "torch": torch.__version__, "load_average_before": os.getloadavg()},
    }  # fmt: skip
    service = LiveService(args.redis_url)
    try:
        headers = service.key("bench")
        client = httpx.Client(base_url=service.start_api(1), headers=headers, timeout=120)
        service.start_worker("worker-1", "--concurrency", "1")
        if parts & {"pgd", "shared"}:
            setup = pgd_setup(args, client)
            if "pgd" in parts:
                results["pgd"] = {"upload_to_ready_s": setup["upload_to_ready_s"]} | pgd_versus_plain(
                    args, client, setup
                )
            if "shared" in parts:
                load = subprocess.Popen([sys.executable, "-c", LOAD], start_new_session=True)  # noqa: S603
                try:
                    results["shared"] = pgd_versus_plain(args, client, setup)
                finally:
                    load.kill()
                    load.wait()
        if parts & {"autoattack", "api"}:
            digits = onnx_bytes(train_digits_model("small-cnn", epochs=15, seed=0), (1, 8, 8))
            model_id = upload_model(client, digits, "digits-cnn", [1, 8, 8], 10)
            if "autoattack" in parts:
                results["autoattack"] = part_autoattack(args, service, client, model_id)
            if "api" in parts:
                results["api"] = part_api(args, service, headers, model_id)
        results["machine"]["load_average_after"] = os.getloadavg()
    finally:
        service.close()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
