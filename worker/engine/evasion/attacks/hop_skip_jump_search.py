"""The machinery of one HopSkipJump run: start search, boundary searches, gradient estimates, steps.

`worker.engine.evasion.attacks.hop_skip_jump.HopSkipJump` documents the algorithm and is the only caller.
"""

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from worker.engine.evasion.attacks.norms import Norm, clamp_range, normalize_l2, perturbation_norm

if TYPE_CHECKING:
    from worker.engine.evasion.attacks.hop_skip_jump import HopSkipJump

# Float elements per model call and per block of random directions: memory stays flat.
_BLOCK_ELEMENTS = 1 << 22
_MAX_CALL_SAMPLES = 8192
# Precision of the blend coefficient when shrinking a random-noise start (reference: 0.001).
_INIT_TOLERANCE = 1e-3
# Step-size halvings tried per iteration before a sample waits for the next gradient estimate.
_MAX_HALVINGS = 50


class BoundaryWalk:
    """One HopSkipJump run on a batch: per-sample state, query accounting and the algorithm's phases."""

    def __init__(
        self, attack: "HopSkipJump", model: nn.Module, x: Tensor, labels: Tensor, generator: torch.Generator
    ) -> None:
        """Set up the per-sample bookkeeping and the random streams (start search, directions)."""
        self.attack, self.model, self.x, self.labels = attack, model, x, labels
        self.norm: Norm = attack.norm
        self.dims = max(1, x[0].numel()) if len(x) else 1
        exponent = 1.5 if self.norm == "l2" else 2.0
        self.theta = attack.gamma / self.dims**exponent
        self.queries = torch.zeros(len(x), dtype=torch.long, device=x.device)
        seeds = torch.randint(0, 2**62, (2,), generator=generator, device=generator.device).tolist()
        self.start_stream = torch.Generator(device=generator.device).manual_seed(seeds[0])
        self.direction_stream = torch.Generator(device=generator.device).manual_seed(seeds[1])
        self.clean = labels.clone()

    def run(self) -> tuple[Tensor, Tensor]:
        """The whole attack: start, boundary search, then the gradient / step / search iterations."""
        x, attack = self.x, self.attack
        if len(x) == 0:
            return x.clone(), self.labels.clone()
        everyone = torch.ones(len(x), dtype=torch.bool, device=x.device)
        self.clean = self._ask(x, everyone.nonzero()[:, 0])
        best, best_pred = x.clone(), self.clean.clone()
        best_dist = torch.full((len(x),), torch.inf, device=x.device)
        start, start_pred, found = self._start(~self._hit(self.clean, self.labels))
        boundary, pred, post = self._to_boundary(start, start_pred, found)
        self._keep_best(boundary, pred, found, best, best_pred, best_dist)
        alive, dist = found.clone(), self._distance(boundary)
        width = attack.input_range[1] - attack.input_range[0]
        for t in range(1, attack.iterations + 1):
            scale = math.sqrt(self.dims) if self.norm == "l2" else self.dims
            delta = torch.full_like(dist, 0.1 * width) if t == 1 else scale * self.theta * post
            evals = self._evals(t, dist, alive)
            alive &= evals >= 1
            if not alive.any():
                break
            grad = self._gradient(boundary, evals, delta, alive)
            update = grad.sign() if self.norm == "linf" else grad
            stepped, stepped_pred, moved = self._step(boundary, update, dist / math.sqrt(t), alive)
            if moved.any():
                on_boundary, boundary_pred, stepped_dist = self._to_boundary(stepped, stepped_pred, moved)
                boundary[moved], pred[moved] = on_boundary[moved], boundary_pred[moved]
                post[moved] = stepped_dist[moved]
                dist = self._distance(boundary)
                self._keep_best(boundary, pred, moved, best, best_pred, best_dist)
        return best, best_pred

    def _hit(self, predictions: Tensor, labels: Tensor) -> Tensor:
        """The decision function: away from the true label, or onto the target."""
        return predictions == labels if self.attack.targeted else predictions != labels

    def _room(self, mask: Tensor) -> Tensor:
        """The samples of mask that still have a query left."""
        return mask & (self.queries < self.attack.max_queries)

    def _distance(self, points: Tensor) -> Tensor:
        """Per-sample distance to the clean inputs in the attack's norm (float64 bookkeeping)."""
        return perturbation_norm(points - self.x, self.norm).double()

    @torch.no_grad()
    def _ask(self, points: Tensor, owners: Tensor) -> Tensor:
        """Predicted labels of points; each point costs one query to its owner sample."""
        per_call = max(1, min(_MAX_CALL_SAMPLES, _BLOCK_ELEMENTS // self.dims))
        labels = [self.model(points[i : i + per_call]).argmax(dim=1) for i in range(0, len(points), per_call)]
        self.queries.index_add_(0, owners, torch.ones_like(owners))
        return torch.cat(labels) if labels else owners.clone()

    def _start(self, need: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """An adversarial starting point per sample in need: batch neighbours and random noise."""
        start, pred = self.x.clone(), self.clean.clone()
        found = torch.zeros_like(need)
        if self.attack.targeted:
            self._from_batch(need & ~found, start, pred, found)
        low, high = self.attack.input_range
        from_noise = torch.zeros_like(need)
        for _ in range(self.attack.init_size):
            searching = self._room(need & ~found)
            if not searching.any():
                break
            noise = torch.rand(self.x.shape, generator=self.start_stream, device=self.start_stream.device)
            noise = (noise.to(self.x.device, self.x.dtype) * (high - low) + low)[searching]
            index = searching.nonzero()[:, 0]
            labels = self._ask(noise, index)
            hit = self._hit(labels, self.labels[index])
            start[index[hit]], pred[index[hit]] = noise[hit], labels[hit]
            found[index[hit]], from_noise[index[hit]] = True, True
        if from_noise.any():
            self._shrink_noise(start, pred, from_noise)
        if not self.attack.targeted:
            self._from_batch(need & ~found, start, pred, found)
        return start, pred, found

    def _from_batch(self, wanted: Tensor, start: Tensor, pred: Tensor, found: Tensor) -> None:
        """Start from the nearest batch sample that the clean query shows on the adversarial side."""
        index = wanted.nonzero()[:, 0]
        if index.numel() == 0:
            return
        valid = self._hit(self.clean[None, :], self.labels[index][:, None])
        flat = self.x.flatten(1).float()
        gaps = torch.cdist(flat[index], flat, p=2.0 if self.norm == "l2" else math.inf)
        gaps = gaps.masked_fill(~valid, math.inf)
        nearest = gaps.argmin(dim=1)
        ok = torch.isfinite(gaps.gather(1, nearest[:, None])[:, 0])
        chosen, source = index[ok], nearest[ok]
        start[chosen], pred[chosen], found[chosen] = self.x[source], self.clean[source], True

    def _shrink_noise(self, start: Tensor, pred: Tensor, mask: Tensor) -> None:
        """Blend adversarial noise towards x: binary search on the blend coefficient to 0.001."""
        noise = start.clone()
        low = torch.zeros(len(start), dtype=torch.float64, device=start.device)
        high = torch.ones_like(low)
        while True:
            searching = self._room(mask & (high - low > _INIT_TOLERANCE))
            if not searching.any():
                break
            index = searching.nonzero()[:, 0]
            mid = (high[index] + low[index]) / 2
            labels = self._ask(self._blend(noise[index], index, mid), index)
            hit = self._hit(labels, self.labels[index])
            high[index] = torch.where(hit, mid, high[index])
            low[index] = torch.where(hit, low[index], mid)
            pred[index] = torch.where(hit, labels, pred[index])
        moved = (mask & (high < 1)).nonzero()[:, 0]
        start[moved] = self._blend(noise[moved], moved, high[moved])

    def _blend(self, points: Tensor, index: Tensor, alpha: Tensor) -> Tensor:
        """(1 - alpha) * x + alpha * points, per sample, inside the input range."""
        a = alpha.to(points.dtype).reshape((-1,) + (1,) * (points.dim() - 1))
        return clamp_range((1 - a) * self.x[index] + a * points, self.attack.input_range)

    def _project(self, points: Tensor, index: Tensor, alpha: Tensor) -> Tensor:
        """The point at coefficient alpha on the way from x to points (l2: blend; linf: clip to a box)."""
        if self.norm == "l2":
            return self._blend(points, index, alpha)
        a = alpha.to(points.dtype).reshape((-1,) + (1,) * (points.dim() - 1))
        origin = self.x[index]
        return torch.minimum(torch.maximum(points, origin - a), origin + a)

    def _to_boundary(
        self, points: Tensor, points_pred: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Binary search from adversarial points towards x: (boundary points, labels, distances before)."""
        before = self._distance(points)
        if self.norm == "l2":
            high = torch.ones_like(before)
            threshold = torch.full_like(before, self.theta)
        else:
            high = before.clone()
            threshold = (before * self.theta).clamp(max=self.theta)
        low, pred = torch.zeros_like(high), points_pred.clone()
        moved = torch.zeros_like(mask)
        while True:
            searching = self._room(mask & (high - low > threshold))
            if not searching.any():
                break
            index = searching.nonzero()[:, 0]
            mid = (high[index] + low[index]) / 2
            labels = self._ask(self._project(points[index], index, mid), index)
            hit = self._hit(labels, self.labels[index])
            high[index] = torch.where(hit, mid, high[index])
            low[index] = torch.where(hit, low[index], mid)
            pred[index] = torch.where(hit, labels, pred[index])
            moved[index] |= hit
        out = points.clone()
        index = moved.nonzero()[:, 0]
        out[index] = self._project(points[index], index, high[index])
        return out, pred, before

    def _evals(self, t: int, dist: Tensor, alive: Tensor) -> Tensor:
        """Directions for the gradient estimate at iteration t, cut to leave room for the step and search."""
        wanted = min(int(self.attack.init_evals * math.sqrt(t)), self.attack.max_evals)
        width = torch.ones_like(dist) if self.norm == "l2" else dist.clamp_min(1.0)
        search = torch.ceil(torch.log2(width / self.theta)).long().clamp_min(0)
        left = self.attack.max_queries - self.queries - search - 1
        return torch.where(alive, left.clamp(min=0, max=wanted), torch.zeros_like(left))

    def _gradient(self, base: Tensor, evals: Tensor, delta: Tensor, alive: Tensor) -> Tensor:
        """Unit estimate of the boundary normal at base (pointing to the adversarial side), per sample.

        The mean of sign-weighted unit directions with the mean sign subtracted (the reference's
        baseline), accumulated over blocks of directions so that memory stays flat.
        """
        index = alive.nonzero()[:, 0]
        counts, center = evals[index], base[index]
        pixels = (1,) * (base.dim() - 1)
        radius = delta[index].to(base.dtype).reshape((-1, 1, *pixels))
        weighted, total = torch.zeros_like(center), torch.zeros_like(center)
        positives = torch.zeros_like(counts)
        per_block = max(1, _BLOCK_ELEMENTS // (len(index) * self.dims))
        stream, most = self.direction_stream, int(counts.max())
        for first in range(0, most, per_block):
            shape = (len(index), min(per_block, most - first), *base.shape[1:])
            if self.norm == "l2":
                noise = torch.randn(shape, generator=stream, device=stream.device)
            else:
                noise = torch.rand(shape, generator=stream, device=stream.device) * 2 - 1
            noise = noise.to(base.device, base.dtype)
            noise = noise / noise.flatten(2).norm(dim=2).clamp_min(1e-12).reshape((*shape[:2], *pixels))
            points = clamp_range(center[:, None] + radius * noise, self.attack.input_range)
            directions = (points - center[:, None]) / radius
            valid = torch.arange(first, first + shape[1], device=base.device)[None] < counts[:, None]
            owners = index[:, None].expand(-1, shape[1])[valid]
            hit = self._hit(self._ask(points[valid], owners), self.labels[owners])
            signs = torch.zeros(valid.shape, dtype=base.dtype, device=base.device)
            signs[valid] = hit.to(base.dtype) * 2 - 1
            weighted += (signs.reshape((*shape[:2], *pixels)) * directions).sum(dim=1)
            total += (valid.to(base.dtype).reshape((*shape[:2], *pixels)) * directions).sum(dim=1)
            positives += (signs > 0).sum(dim=1)
        n = counts.to(base.dtype).reshape((-1, *pixels))
        mean_sign = (2 * positives - counts).to(base.dtype).reshape(n.shape) / n
        grad = (weighted - mean_sign * total) / n
        all_hit, none_hit = (positives == counts).reshape(n.shape), (positives == 0).reshape(n.shape)
        grad = torch.where(all_hit, total / n, torch.where(none_hit, -total / n, grad))
        out = torch.zeros_like(base)
        out[index] = normalize_l2(grad)
        return out

    def _step(
        self, base: Tensor, update: Tensor, size: Tensor, alive: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Geometric progression: halve the step from base along update until the result is adversarial."""
        stepped, pred = base.clone(), self.clean.clone()
        moved = torch.zeros_like(alive)
        searching, size = alive.clone(), size.clone()
        for _ in range(_MAX_HALVINGS):
            searching = self._room(searching)
            if not searching.any():
                break
            index = searching.nonzero()[:, 0]
            scale = size[index].to(base.dtype).reshape((-1,) + (1,) * (base.dim() - 1))
            candidate = clamp_range(base[index] + scale * update[index], self.attack.input_range)
            labels = self._ask(candidate, index)
            hit = self._hit(labels, self.labels[index])
            stepped[index[hit]], pred[index[hit]], moved[index[hit]] = candidate[hit], labels[hit], True
            searching[index[hit]] = False
            size[index[~hit]] /= 2
        return stepped, pred, moved

    def _keep_best(
        self, points: Tensor, pred: Tensor, mask: Tensor, best: Tensor, best_pred: Tensor, best_dist: Tensor
    ) -> None:
        """Record per sample the closest adversarial point seen so far."""
        dist = self._distance(points).to(best_dist.dtype)
        better = mask & (dist < best_dist)
        best[better], best_pred[better], best_dist[better] = points[better], pred[better], dist[better]
