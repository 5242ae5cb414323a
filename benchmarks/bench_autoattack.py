"""AutoAttack side by side: torchattacks' standard AutoAttack, Gauntlet's `standard` and `fast`, one run.

Usage: python benchmarks/bench_autoattack.py [--samples 500 --cifar-samples 100 --threads 1 --quick]

Rows (robust accuracy counted by one independent check for every side: a fresh forward pass of the
output, its linf norm and the input range):
  digits CNN (small-cnn trained 15 epochs on the first 1297 digits-train samples) and the same CNN
  fine-tuned 10 epochs with PGD-AT (linf 0.1, 10 steps), linf eps 0.1 and 0.2, on the clean-correct
  samples among 500 held-out digits (the 297 of digits-test and the last 203 of digits-train);
  the CIFAR-sized CNN of bench_pgd.py at linf 8/255: random weights (time) and trained 3 epochs on
  3x32x32 patches of scikit-learn's two sample photographs, labelled photo x column band (strength).
Budgets: torchattacks' AutoAttack at the reference's budget (APGD-CE, APGD-T, FAB-T at 100 steps,
9 targets, Square 5000 queries; torchattacks defaults its components to 10 steps, raised here), and
Gauntlet's standard at the same budget; Gauntlet's fast at its defaults (APGD-CE 100 steps, APGD-T
on 3 MALT-ranked targets). Each side runs once per row (seeds reset), one torch thread by default.
Times are this process's CPU seconds (time.process_time) beside wall seconds; the ratios use CPU
time, which a shared machine's load does not inflate.
Targets (issue 16): standard robust <= torchattacks' and time <= 0.5x; fast robust <= standard +
0.005 and time <= 0.15x.
"""

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_attacks import _torchattacks_autoattack, broken_within_budget  # noqa: E402
from bench_pgd import cifar_like_cnn  # noqa: E402

from worker.engine.datasets import load_builtin  # noqa: E402
from worker.engine.evasion.attacks.autoattack import AutoAttack  # noqa: E402
from worker.engine.models.catalog import build_architecture  # noqa: E402
from worker.engine.training.classifier import train_classifier  # noqa: E402

TRAIN_SPLIT = 1297  # digits-train samples the CNNs learn from; the remaining 203 join digits-test
CIFAR_EPS = 8 / 255
STANDARD_TIME, FAST_TIME, FAST_GAP = 0.5, 0.15, 0.005


@dataclass
class Row:
    """One model and eps: robust accuracy, seconds and per-sample breaks of each side."""

    model: str
    eps: float
    samples: int
    robust: dict[str, float]
    seconds: dict[str, float]  # CPU seconds of this process (time.process_time)
    wall: dict[str, float]  # wall-clock seconds (time.perf_counter)
    missed: int  # samples torchattacks broke that standard left standing


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train x, train y, held-out x, held-out y): 1297 training digits and 500 held out."""
    train, test = load_builtin("digits-train"), load_builtin("digits-test")
    held_x = np.concatenate([test.x, train.x[TRAIN_SPLIT:]])
    held_y = np.concatenate([test.y, train.y[TRAIN_SPLIT:]])
    return train.x[:TRAIN_SPLIT], train.y[:TRAIN_SPLIT], held_x, held_y


def pgd_finetune(model: nn.Module, x: np.ndarray, y: np.ndarray, eps: float, epochs: int) -> nn.Module:
    """Madry PGD-AT (10 steps of 2.5 eps / 10, random start), Adam 1e-3, batch 64."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    xs, ys = torch.as_tensor(x), torch.as_tensor(y, dtype=torch.long)
    step = 2.5 * eps / 10
    for _ in range(epochs):
        order = torch.randperm(len(xs), generator=generator)
        for start in range(0, len(xs), 64):
            xb, yb = xs[order[start : start + 64]], ys[order[start : start + 64]]
            model.eval()
            x_adv = (xb + (torch.rand(xb.shape, generator=generator) * 2 - 1) * eps).clamp(0, 1)
            for _ in range(10):
                x_adv.requires_grad_(True)
                (grad,) = torch.autograd.grad(functional.cross_entropy(model(x_adv), yb), x_adv)
                x_adv = torch.min(torch.max(x_adv.detach() + step * grad.sign(), xb - eps), xb + eps).clamp(
                    0, 1
                )
            model.train()
            optimizer.zero_grad()
            functional.cross_entropy(model(x_adv), yb).backward()
            optimizer.step()
    return model.eval()


def photo_patches(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """3x32x32 patches of the two sample photographs; label = photo * 5 + the patch centre's column band."""
    from sklearn.datasets import load_sample_images

    photos = [image.astype(np.float32) / 255.0 for image in load_sample_images().images]
    rng = np.random.default_rng(seed)
    x, y = np.empty((n, 3, 32, 32), dtype=np.float32), np.empty(n, dtype=np.int64)
    for i in range(n):
        which = int(rng.integers(2))
        photo = photos[which]
        top, left = int(rng.integers(photo.shape[0] - 32)), int(rng.integers(photo.shape[1] - 32))
        x[i] = photo[top : top + 32, left : left + 32].transpose(2, 0, 1)
        y[i] = which * 5 + min(4, (left + 16) * 5 // photo.shape[1])
    return x, y


def clean_correct(model: nn.Module, x: np.ndarray, y: np.ndarray) -> tuple[Tensor, Tensor]:
    """The samples the model classifies correctly."""
    xs, ys = torch.as_tensor(x), torch.as_tensor(y, dtype=torch.long)
    with torch.no_grad():
        correct = model(xs).argmax(1) == ys
    return xs[correct], ys[correct]


def _seed() -> None:
    """Reset the global generators torchattacks draws from."""
    torch.manual_seed(0)
    np.random.seed(0)


def measure(label: str, model: nn.Module, x: Tensor, y: Tensor, eps: float, sides: list[str]) -> Row:
    """Run every side once on (x, y) at eps; robust accuracy from the same independent check."""
    runners: dict[str, Any] = {}
    if "torchattacks" in sides:
        import torchattacks

        attack = _torchattacks_autoattack(torchattacks, model, eps, 100, 5000)
        runners["torchattacks"] = lambda: attack(x, y).detach()
    for version in ("standard", "fast"):
        if version in sides:
            ours = AutoAttack.configured(version=version)
            runners[version] = lambda ours=ours: (
                ours.run(model, x, y, eps=eps, generator=torch.Generator().manual_seed(0)).x_adv
            )
    robust, seconds, wall, broken = {}, {}, {}, {}
    for name, runner in runners.items():
        _seed()
        start, cpu = time.perf_counter(), time.process_time()
        x_adv = runner()
        seconds[name], wall[name] = time.process_time() - cpu, time.perf_counter() - start
        broken[name] = broken_within_budget(model, x, y, x_adv, eps, "linf")[0]
        robust[name] = 1.0 - broken[name].float().mean().item()
        print(
            f"    {label} eps {eps:.4g} {name}: robust {robust[name]:.3f}, cpu {seconds[name]:.1f} s, "
            f"wall {wall[name]:.1f} s",
            flush=True,
        )
    missed = 0
    if "torchattacks" in broken and "standard" in broken:
        missed = int((broken["torchattacks"] & ~broken["standard"]).sum())
    return Row(label, eps, len(x), robust, seconds, wall, missed)


def _cell(row: Row, name: str) -> str:
    """robust / CPU seconds / wall seconds of one side, or '-'."""
    if name not in row.robust:
        return "-"
    return f"{row.robust[name]:.3f} / {row.seconds[name]:.1f} / {row.wall[name]:.1f}"


def _ratio(row: Row, name: str) -> float:
    """A side's CPU seconds over torchattacks' (CPU time: the machine may be shared)."""
    if name not in row.seconds or "torchattacks" not in row.seconds:
        return math.nan
    return row.seconds[name] / row.seconds["torchattacks"]


def table(rows: list[Row]) -> None:
    """Print the side-by-side table and whether each target was met."""
    print(
        "\n| model | eps | samples | torchattacks robust / cpu s / wall s | standard robust / cpu s / wall s "
        "| fast robust / cpu s / wall s | standard / ta cpu time | fast / ta cpu time | targets |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        std, fast = _ratio(row, "standard"), _ratio(row, "fast")
        verdicts = []
        if "torchattacks" in row.robust and "standard" in row.robust:
            strong = row.robust["standard"] <= row.robust["torchattacks"] + 1e-9
            verdicts.append(f"std strength {'yes' if strong else 'NO'} ({row.missed} missed)")
            verdicts.append(f"std time {'yes' if std <= STANDARD_TIME else 'NO'}")
        if "standard" in row.robust and "fast" in row.robust:
            close = row.robust["fast"] <= row.robust["standard"] + FAST_GAP + 1e-9
            verdicts.append(f"fast gap {'yes' if close else 'NO'}")
        if not math.isnan(fast):
            verdicts.append(f"fast time {'yes' if fast <= FAST_TIME else 'NO'}")
        print(
            f"| {row.model} | {row.eps:.4g} | {row.samples} | {_cell(row, 'torchattacks')} | "
            f"{_cell(row, 'standard')} | {_cell(row, 'fast')} | {std:.2f} | {fast:.2f} | "
            f"{'; '.join(verdicts)} |"
        )


def main() -> None:
    """Train the models, run every row, print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=500, help="held-out digits looked at (at most 500)")
    parser.add_argument(
        "--cifar-samples", type=int, default=100, help="CIFAR-sized samples (0: no CIFAR rows)"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="100 digits, 20 CIFAR-sized samples")
    parser.add_argument("--sides", nargs="+", default=["torchattacks", "standard", "fast"])
    parser.add_argument(
        "--only", nargs="+", default=None, help="model labels to run (digits, digits-pgd, ...)"
    )
    parser.add_argument("--eps", nargs="+", type=float, default=None, help="digits eps to run (0.1, 0.2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    samples, cifar = (100, 20) if args.quick else (args.samples, args.cifar_samples)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, sides {', '.join(args.sides)}")

    train_x, train_y, held_x, held_y = digits_split()
    held_x, held_y = held_x[:samples], held_y[:samples]
    torch.manual_seed(0)
    digits = train_classifier(
        build_architecture("small-cnn", (1, 8, 8), 10), train_x, train_y, epochs=15, seed=0
    )
    digits = digits.eval()
    models: list[tuple[str, nn.Module, np.ndarray, np.ndarray, list[float]]] = [
        ("digits", digits, held_x, held_y, [0.1, 0.2])
    ]
    if args.only is None or "digits-pgd" in args.only:
        torch.manual_seed(0)
        base = train_classifier(
            build_architecture("small-cnn", (1, 8, 8), 10), train_x, train_y, epochs=15, seed=0
        )
        models.append(
            ("digits-pgd", pgd_finetune(base, train_x, train_y, 0.1, 10), held_x, held_y, [0.1, 0.2])
        )
    if cifar:
        random_net = cifar_like_cnn()
        xr = torch.rand(cifar, 3, 32, 32, generator=torch.Generator().manual_seed(1)).numpy()
        with torch.no_grad():
            yr = random_net(torch.as_tensor(xr)).argmax(1).numpy()  # its own predictions: all attacked
        models.append(("cifar-cnn random weights", random_net, xr, yr, [CIFAR_EPS]))
        px, py = photo_patches(3000, seed=0)
        trained = train_classifier(cifar_like_cnn().train(), px, py, epochs=3, seed=0).eval()
        tx, ty = photo_patches(cifar * 2, seed=1)
        models.append(("cifar-cnn photo patches", trained, tx, ty, [CIFAR_EPS]))
    rows = []
    for label, model, x, y, eps_list in models:
        if args.only is not None and label.split(" ")[0] not in args.only and label not in args.only:
            continue
        xs, ys = clean_correct(model, x, y)
        keep = cifar if label.startswith("cifar-cnn photo") else len(x)
        xs, ys = xs[:keep], ys[:keep]
        print(f"  {label}: {len(xs)} clean-correct of {len(x)}", flush=True)
        for eps in eps_list:
            if args.eps is not None and label.startswith("digits") and eps not in args.eps:
                continue
            rows.append(measure(label, model, xs, ys, eps, args.sides))
    table(rows)


if __name__ == "__main__":
    main()
