"""Benchmark Gauntlet's attacks against torchattacks and ART: speed and strength at one budget, in one run.

Usage: python benchmarks/bench_attacks.py [--samples N --device cpu|cuda --quick --repeats K --threads T]

On the digits small-cnn (trained on digits-train) and the clean-correct samples among the first
--samples of digits-test, every attack runs at one budget, stated in the output, in Gauntlet and in
each reference library that has it (torchattacks, ART; never installed by this script):
  apgd        linf eps 0.1, CE loss, 100 steps, 1 restart, rho 0.75
  square      linf eps 0.1, 1000 queries, p_init 0.8, 1 restart
  deepfool    l2, 50 steps, overshoot 0.02, all classes; robust counted at l2 eps 0.5
  fab         linf, untargeted, 100 steps, 1 restart; robust counted at linf eps 0.1
  cw          l2, 3 binary-search steps x 100 iterations, lr 0.05, c0 1 (torchattacks: c 1 fixed for
              300 iterations, it has no binary search); robust counted at l2 eps 0.5
  autoattack  standard, linf eps 0.1: APGD-CE, APGD-T (9 targets), FAB-T (9 targets), Square 5000,
              100 steps each (torchattacks' AutoAttack defaults its components to 10 steps; they are
              raised to 100 here so the budgets match)
Minimum-norm attacks (deepfool, fab, cw) run unbounded and a sample counts as robust at eps when
the attack did not flip it or its perturbation is larger than eps. Every implementation's output is
checked the same way: a fresh forward pass, the perturbation's norm and the input range.

Timing: each implementation is warmed up on a few samples, then the implementations of one attack run
interleaved (so load drift hits all alike) up to --repeats times, fewer when one round is slow; the
best time counts. Ratios are theirs / Gauntlet's seconds (per sample where a slow reference runs on
fewer samples), so above 1 means Gauntlet is faster. --quick uses 64 samples and smaller budgets.
"""

import argparse
import math
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker.engine.datasets import load_builtin  # noqa: E402
from worker.engine.evasion.attacks.base import restrict_to_budget  # noqa: E402
from worker.engine.evasion.attacks.norms import Norm, perturbation_norm  # noqa: E402
from worker.engine.evasion.attacks.registry import as_spec, build_attack  # noqa: E402
from worker.engine.training.classifier import train_digits_model  # noqa: E402

LINF_EPS = 0.1
L2_EPS = 0.5
CLASSES = 10
WARMUP_SAMPLES = 8
# Stop repeating an attack's round of runs once another round would take its total past this.
ROUND_CAP_S = 25.0

# (x_adv, the implementation's own success-at-budget claim or None) for a batch (model, x, y).
Runner = Callable[[nn.Module, Tensor, Tensor], tuple[Tensor, Tensor | None]]


@dataclass(frozen=True)
class Contender:
    """One implementation of an attack: a builder of its runner (given the model) and how to read it."""

    implementation: str
    build: Callable[[nn.Module], Runner]
    max_samples: int | None = None  # slow references run on the first max_samples only
    same_budget: bool = True  # False: a different budget, shown but left out of the ratios
    note: str = ""


@dataclass(frozen=True)
class Case:
    """An attack to compare: the norm and eps its robust accuracy is counted at, and the contenders."""

    attack: str
    budget: str
    norm: Norm
    eps: float
    minimum_norm: bool
    contenders: list[Contender]


@dataclass
class Row:
    """One implementation's measurements (or why there are none)."""

    attack: str
    implementation: str
    samples: int = 0
    seconds: float = math.inf
    runs: int = 0
    robust: float = math.nan
    flipped: float = math.nan
    median_norm: float = math.nan
    same_budget: bool = True
    note: str = ""
    error: str = ""
    broken: Tensor | None = None  # per sample, broken within the budget (independent check)


@dataclass(frozen=True)
class Budgets:
    """The per-attack budgets of a run (full, or smaller with --quick)."""

    apgd_steps: int
    square_queries: int
    deepfool_steps: int
    fab_steps: int
    cw_binary_steps: int
    cw_steps: int
    aa_steps: int
    aa_square_queries: int
    art_cw_samples: int


FULL = Budgets(100, 1000, 50, 100, 3, 100, 100, 5000, 32)
QUICK = Budgets(20, 200, 50, 20, 2, 50, 20, 500, 16)


def _sync(device: torch.device) -> None:
    """Wait for queued GPU work so timings are honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _model_device(model: nn.Module) -> torch.device:
    """The device the model's parameters live on."""
    return next(model.parameters()).device


def _stub_multiprocess() -> None:
    """ART's AutoAttack imports multiprocess for its parallel mode (off here); stand in when it is absent."""
    try:
        import multiprocess  # noqa: F401
    except ImportError:
        sys.modules.setdefault("multiprocess", types.ModuleType("multiprocess"))


def clean_correct_digits(samples: int, model: nn.Module) -> tuple[Tensor, Tensor, int]:
    """The first samples of digits-test that the model classifies correctly, and how many were looked at."""
    data = load_builtin("digits-test")
    n = min(samples, len(data.y))
    x, y = torch.as_tensor(data.x[:n]), torch.as_tensor(data.y[:n])
    with torch.no_grad():
        correct = model(x.to(_model_device(model))).argmax(dim=1).cpu() == y
    return x[correct], y[correct], n


def gauntlet(name: str, spec: dict[str, Any], eps: float, norm: Norm) -> Callable[[nn.Module], Runner]:
    """Gauntlet's attack from the registry; minimum-norm ones run at eps=inf and are restricted to eps."""

    def build(model: nn.Module) -> Runner:
        attack = build_attack(as_spec({"name": name, "eps": [eps], **spec}), (0.0, 1.0))

        def run(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor | None]:
            generator = torch.Generator(device=x.device).manual_seed(0)
            if not attack.minimum_norm:
                result = attack.run(model, x, y, eps=eps, generator=generator)
                return result.x_adv, result.success
            result = attack.run(model, x, y, eps=math.inf, generator=generator)
            # The unrestricted x_adv, so the median norm shows the smallest adversarials found.
            return result.x_adv, restrict_to_budget(result, x, y, eps, norm).success

        return run

    return build


def torchattacks_attack(make: Callable[[Any, nn.Module], Any]) -> Callable[[nn.Module], Runner]:
    """A torchattacks attack made by make(torchattacks, model), called on the whole batch."""

    def build(model: nn.Module) -> Runner:
        import torchattacks

        attack = make(torchattacks, model)

        def run(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor | None]:
            return attack(x, y).detach(), None

        return run

    return build


def art_attack(make: Callable[[Any, Any, int], Any]) -> Callable[[nn.Module], Runner]:
    """An ART attack made by make(art.attacks.evasion, classifier, batch size), one batch for all samples."""

    def build(model: nn.Module) -> Runner:
        from art.estimators.classification import PyTorchClassifier

        _stub_multiprocess()
        from art.attacks import evasion

        device = _model_device(model)
        classifier = PyTorchClassifier(
            model=model,
            loss=nn.CrossEntropyLoss(),
            input_shape=(1, 8, 8),
            nb_classes=CLASSES,
            clip_values=(0.0, 1.0),
            device_type="gpu" if device.type == "cuda" else "cpu",
        )
        attacks: dict[int, Any] = {}

        def run(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor | None]:
            if len(x) not in attacks:
                attacks[len(x)] = make(evasion, classifier, len(x))
            attack = attacks[len(x)]
            adv = attack.generate(x=x.cpu().numpy(), y=y.cpu().numpy())
            return torch.as_tensor(adv, dtype=x.dtype, device=x.device), None

        return run

    return build


def _torchattacks_autoattack(ta: Any, model: nn.Module, eps: float, steps: int, queries: int) -> Any:
    """torchattacks' standard AutoAttack with its components' steps and Square's queries set to ours."""
    attack = ta.AutoAttack(model, norm="Linf", eps=eps, version="standard", n_classes=CLASSES, seed=0)
    for component in attack._autoattack.attacks:
        if isinstance(component, ta.Square):
            component.n_queries = queries
        else:
            component.steps = steps
    return attack


def _art_autoattack(evasion: Any, classifier: Any, batch: int, eps: float, steps: int, queries: int) -> Any:
    """ART's AutoAttack with APGD-CE, APGD-DLR (untargeted) and Square at our steps and queries."""
    apgd = dict(norm=np.inf, eps=eps, eps_step=2 * eps, max_iter=steps, nb_random_init=1, batch_size=batch)
    attacks = [
        evasion.AutoProjectedGradientDescent(classifier, loss_type="cross_entropy", verbose=False, **apgd),
        evasion.AutoProjectedGradientDescent(
            classifier, loss_type="difference_logits_ratio", verbose=False, **apgd
        ),
        evasion.SquareAttack(
            classifier,
            norm=np.inf,
            eps=eps,
            max_iter=queries,
            p_init=0.8,
            nb_restarts=1,
            batch_size=batch,
            verbose=False,
        ),
    ]
    return evasion.AutoAttack(
        classifier, norm=np.inf, eps=eps, eps_step=2 * eps, attacks=attacks, batch_size=batch
    )


def cases(b: Budgets) -> list[Case]:
    """The attacks to compare and their contenders at budgets b."""
    eps, l2 = LINF_EPS, L2_EPS
    cw_total = b.cw_binary_steps * b.cw_steps
    return [
        Case(
            "apgd",
            f"linf eps {eps}, CE loss, {b.apgd_steps} steps, 1 restart, rho 0.75",
            "linf",
            eps,
            False,
            [
                Contender(
                    "gauntlet",
                    gauntlet("apgd", {"norm": "linf", "loss": "ce", "steps": b.apgd_steps}, eps, "linf"),
                ),
                Contender(
                    "torchattacks",
                    torchattacks_attack(
                        lambda ta, m: ta.APGD(
                            m, norm="Linf", eps=eps, steps=b.apgd_steps, n_restarts=1, seed=0, loss="ce"
                        )
                    ),
                ),
                Contender(
                    "art",
                    art_attack(
                        lambda ev, c, n: ev.AutoProjectedGradientDescent(
                            c,
                            norm=np.inf,
                            eps=eps,
                            eps_step=2 * eps,
                            max_iter=b.apgd_steps,
                            nb_random_init=1,
                            batch_size=n,
                            loss_type="cross_entropy",
                            verbose=False,
                        )
                    ),
                ),
            ],
        ),
        Case(
            "square",
            f"linf eps {eps}, {b.square_queries} queries, p_init 0.8, 1 restart, margin loss",
            "linf",
            eps,
            False,
            [
                Contender(
                    "gauntlet",
                    gauntlet("square", {"norm": "linf", "queries": b.square_queries}, eps, "linf"),
                ),
                Contender(
                    "torchattacks",
                    torchattacks_attack(
                        lambda ta, m: ta.Square(
                            m, norm="Linf", eps=eps, n_queries=b.square_queries, n_restarts=1, seed=0
                        )
                    ),
                ),
                Contender(
                    "art",
                    art_attack(
                        lambda ev, c, n: ev.SquareAttack(
                            c,
                            norm=np.inf,
                            eps=eps,
                            max_iter=b.square_queries,
                            p_init=0.8,
                            nb_restarts=1,
                            batch_size=n,
                            verbose=False,
                        )
                    ),
                ),
            ],
        ),
        Case(
            "deepfool",
            f"l2, {b.deepfool_steps} steps, overshoot 0.02, all 10 classes; robust at l2 eps {l2}",
            "l2",
            l2,
            True,
            [
                Contender(
                    "gauntlet",
                    gauntlet(
                        "deepfool",
                        {"norm": "l2", "steps": b.deepfool_steps, "overshoot": 0.02, "candidates": CLASSES},
                        l2,
                        "l2",
                    ),
                ),
                Contender(
                    "torchattacks",
                    torchattacks_attack(lambda ta, m: ta.DeepFool(m, steps=b.deepfool_steps, overshoot=0.02)),
                ),
                Contender(
                    "art",
                    art_attack(
                        lambda ev, c, n: ev.DeepFool(
                            c,
                            max_iter=b.deepfool_steps,
                            epsilon=0.02,
                            nb_grads=CLASSES,
                            batch_size=n,
                            verbose=False,
                        )
                    ),
                ),
            ],
        ),
        Case(
            "fab",
            f"linf, untargeted, {b.fab_steps} steps, 1 restart, alpha_max 0.1, eta 1.05, beta 0.9; "
            f"robust at linf eps {eps}",
            "linf",
            eps,
            True,
            [
                Contender("gauntlet", gauntlet("fab", {"norm": "linf", "steps": b.fab_steps}, eps, "linf")),
                Contender(
                    "torchattacks",
                    torchattacks_attack(
                        lambda ta, m: ta.FAB(
                            m,
                            norm="Linf",
                            eps=eps,
                            steps=b.fab_steps,
                            n_restarts=1,
                            seed=0,
                            n_classes=CLASSES,
                        )
                    ),
                    note="torchattacks' FAB returns only adversarials within eps: its median norm is capped",
                ),
            ],
        ),
        Case(
            "cw",
            f"l2, {b.cw_binary_steps} binary-search steps x {b.cw_steps} iterations, lr 0.05, c0 1, "
            f"confidence 0; robust at l2 eps {l2}",
            "l2",
            l2,
            True,
            [
                Contender(
                    "gauntlet",
                    gauntlet(
                        "cw",
                        {
                            "norm": "l2",
                            "binary_search_steps": b.cw_binary_steps,
                            "steps": b.cw_steps,
                            "learning_rate": 0.05,
                            "initial_const": 1.0,
                        },
                        l2,
                        "l2",
                    ),
                ),
                Contender(
                    "torchattacks",
                    torchattacks_attack(lambda ta, m: ta.CW(m, c=1.0, kappa=0, steps=cw_total, lr=0.05)),
                    note=f"torchattacks' CW has no binary search: c 1 fixed for {cw_total} iterations",
                ),
                Contender(
                    "art",
                    art_attack(
                        lambda ev, c, n: ev.CarliniL2Method(
                            c,
                            confidence=0.0,
                            learning_rate=0.05,
                            binary_search_steps=b.cw_binary_steps,
                            max_iter=b.cw_steps,
                            initial_const=1.0,
                            batch_size=n,
                            verbose=False,
                        )
                    ),
                    max_samples=b.art_cw_samples,
                    note="ART's CW also line-searches the learning rate (up to 5 halvings, 5 doublings)",
                ),
            ],
        ),
        Case(
            "autoattack",
            f"standard, linf eps {eps}: apgd-ce, apgd-t (9 targets), fab-t (9 targets), "
            f"square {b.aa_square_queries}; {b.aa_steps} steps",
            "linf",
            eps,
            False,
            [
                Contender(
                    "gauntlet",
                    gauntlet(
                        "autoattack",
                        {
                            "norm": "linf",
                            "version": "standard",
                            "steps": b.aa_steps,
                            "n_target_classes": CLASSES - 1,
                            "square_queries": b.aa_square_queries,
                        },
                        eps,
                        "linf",
                    ),
                ),
                Contender(
                    "torchattacks",
                    torchattacks_attack(
                        lambda ta, m: _torchattacks_autoattack(ta, m, eps, b.aa_steps, b.aa_square_queries)
                    ),
                    note=f"component steps raised from torchattacks' default 10 to {b.aa_steps}",
                ),
                Contender(
                    "art",
                    art_attack(
                        lambda ev, c, n: _art_autoattack(ev, c, n, eps, b.aa_steps, b.aa_square_queries)
                    ),
                    same_budget=False,
                    note="ART has no standard version: apgd-ce, apgd-dlr, square, all untargeted, no fab "
                    "(different budget, left out of the ratios)",
                ),
            ],
        ),
    ]


def broken_within_budget(
    model: nn.Module, x: Tensor, y: Tensor, x_adv: Tensor, eps: float, norm: Norm
) -> tuple[Tensor, Tensor, Tensor]:
    """Per sample: broken within eps (and the input range), misclassified at any size, perturbation norm."""
    with torch.no_grad():
        flipped = model(x_adv).argmax(dim=1) != y
    size = perturbation_norm(x_adv - x, norm)
    flat = x_adv.reshape(len(x_adv), -1)
    in_range = ((flat >= -1e-6) & (flat <= 1 + 1e-6)).all(dim=1)
    return flipped & in_range & (size <= eps * (1 + 1e-6) + 1e-7), flipped, size


def _seed() -> None:
    """Reset the global generators that the reference libraries draw from."""
    torch.manual_seed(0)
    np.random.seed(0)  # ART draws from numpy's global generator


def measure(case: Case, model: nn.Module, x: Tensor, y: Tensor, repeats: int) -> list[Row]:
    """Warm up, then time the case's contenders in interleaved rounds; check every output the same way."""
    device = x.device
    rows: dict[str, Row] = {}
    runners: dict[str, tuple[Runner, int]] = {}
    for contender in case.contenders:
        name = contender.implementation
        row = Row(case.attack, name, same_budget=contender.same_budget, note=contender.note)
        rows[name] = row
        n = len(x) if contender.max_samples is None else min(contender.max_samples, len(x))
        try:
            runner = contender.build(model)
            _seed()
            runner(model, x[:WARMUP_SAMPLES], y[:WARMUP_SAMPLES])
        except Exception as error:  # a reference failing is reported, not fatal
            row.error = f"{type(error).__name__}: {error}".splitlines()[0][:120]
            continue
        runners[name] = (runner, n)
        row.samples = n

    outputs: dict[str, tuple[Tensor, Tensor | None]] = {}
    started = time.perf_counter()
    for round_index in range(repeats):
        for name, (runner, n) in list(runners.items()):
            _seed()
            _sync(device)
            start = time.perf_counter()
            try:
                outputs[name] = runner(model, x[:n], y[:n])
            except Exception as error:
                rows[name].error = f"{type(error).__name__}: {error}".splitlines()[0][:120]
                runners.pop(name)
                continue
            _sync(device)
            rows[name].seconds = min(rows[name].seconds, time.perf_counter() - start)
            rows[name].runs += 1
        elapsed = time.perf_counter() - started
        if elapsed * (round_index + 2) / (round_index + 1) > ROUND_CAP_S:
            break

    for name, (x_adv, claimed) in outputs.items():
        row, n = rows[name], len(x_adv)
        broken, flipped, size = broken_within_budget(model, x[:n], y[:n], x_adv, case.eps, case.norm)
        row.broken = broken
        row.robust = 1.0 - broken.float().mean().item()
        if case.minimum_norm:
            row.flipped = flipped.float().mean().item()
            if flipped.any():
                row.median_norm = size[flipped].median().item()
        if claimed is not None and not torch.equal(claimed.cpu(), broken.cpu()):
            disagree = int((claimed.cpu() != broken.cpu()).sum())
            row.note = f"its own success flags disagree with the independent check on {disagree} samples"
    return list(rows.values())


def _fmt(value: float, spec: str) -> str:
    """A number, or '-' for nan / inf."""
    return "-" if math.isnan(value) or math.isinf(value) else format(value, spec)


def report(case: Case, rows: list[Row]) -> None:
    """Print one attack's rows with its budget and notes."""
    print(f"\n{case.attack}: {case.budget}")
    ours = next((row for row in rows if row.implementation == "gauntlet" and not row.error), None)
    notes: list[str] = []
    for row in rows:
        if row.error:
            print(f"  {row.implementation:<14} failed: {row.error}")
            continue
        ratio = math.nan
        if ours is not None and row is not ours and row.same_budget:
            ratio = (row.seconds / row.samples) / (ours.seconds / ours.samples)
        mark = "" if row.same_budget else "*"
        print(
            f"  {row.implementation + mark:<14} {row.samples:>7} {row.seconds:>9.3f} {row.runs:>4} "
            f"{row.robust:>10.3f} {_fmt(row.flipped, '.3f'):>7} {_fmt(row.median_norm, '.4f'):>11} "
            f"{_fmt(ratio, '.2f'):>11}"
        )
        if row.note:
            notes.append(f"{row.implementation}: {row.note}")
        if ours is not None and row is not ours and row.samples < ours.samples and ours.broken is not None:
            same = 1.0 - ours.broken[: row.samples].float().mean().item()
            notes.append(
                f"{row.implementation} ran on the first {row.samples}; gauntlet's robust acc on them: "
                f"{same:.3f}"
            )
    for note in notes:
        print(f"    - {note}")


def summary(results: list[tuple[Case, list[Row]]]) -> None:
    """Print Gauntlet against the fastest reference of each attack at the same budget."""
    print("\nGauntlet vs the fastest reference at the same budget (time ratio >1: Gauntlet is faster)")
    columns = (("attack", "<11"), ("fastest reference", "<18"), ("time ratio", ">10"))
    columns += (("robust ours", ">12"), ("robust theirs", ">14"))
    print("  " + " ".join(format(label, spec) for label, spec in columns))
    for case, rows in results:
        ours = next((row for row in rows if row.implementation == "gauntlet" and not row.error), None)
        references = [
            row for row in rows if row.implementation != "gauntlet" and not row.error and row.same_budget
        ]
        if ours is None or not references:
            print(f"  {case.attack:<11} {'(no comparison)':<18}")
            continue
        fastest = min(references, key=lambda row: row.seconds / row.samples)
        ratio = (fastest.seconds / fastest.samples) / (ours.seconds / ours.samples)
        label = fastest.implementation + ("" if fastest.samples == ours.samples else f" ({fastest.samples})")
        print(f"  {case.attack:<11} {label:<18} {ratio:>10.2f} {ours.robust:>12.3f} {fastest.robust:>14.3f}")


def main() -> None:
    """Parse arguments, train the model, run every comparison and print the tables."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=None, help="default 200 (64 with --quick)")
    parser.add_argument("--quick", action="store_true", help="64 samples and smaller budgets")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds at most (fewer when slow)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: as is)")
    parser.add_argument(
        "--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument(
        "--only", nargs="+", choices=["apgd", "square", "deepfool", "fab", "cw", "autoattack"], default=None
    )
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    budgets = QUICK if args.quick else FULL
    samples = args.samples if args.samples is not None else (64 if args.quick else 200)

    model = train_digits_model("small-cnn", epochs=15, seed=0).eval().to(device)
    x, y, looked_at = clean_correct_digits(samples, model)
    x, y = x.to(device), y.to(device)
    print(
        f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
        f"model digits small-cnn, {len(x)} clean-correct of the first {looked_at} digits-test samples, "
        f"{'quick' if args.quick else 'full'} budgets, best of up to {args.repeats} runs"
    )
    print(
        f"\n  {'implementation':<14} {'samples':>7} {'seconds':>9} {'runs':>4} {'robust acc':>10} "
        f"{'flipped':>7} {'median norm':>11} {'theirs/ours':>11}"
    )
    results: list[tuple[Case, list[Row]]] = []
    for case in cases(budgets):
        if args.only is not None and case.attack not in args.only:
            continue
        rows = measure(case, model, x, y, args.repeats)
        report(case, rows)
        results.append((case, rows))
    summary(results)
    print(
        "\n(robust acc: share of the attacked samples not broken within the budget, lower = stronger "
        "attack;\n flipped: share misclassified at any perturbation size, and median norm: of those\n"
        " perturbations, both for minimum-norm attacks only (run unbounded);"
        "\n * = a different budget, not in the ratios)"
    )


if __name__ == "__main__":
    main()
