"""A model behind an ordered list of input transforms, white-box (BPDA, EOT) and black-box.

The forward pass always runs the real transforms. What the backward pass sees is the attacker's
choice (Athalye, Carlini and Wagner, "Obfuscated Gradients Give a False Sense of Security", ICML 2018):
- gradient "bpda": non-differentiable transforms are replaced on the backward pass by their
  differentiable approximation (the identity by default: Backward Pass Differentiable Approximation);
- gradient "naive": autograd's own gradient, which is zero for a quantizer (JPEG, bit depth) almost
  everywhere: the gradient a defense-unaware attacker gets, and the one that makes such defenses
  look robust;
- fixed_draw (the naive attacker of a randomized defense, Xie et al.'s "single-pattern" attack): every
  call reuses the same random draw, so the attack optimises against one pattern of the randomness;
- eot_draws > 1 (for randomized transforms): whenever a gradient is being computed, the batch is run
  through that many independent random draws and the logits are averaged (Expectation over
  Transformation), so every gradient attack averages its gradient over the randomness. Without a
  gradient (predictions) one draw runs, as the deployed defense does.
"""

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from app.schemas.defense_transforms import TransformParams
from worker.engine.defense.preprocessing.transforms import InputRange, Transform, build_transform
from worker.engine.defense.spec import SpecError
from worker.engine.sample_streams import Generators, fixed_generators, pass_generators
from worker.engine.seeding import seeded_generator

GradientMode = Literal["bpda", "naive"]
DEFAULT_EOT_DRAWS = 10


def build_transforms(
    specs: Sequence[TransformParams],
    sample_shape: tuple[int, ...] | None = None,
    input_range: InputRange = (0.0, 1.0),
) -> list[Transform[Any]]:
    """The transforms of typed specs, checked against the input shape and range when given."""
    if not specs:
        raise SpecError("a preprocessing defense needs at least one transform")
    transforms = []
    for spec in specs:
        transform = build_transform(spec)
        if sample_shape is not None:
            try:
                transform.check_input(tuple(sample_shape), input_range)
            except ValueError as exc:
                raise SpecError(str(exc)) from exc
        transforms.append(transform)
    return transforms


# The random streams of the attacker's views, of the deployed defense as judge, and of the deployed defense
# as black-box attacks query it (apart: a verdict never reuses a draw the attack searched with).
VIEW_STREAM, DEPLOYED_STREAM, SEARCH_STREAM = 0x5EED, 0xD3B1, 0xD3B2


class Draws:
    """Where a randomized model's draws come from: per sample inside a sample batch (`sample_streams`),
    else one sequential stream from the seed (a fixed draw restarts it at every pass)."""

    def __init__(self, seed: int, stream: int, fixed: bool = False) -> None:
        self.seed, self.stream, self.fixed = seed, stream, fixed
        self._sequential: dict[str, torch.Generator] = {}

    def reseed(self, seed: int) -> None:
        """Restart every stream from seed."""
        self.seed, self._sequential = seed, {}

    def for_pass(self, device: torch.device, rows: int) -> Generators:
        """The generators of one pass over `rows` samples."""
        keyed = (fixed_generators if self.fixed else pass_generators)(device, self.seed, self.stream, rows)
        if keyed is not None:
            return keyed
        key = str(device)
        if key not in self._sequential or self.fixed:
            self._sequential[key] = seeded_generator(device, self.seed, self.stream)
        return self._sequential[key]


def apply_randomized(
    transform: Transform[Any], x: Tensor, input_range: InputRange, generators: Generators
) -> Tensor:
    """A transform on a pass of draws-major rows ([draws * B, ...]) whose B samples each have a generator
    (or one generator for the pass): sample j's draws come from its own generator, in draw order, and the
    transform then runs once on the whole pass."""
    if isinstance(generators, torch.Generator):
        return transform.apply(x, input_range, generators)
    if not transform.randomized:
        return transform.apply(x, input_range, None)
    samples = len(generators)
    per_sample = [transform.draw(len(x) // samples, x, generator) for generator in generators]
    drawn = torch.stack(per_sample, dim=1)
    return transform.apply_drawn(x, input_range, drawn.reshape(len(x), *drawn.shape[2:]))


class DefendedPipeline(nn.Module):
    """`base` behind `transforms`: the real transforms forward, BPDA or naive gradients, EOT over draws.

    Random draws are keyed per sample and pass inside a sample batch (`worker.engine.sample_streams`),
    else they come from a sequential generator seeded from `seed`; `reseed` restarts it.
    """

    def __init__(
        self,
        base: nn.Module,
        transforms: Sequence[Transform[Any]],
        *,
        input_range: InputRange = (0.0, 1.0),
        gradient: GradientMode = "bpda",
        eot_draws: int = 1,
        seed: int = 0,
        fixed_draw: bool = False,
        stream: int = VIEW_STREAM,
    ) -> None:
        super().__init__()
        if gradient not in ("bpda", "naive") or eot_draws < 1:
            raise ValueError(
                f"gradient must be 'bpda' or 'naive' and eot_draws >= 1, got {gradient}, {eot_draws}"
            )
        self.base = base
        self.transforms = list(transforms)
        self.input_range = (float(input_range[0]), float(input_range[1]))
        self.gradient: GradientMode = gradient
        self.eot_draws = int(eot_draws)
        self.randomized = any(t.randomized for t in self.transforms)
        self.fixed_draw = bool(fixed_draw)
        self.draws = Draws(seed, stream, fixed=self.fixed_draw)

    def reseed(self, seed: int) -> None:
        """Restart the random stream from seed."""
        self.draws.reseed(seed)

    def transform(self, x: Tensor, samples: int | None = None) -> Tensor:
        """One draw of the transforms per row (x holds draws-major copies of `samples` samples, default
        len(x)), with this pipeline's gradient mode on the backward pass."""
        generators: Generators | None = None
        if self.randomized:
            generators = self.draws.for_pass(x.device, len(x) if samples is None else samples)
        for transform in self.transforms:
            if transform.differentiable:
                x = self._transform_one(transform, x, generators)
                continue
            with torch.no_grad():
                real = self._transform_one(transform, x.detach(), generators)
            if self.gradient == "naive":
                x = real + 0.0 * x
            else:
                approximation = transform.approximate(x, self.input_range)
                x = approximation + (real - approximation).detach()
        return x

    def _transform_one(self, transform: Transform[Any], x: Tensor, generators: Generators | None) -> Tensor:
        """One transform of a pass (deterministic ones see no generator)."""
        if generators is None:
            return transform.apply(x, self.input_range, None)
        return apply_randomized(transform, x, self.input_range, generators)

    def forward(self, x: Tensor) -> Tensor:
        """Logits: one draw, or with a gradient being computed the mean over eot_draws draws."""
        draws = self.eot_draws if self.randomized and torch.is_grad_enabled() and x.requires_grad else 1
        if draws == 1:
            return self.base(self.transform(x))
        repeated = x.repeat(draws, *([1] * (x.dim() - 1)))
        logits = self.base(self.transform(repeated, len(x)))
        return logits.reshape(draws, len(x), *logits.shape[1:]).mean(dim=0)


def defended_module(
    base: nn.Module,
    specs: Sequence[TransformParams],
    *,
    input_range: InputRange = (0.0, 1.0),
    eot_draws: int | None = None,
    seed: int = 0,
) -> DefendedPipeline:
    """The white-box defended model: BPDA on the backward pass, EOT over draws for random transforms.

    This is what evasion jobs attack for a defended model by default: any gradient attack run on it is
    adaptive. eot_draws defaults to DEFAULT_EOT_DRAWS when a transform is randomized, else 1.
    """
    transforms = build_transforms(specs, None, input_range)
    if eot_draws is None:
        eot_draws = DEFAULT_EOT_DRAWS if any(t.randomized for t in transforms) else 1
    return DefendedPipeline(base, transforms, input_range=input_range, eot_draws=eot_draws, seed=seed)


def defended_classifier(
    classify: Callable[[np.ndarray], np.ndarray],
    specs: Sequence[TransformParams],
    *,
    input_range: InputRange = (0.0, 1.0),
    seed: int = 0,
    stream: int | None = None,
) -> Callable[[np.ndarray], np.ndarray]:
    """The black-box defended model: the transforms (one draw) in front of a NumPy classifier; its draws
    (stream DEPLOYED_STREAM unless given) are keyed per sample inside a sample batch."""
    transforms = build_transforms(specs, None, input_range)
    draws = Draws(seed, DEPLOYED_STREAM if stream is None else stream)
    randomized = any(t.randomized for t in transforms)
    low, high = float(input_range[0]), float(input_range[1])

    def classify_defended(x: np.ndarray) -> np.ndarray:
        batch = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32))
        generators = draws.for_pass(batch.device, len(batch)) if randomized else None
        with torch.no_grad():
            for transform in transforms:
                if generators is None:
                    batch = transform.apply(batch, (low, high), None)
                else:
                    batch = apply_randomized(transform, batch, (low, high), generators)
        return classify(np.ascontiguousarray(batch.numpy(), dtype=np.float32))

    return classify_defended
