"""Square Attack (Andriushchenko et al.): score-based black-box random search in linf and l2."""

import functools
import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional

from app.schemas.evasion import SquareParams
from worker.engine.evasion.attacks.base import Attack
from worker.engine.evasion.attacks.norms import clamp_range
from worker.engine.evasion.attacks.square_l2 import l2_init, l2_proposal, random_signs
from worker.engine.evasion.attacks.square_memo import RejectedProposals

# Iterations (of the paper's 10000) after which p halves; rescaled to the query budget.
P_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
# Sign vectors drawn per linf proposal; the first that changes the window is used (see _propose).
_SIGN_DRAWS = 32
_UNCHANGED = 1e-7


def p_schedule(p_init: float, iteration: int, budget: int) -> float:
    """Fraction of pixels a window covers at an iteration: p_init halved at each breakpoint passed."""
    scaled = int(iteration / budget * 10000)
    return float(p_init / 2 ** sum(scaled > point for point in P_HALVINGS))


@functools.lru_cache(maxsize=64)
def _windows(side: int, height: int, width: int, device: torch.device) -> Tensor:
    """Every side x side window of an image, by corner (row * (width - side + 1) + column): [K, 1, H, W]."""
    grid_h, grid_w = torch.arange(height, device=device), torch.arange(width, device=device)
    corners_h = torch.arange(height - side + 1, device=device)[:, None]
    corners_w = torch.arange(width - side + 1, device=device)[:, None]
    in_rows = (grid_h >= corners_h) & (grid_h < corners_h + side)
    in_cols = (grid_w >= corners_w) & (grid_w < corners_w + side)
    return (in_rows[:, None, :, None] & in_cols[None, :, None, :]).reshape(-1, 1, height, width)


class SquareAttack(Attack):
    """Square Attack: random search over square-shaped updates, using only the model's logits.

    Paper: Andriushchenko, Croce, Flammarion and Hein, "Square Attack: a query-efficient black-box
    adversarial attack via random search", ECCV 2020 (reference code: max-andr/square-attack).

    Threat model: black-box, score-based (one forward pass per query, logits only, no gradients;
    runs on onnxruntime through `QueryOnlyModel`); perturbation bounded by eps in linf or l2, every
    query clamped into the input range. Inputs must be images [C, H, W] with H, W >= 2: flat or
    other inputs are refused with a ValueError (the updates are square windows).

    The loss minimised is the margin logit_y - max_{k != y} logit_k (untargeted) or the
    cross-entropy to the target (targeted, as in the paper). Each iteration proposes one update
    per sample still unbroken and keeps it if the loss decreases (or the sample becomes
    adversarial); broken samples stop querying.
      linf: start from vertical stripes (+-eps per column and channel); a proposal sets an s x s
        window (s = round(sqrt(p * H * W)), between 1 and min(H, W) - 1, one window per sample) to
        +-eps per channel, redrawing the signs while they would change nothing.
      l2: start from a grid of centred-square bumps with random signs scaled to norm eps; a
        proposal (two windows shared by the batch, side s made odd and at least 3) adds the
        centred-square pattern to window 1, empties window 2 and moves its mass and the unused
        budget into window 1, then rescales the perturbation to norm eps.
    p follows the paper's schedule: p_init, halved after iterations 10, 50, 200, 500, 1000, 2000,
    4000, 6000 and 8000 of 10000, rescaled to the query budget. Window corners are uniform over
    every position inside the image (as in the paper; the reference code never reaches the last
    row and column, which matters on small images).

    Parameters, from the spec (`SquareParams`, which holds their defaults and limits):
        norm: "linf" or "l2".
        targeted: False or True.
        queries: query budget per sample and restart (the initial point costs one query); published
            n_queries, its default the authors' AutoAttack setting.
        p_init: initial fraction of pixels changed by a window (its default is the AutoAttack,
            torchattacks and ART default; the authors' script suggests 0.05 (linf) and 0.1 (l2) for
            standard ImageNet models and more for robust ones).
        restarts: later restarts only attack samples not yet broken; per sample the first success is
            kept, otherwise the lowest loss.
    Keyword argument: input_range, (low, high), default (0.0, 1.0).
    eps is given per call to `run`. Cost: at most queries * restarts forward passes per sample;
    `run` reports the queries spent per sample.
    """

    spec_type = SquareParams

    def __init__(self, spec: SquareParams, *, input_range: tuple[float, float] = (0.0, 1.0)) -> None:
        """Read the query budget and the schedule from the spec."""
        super().__init__(spec, input_range=input_range)
        self.queries = spec.queries
        self.p_init = spec.p_init
        self.restarts = spec.restarts

    def params(self) -> dict[str, Any]:
        """Effective parameters, the loss and the p schedule included."""
        return {
            **super().params(),
            "queries": self.queries,
            "p_init": self.p_init,
            "restarts": self.restarts,
            "loss": "cross_entropy" if self.targeted else "margin",
            "p_schedule": "p_init halved after 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 of 10000",
        }

    def _attack(
        self, model: nn.Module, x: Tensor, labels: Tensor, *, eps: float, generator: torch.Generator
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Run the restarts; returns (x_adv, predictions, queries per sample)."""
        if x.dim() != 4 or x.shape[2] < 2 or x.shape[3] < 2:
            raise ValueError(
                "the Square Attack needs image inputs of shape [C, H, W] with H and W at least 2, got "
                f"per-sample shape {list(x.shape[1:])}; use hopskipjump for other inputs"
            )
        if len(x) == 0:
            empty = torch.zeros(0, dtype=torch.long, device=x.device)
            return x.clone(), empty, empty.clone()
        if eps == 0.0:
            _, predictions = self._loss(model, x, labels)
            return x.clone(), predictions, torch.ones(len(x), dtype=torch.long, device=x.device)
        best, loss, predictions, queries = self._search(model, x, labels, eps, generator)
        for _ in range(1, self.restarts):
            active = (~self._hit(predictions, labels)).nonzero()[:, 0]
            if active.numel() == 0:
                break
            adv, new_loss, new_predictions, spent = self._search(
                model, x[active], labels[active], eps, generator
            )
            queries[active] += spent
            better = self._hit(new_predictions, labels[active]) | (new_loss < loss[active])
            chosen = active[better]
            best[chosen] = adv[better]
            loss[chosen] = new_loss[better]
            predictions[chosen] = new_predictions[better]
        return best, predictions, queries

    def _search(
        self, model: nn.Module, x: Tensor, labels: Tensor, eps: float, generator: torch.Generator
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One restart: (best inputs, their loss, their predictions, queries per sample)."""
        x_best = self._init(x, eps, generator)
        loss, predictions = self._loss(model, x_best, labels)
        queries = torch.ones(len(x), dtype=torch.long, device=x.device)
        # Fixed for the whole search (linf): the two values a window coordinate can take.
        bounds = torch.stack(
            (clamp_range(x + eps, self.input_range), clamp_range(x - eps, self.input_range)), dim=1
        )
        memo = None
        if self.skip_repeats and self.norm == "linf":
            memo = RejectedProposals(len(x), x.shape[1], x.shape[2], x.shape[3], x.device)
        for iteration in range(self.queries - 1):
            active = (~self._hit(predictions, labels)).nonzero()[:, 0]
            if active.numel() == 0:
                break
            p = p_schedule(self.p_init, iteration, self.queries)
            x_new, window = self._propose(x, x_best, active, eps, p, generator, bounds)
            queries[active] += 1
            fresh = None if memo is None or window is None else memo.fresh(active, *window)
            if fresh is not None:  # proposals rejected at the same best point are not asked again
                active, x_new = active[fresh], x_new[fresh]
                if not active.numel():
                    continue
            labels_active = labels[active]
            new_loss, new_predictions = self._loss(model, x_new, labels_active)
            better = (new_loss < loss[active]) | self._hit(new_predictions, labels_active)
            chosen = active[better]
            x_best[chosen] = x_new[better]
            loss[chosen] = new_loss[better]
            predictions[chosen] = new_predictions[better]
            if memo is not None:
                memo.forget(chosen)
        return x_best, loss, predictions, queries

    # Skip the forward pass of a linf proposal already rejected at the same best point (same search
    # state, see square_memo); for deterministic models only: AutoAttack's standard version sets it.
    skip_repeats = False

    def _init(self, x: Tensor, eps: float, generator: torch.Generator) -> Tensor:
        """Starting point: vertical stripes (linf) or the bump grid (l2), inside the ball and range."""
        if self.norm == "l2":
            return l2_init(x, eps, self.input_range, generator)
        n, channels, _, width = x.shape
        stripes = random_signs((n, channels, 1, width), x, generator) * eps
        return clamp_range(x + stripes, self.input_range)

    def _propose(
        self,
        x: Tensor,
        x_best: Tensor,
        active: Tensor,
        eps: float,
        p: float,
        generator: torch.Generator,
        bounds: Tensor,
    ) -> tuple[Tensor, tuple[int, Tensor, Tensor, Tensor] | None]:
        """Candidates for the active samples (random draws are made for the whole batch, then indexed).

        bounds: x + eps and x - eps clamped into the input range, stacked on dim 1 (linf). Also
        returns what a linf proposal is made of (side, window rows and columns, signs), else None.
        """
        n, channels, height, width = x.shape
        if self.norm == "l2":
            signs = random_signs((n, channels, 1, 1), x, generator)[active]
            return l2_proposal(x[active], x_best[active], signs, eps, p, self.input_range, generator), None
        side = min(max(int(round(math.sqrt(p * height * width))), 1), min(height, width) - 1)
        device = generator.device
        rows = torch.randint(0, height - side + 1, (n,), generator=generator, device=device)
        cols = torch.randint(0, width - side + 1, (n,), generator=generator, device=device)
        rows, cols = rows.to(x.device)[active], cols.to(x.device)[active]
        window = _windows(side, height, width, x.device)[rows * (width - side + 1) + cols]
        best, bounds_active = x_best[active], bounds[active]
        # The reference redraws a window's signs while they change no coordinate of x_best; drawing
        # _SIGN_DRAWS sign vectors at once and keeping the first that changes something samples
        # from the same distribution in one pass. changes[:, 0]: +eps changes a channel's window.
        changes = (((bounds_active - best[:, None]).abs() >= _UNCHANGED) & window[:, None]).flatten(3).any(3)
        draws = random_signs((n, _SIGN_DRAWS, channels), x, generator)[active]
        works = ((draws > 0) & changes[:, None, 0]) | ((draws < 0) & changes[:, None, 1])
        first = works.any(dim=2).to(torch.uint8).argmax(dim=1)
        plus, minus = bounds_active[:, 0], bounds_active[:, 1]
        signs = draws[torch.arange(len(active), device=x.device), first][:, :, None, None]
        return torch.where(window, torch.where(signs > 0, plus, minus), best), (side, rows, cols, signs)

    @torch.no_grad()
    def _loss(self, model: nn.Module, x_adv: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """One query per sample: the loss to minimise and the predicted labels."""
        logits = model(x_adv)
        if self.targeted:
            loss = functional.cross_entropy(logits.float(), labels, reduction="none")
        else:
            own = logits.gather(1, labels[:, None])[:, 0]
            others = logits.scatter(1, labels[:, None], -torch.inf).amax(dim=1)
            loss = (own - others).float()
        return loss, logits.argmax(dim=1)

    def _hit(self, predictions: Tensor, labels: Tensor) -> Tensor:
        """Broken samples: prediction away from the true label, or onto the target."""
        return predictions == labels if self.targeted else predictions != labels
