"""Benchmark Gauntlet's PGD against a plain PyTorch floor (and ART / torchattacks when installed).

Usage: python benchmarks/bench_pgd.py [--samples N --steps S --device cpu|cuda --batch-size B]

For two models (the digits small-cnn and a larger CNN on random 3x32x32 inputs) it times:
  gauntlet  worker.engine.evasion.attacks.pgd.PGD, linf, random start, one restart
  floor     a bare PyTorch loop doing the same forward and backward passes (random start, steps
            of sign-gradient ascent with projection, one final forward for predictions)
  art / torchattacks  their PGD at the same budget, when importable (never installed by this script)
and prints each time as a ratio to the floor (best of --repeats interleaved runs after one warm-up each).
It then measures peak memory of run_evasion for N and 4N samples, each in a fresh process, to
show the working set stays flat as the dataset grows (the adversarial arrays returned to the
caller grow with N by design and are listed separately).
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker.engine.datasets import load_builtin  # noqa: E402
from worker.engine.evasion.attacks.pgd import PGD  # noqa: E402
from worker.engine.evasion.runner import run_evasion  # noqa: E402
from worker.engine.training.classifier import train_digits_model  # noqa: E402

EPS = 8 / 255


def cifar_like_cnn() -> nn.Module:
    """A VGG-ish CNN for 3x32x32 inputs (about 0.6M parameters), randomly initialised."""
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for c_in, c_out, pool in (
        (3, 32, False),
        (32, 32, True),
        (32, 64, False),
        (64, 64, True),
        (64, 128, True),
    ):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), *([nn.MaxPool2d(2)] if pool else [])]
    layers += [nn.Flatten(), nn.Linear(128 * 4 * 4, 256), nn.ReLU(), nn.Linear(256, 10)]
    return nn.Sequential(*layers).eval()


def cifar_like_data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform random images and random labels (timing only)."""
    generator = torch.Generator().manual_seed(1)
    return torch.rand(n, 3, 32, 32, generator=generator), torch.randint(0, 10, (n,), generator=generator)


def digits_data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The built-in digits, tiled to n samples."""
    data = load_builtin("digits")
    index = np.arange(n) % len(data.y)
    return torch.as_tensor(data.x[index]), torch.as_tensor(data.y[index])


def _sync(device: torch.device) -> None:
    """Wait for queued GPU work so timings are honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _batches(n: int, size: int) -> list[slice]:
    """Slices covering n samples."""
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


def gauntlet_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, batch: int) -> None:
    """Gauntlet's PGD over the data in batches."""
    attack = PGD.configured(norm="linf", steps=steps, random_start=True)
    generator = torch.Generator(device=x.device).manual_seed(0)
    for part in _batches(len(x), batch):
        attack.run(model, x[part], y[part], eps=EPS, generator=generator)


def floor_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, batch: int) -> None:
    """The floor: the same passes with nothing but the arithmetic PGD needs."""
    alpha = 2.5 * EPS / steps
    generator = torch.Generator(device=x.device).manual_seed(0)
    for part in _batches(len(x), batch):
        x0, labels = x[part], y[part]
        noise = torch.rand(x0.shape, generator=generator, device=x0.device) * 2 - 1
        x_adv = (x0 + EPS * noise).clamp(0, 1)
        for _ in range(steps):
            x_adv.requires_grad_(True)
            loss = functional.cross_entropy(model(x_adv), labels, reduction="sum")
            (grad,) = torch.autograd.grad(loss, x_adv)
            with torch.no_grad():
                x_adv = torch.min(torch.max(x_adv + alpha * grad.sign(), x0 - EPS), x0 + EPS).clamp(0, 1)
        with torch.no_grad():
            model(x_adv).argmax(1)


def torchattacks_pgd() -> Callable[..., None] | None:
    """torchattacks' PGD at the same budget, or None when not installed."""
    try:
        import torchattacks
    except Exception:
        return None

    def run(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, batch: int) -> None:
        attack = torchattacks.PGD(model, eps=EPS, alpha=2.5 * EPS / steps, steps=steps, random_start=True)
        for part in _batches(len(x), batch):
            adv = attack(x[part], y[part])
            with torch.no_grad():
                model(adv).argmax(1)

    return run


def art_pgd() -> Callable[..., None] | None:
    """ART's ProjectedGradientDescent at the same budget, or None when not installed."""
    try:
        from art.attacks.evasion import ProjectedGradientDescent
        from art.estimators.classification import PyTorchClassifier
    except Exception:
        return None

    def run(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, batch: int) -> None:
        classifier = PyTorchClassifier(
            model=model,
            loss=nn.CrossEntropyLoss(),
            input_shape=tuple(x.shape[1:]),
            nb_classes=10,
            clip_values=(0.0, 1.0),
            device_type="gpu" if x.is_cuda else "cpu",
        )
        attack = ProjectedGradientDescent(
            classifier,
            norm=np.inf,
            eps=EPS,
            eps_step=2.5 * EPS / steps,
            max_iter=steps,
            num_random_init=1,
            batch_size=batch,
            verbose=False,
        )
        adv = attack.generate(x=x.cpu().numpy(), y=y.cpu().numpy())
        classifier.predict(adv, batch_size=batch)

    return run


def time_all(fns: dict[str, Callable[..., None]], args: tuple, repeats: int, device: torch.device) -> dict:
    """Best wall time of each fn(*args) after one warm-up, runs interleaved so load drift hits all alike."""
    for fn in fns.values():
        fn(*args)
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            fn(*args)
            _sync(device)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def _rss_mb() -> float:
    """Current resident set size in MiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def memory_probe(n: int, steps: int, batch: int, device: torch.device) -> dict:
    """Peak memory of run_evasion (one PGD, one eps) on n random 3x32x32 samples; run in a fresh process."""
    model = cifar_like_cnn().to(device)
    x, _ = cifar_like_data(n)
    spec = dict(
        name="pgd", norm="linf", eps=[EPS], targeted=False, steps=steps, random_start=True, restarts=1
    )
    with torch.no_grad():  # label the data with the model so every sample is attacked
        y_np = torch.cat([model(x[p].to(device)).argmax(1).cpu() for p in _batches(n, batch)]).numpy()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    before = _rss_mb()
    outcome = run_evasion(model, x.numpy(), y_np, [spec], batch_size=batch, seed=0, device=device)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    outputs = sum(a.nbytes for arrays in outcome.adversarial.values() for a in arrays.values()) / 2**20
    cuda_peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {
        "n": n,
        "rss_before_mb": before,
        "peak_rise_mb": peak - before,
        "outputs_mb": outputs,
        "cuda_peak_mb": cuda_peak,
    }


def _probe_in_subprocess(n: int, args: argparse.Namespace) -> dict:
    """Run memory_probe in a fresh interpreter so peaks do not mix."""
    command = [
        sys.executable,
        __file__,
        "--memory-probe",
        str(n),
        "--steps",
        str(args.steps),
        "--batch-size",
        str(args.batch_size),
        "--device",
        args.device,
    ]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    """Parse arguments, run the timings and the memory probes, print tables."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument("--memory-probe", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.memory_probe is not None:
        print(json.dumps(memory_probe(args.memory_probe, args.steps, args.batch_size, device)))
        return

    print(
        f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
        f"samples {args.samples}, steps {args.steps}, batch {args.batch_size}, eps {EPS:.4f} (linf)"
    )
    contenders: list[tuple[str, Callable[..., None] | None]] = [
        ("gauntlet", gauntlet_pgd),
        ("floor", floor_pgd),
        ("torchattacks", torchattacks_pgd()),
        ("art", art_pgd()),
    ]
    models = [
        (
            "digits small-cnn 1x8x8",
            train_digits_model("small-cnn", epochs=15, seed=0),
            digits_data(args.samples),
        ),
        ("cifar-like cnn 3x32x32", cifar_like_cnn(), cifar_like_data(args.samples)),
    ]
    print(f"\n{'model':<24} {'implementation':<14} {'seconds':>9} {'ms/step':>9} {'x floor':>8}")
    for label, model, (x, y) in models:
        model = model.to(device)
        data = (model, x.to(device), y.to(device), args.steps, args.batch_size)
        seconds = time_all(
            {name: fn for name, fn in contenders if fn is not None}, data, args.repeats, device
        )
        for name, fn in contenders:
            if fn is None:
                print(f"{label:<24} {name:<14} {'not installed':>28}")
                continue
            ratio = seconds[name] / seconds["floor"]
            per_step = 1000 * seconds[name] / args.steps
            print(f"{label:<24} {name:<14} {seconds[name]:>9.3f} {per_step:>9.2f} {ratio:>8.2f}")

    print("\nrun_evasion peak memory (cifar-like cnn, pgd linf, 1 eps), each in a fresh process:")
    header = ("samples", "rss before", "peak rise", "outputs", "rise-outputs", "cuda peak")
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, (8, 11, 10, 8, 13, 10), strict=True)))
    for n in (args.samples, 4 * args.samples):
        probe = _probe_in_subprocess(n, args)
        cuda = "n/a" if probe["cuda_peak_mb"] is None else f"{probe['cuda_peak_mb']:.1f}"
        working = probe["peak_rise_mb"] - probe["outputs_mb"]
        print(
            f"{n:>8} {probe['rss_before_mb']:>9.1f}MB {probe['peak_rise_mb']:>8.1f}MB "
            f"{probe['outputs_mb']:>6.1f}MB {working:>11.1f}MB {cuda:>10}"
        )
    print(
        "(outputs = the adversarial arrays returned to the caller, which grow with N by design;\n"
        " rise-outputs = the working set of the attack itself, which should stay flat)"
    )


if __name__ == "__main__":
    main()
