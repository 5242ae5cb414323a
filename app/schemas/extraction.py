"""The extraction kind: the victim's interface, attacks, surrogate, defenses, detection and transfer."""

import copy
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.schemas.common import Eps, JobSpecBase, Norm, ResourceId
from app.schemas.evasion import PgdParams, PgdStepSize
from app.schemas.resources import ARCHITECTURE_NAMES

MAX_BUDGET = 1_000_000
SYNTHETIC_UNIFORM = "synthetic:uniform"


class _Closed(BaseModel):
    """A closed schema: unknown fields are a 422."""

    model_config = ConfigDict(extra="forbid")


class VictimOutputParams(_Closed):
    """What the victim's prediction interface returns: all probabilities, the top k, or the label only;
    optionally rounded to `decimals`."""

    kind: Literal["probabilities", "top_k", "label"] = "probabilities"
    top_k: Annotated[int, Field(ge=1, le=100_000)] | None = Field(default=None, description="For kind top_k.")
    decimals: Annotated[int, Field(ge=0, le=8)] | None = Field(default=None, description="Round the scores.")

    @model_validator(mode="after")
    def _check(self) -> Self:
        """top_k only for kind top_k (and required there); no rounding of labels."""
        if (self.kind == "top_k") != (self.top_k is not None):
            raise ValueError("top_k is required for kind 'top_k' and only for it")
        if self.kind == "label" and self.decimals is not None:
            raise ValueError("decimals round scores; a label-only interface returns none")
        return self


class _AttackSpec(_Closed):
    """An extraction attack's parameters and facts: pool samples it needs, work besides its queries."""

    # True when every query is a pool sample drawn without replacement (budget <= pool size).
    draws_from_pool: ClassVar[bool] = True

    def pool_need(self, budget: int) -> int:
        """The fewest pool samples the attack needs for a budget."""
        return budget if self.draws_from_pool else 1

    def work_units(self, budget: int, epochs: int) -> float:
        """Work besides the queries (intermediate training), in trained samples x epochs."""
        return 0.0


class KnockoffParams(_AttackSpec):
    """Knockoff Nets (Orekondy et al., CVPR 2019); with labels only, strategy random is CopycatCNN
    (Correia-Silva et al., 2018). Defaults: strategy random; adaptive: reward all, 10 clusters, bandit
    learning rate 0.1, 32 queries per bandit step, 1 online epoch."""

    name: Literal["knockoff"]
    strategy: Literal["random", "adaptive"] = "random"
    reward: Literal["cert", "div", "loss", "all"] = "all"
    n_clusters: Annotated[int, Field(ge=1, le=1000)] = 10
    bandit_lr: Annotated[float, Field(gt=0, le=100)] = 0.1
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 32
    online_epochs: Annotated[int, Field(ge=1, le=50)] = 1

    def work_units(self, budget: int, epochs: int) -> float:
        """The adaptive policy's online surrogate trains on each batch."""
        return float(budget * self.online_epochs) if self.strategy == "adaptive" else 0.0


class JacobianParams(_AttackSpec):
    """Jacobian-based augmentation (Papernot et al., AsiaCCS 2017). Defaults: 150 seeds from the pool, 6
    rounds, lambda 0.1 with its sign flipped every 3 rounds; reservoir sampling once the budget binds."""

    model_config = ConfigDict(extra="forbid", serialize_by_alias=True)
    draws_from_pool: ClassVar[bool] = False
    name: Literal["jacobian"]
    seed_size: Annotated[int, Field(ge=1, le=MAX_BUDGET)] = 150
    rounds: Annotated[int, Field(ge=0, le=30)] = 6
    step: Annotated[float, Field(gt=0, allow_inf_nan=False)] = Field(default=0.1, alias="lambda")
    flip_period: Annotated[int, Field(ge=1, le=100)] = 3

    def pool_need(self, budget: int) -> int:
        """The seed set comes from the pool; the rest is synthesised."""
        return min(self.seed_size, budget)

    def work_units(self, budget: int, epochs: int) -> float:
        """One surrogate per round on a set that doubles: about twice the budget, times epochs."""
        return float(2 * budget * epochs)


class ActiveParams(_AttackSpec):
    """ActiveThief-style active learning (Pal et al., AAAI 2020). Defaults: uncertainty selection, 5
    rounds, a random 10% of the budget first."""

    name: Literal["active"]
    selection: Literal["uncertainty", "kcenter"] = "uncertainty"
    rounds: Annotated[int, Field(ge=1, le=100)] = 5
    seed_fraction: Annotated[float, Field(gt=0, le=1)] = 0.1

    def work_units(self, budget: int, epochs: int) -> float:
        """One surrogate per round on a growing set: about half the budget per round, times epochs."""
        return float(self.rounds * budget * epochs / 2)


ExtractionAttackSpec = KnockoffParams | JacobianParams | ActiveParams
ExtractionAttack = Annotated[ExtractionAttackSpec, Field(discriminator="name")]


class _DefenseSpec(_Closed):
    """An output-policy defense's spec; its facts: whether the top label provably never changes, whether
    the interface then answers labels only."""

    keeps_top_label: ClassVar[bool] = False
    labels_only: ClassVar[bool] = False


class TopKDefense(_DefenseSpec):
    """Return only the k largest probabilities. Default k 1."""

    keeps_top_label: ClassVar[bool] = True
    name: Literal["top_k"]
    k: Annotated[int, Field(ge=1, le=100_000)] = 1


class RoundingDefense(_DefenseSpec):
    """Round probabilities. Default 1 decimal."""

    name: Literal["rounding"]
    decimals: Annotated[int, Field(ge=0, le=8)] = 1


class LabelOnlyDefense(_DefenseSpec):
    """Return the label only."""

    keeps_top_label: ClassVar[bool] = True
    labels_only: ClassVar[bool] = True
    name: Literal["label_only"]


class ReverseSigmoidDefense(_DefenseSpec):
    """Reverse sigmoid (Lee et al., 2019). Defaults: beta 0.7, gamma 0.4."""

    name: Literal["reverse_sigmoid"]
    beta: Annotated[float, Field(gt=0, le=10)] = 0.7
    gamma: Annotated[float, Field(gt=0, le=10)] = 0.4


class GaussianNoiseDefense(_DefenseSpec):
    """Gaussian noise on the probabilities, clipped and renormalised. Default sigma 0.1."""

    name: Literal["gaussian_noise"]
    sigma: Annotated[float, Field(gt=0, le=10)] = 0.1


ExtractionDefenseSpec = (
    TopKDefense | RoundingDefense | LabelOnlyDefense | ReverseSigmoidDefense | GaussianNoiseDefense
)
ExtractionDefense = Annotated[ExtractionDefenseSpec, Field(discriminator="name")]


class PradaParams(_Closed):
    """PRADA (Juuti et al., EuroS&P 2019). Defaults: delta 0.9, a test every 10 queries once there are more
    than 100 distances from classes with at least 10."""

    name: Literal["prada"]
    delta: Annotated[float, Field(gt=0, lt=1)] = 0.9
    check_every: Annotated[int, Field(ge=1, le=100_000)] = 10
    min_per_class: Annotated[int, Field(ge=1, le=100_000)] = 10
    min_distances: Annotated[int, Field(ge=3, le=1_000_000)] = 100


def _pgd_field(name: str) -> Any:
    """The evasion kind's PGD field (its default, limits and description), for a spec that runs that PGD."""
    return copy.copy(PgdParams.model_fields[name])


class TransferParams(_Closed):
    """PGD crafted white-box on each surrogate, tried on the victim: the evasion kind's PGD fields (their
    defaults and limits are PgdParams'), with at most 8 eps."""

    name: Literal["pgd"] = "pgd"
    norm: Norm = _pgd_field("norm")
    eps: Annotated[list[Eps], Field(min_length=1, max_length=8)]
    steps: int = _pgd_field("steps")
    step_size: PgdStepSize | None = _pgd_field("step_size")
    random_start: bool = _pgd_field("random_start")
    restarts: int = _pgd_field("restarts")


class SurrogateParams(_Closed):
    """The attacker's model: the victim's own graph re-initialised (`victim`, ONNX victims only) or a
    catalog architecture, trained with the shared fit loop (soft labels where scores come back); the
    surrogate measured at each budget trains for `epochs` and at least `min_steps` optimizer steps."""

    architecture: Literal["victim", *ARCHITECTURE_NAMES] = "victim"  # type: ignore[valid-type]
    epochs: Annotated[int, Field(ge=1, le=500)] = 30
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 64
    learning_rate: Annotated[float, Field(gt=0, le=10)] = 0.001
    optimizer: Literal["adam", "sgd"] = "adam"
    weight_decay: Annotated[float, Field(ge=0, le=1)] = 0.0
    min_steps: Annotated[int, Field(ge=0, le=100_000)] = Field(
        default=2000,
        description="Fewest optimizer steps of each measured surrogate (more epochs at small budgets); "
        "0: the epochs alone.",
    )


EXTRACTION_EXAMPLE: dict[str, Any] = {
    "kind": "extraction",
    "model_id": "mdl_0123456789abcdef01234567",
    "dataset_id": "builtin:digits-test",
    "seed": 0,
    "params": {
        "query_dataset_id": "builtin:digits-train",
        "victim_output": {"kind": "probabilities", "top_k": None, "decimals": None},
        "budgets": [250, 500, 1000],
        "attacks": [
            {"name": "knockoff", "strategy": "random"},
            {"name": "knockoff", "strategy": "adaptive", "reward": "all"},
            {"name": "jacobian", "seed_size": 150, "rounds": 6, "lambda": 0.1},
        ],
        "surrogate": {"architecture": "victim", "epochs": 30, "batch_size": 64, "learning_rate": 0.001},
        "defenses": [
            {"name": "top_k", "k": 1},
            {"name": "rounding", "decimals": 1},
            {"name": "reverse_sigmoid", "beta": 0.7, "gamma": 0.4},
        ],
        "detection": [{"name": "prada", "delta": 0.9}],
        "transfer": {"name": "pgd", "norm": "linf", "eps": [0.1]},
    },
}


class ExtractionParams(_Closed):
    """What an extraction job runs: every attack against the undefended interface and each defense (a
    label-only row always included), a surrogate per budget, detection and transfer."""

    query_dataset_id: ResourceId = Field(
        description="The attack pool: an uploaded or built-in dataset (labels unused), or synthetic:uniform."
    )
    victim_output: VictimOutputParams = Field(default_factory=VictimOutputParams)
    budgets: Annotated[list[Annotated[int, Field(ge=1, le=MAX_BUDGET)]], Field(min_length=1, max_length=16)]
    attacks: Annotated[list[ExtractionAttack], Field(min_length=1, max_length=8)]
    surrogate: SurrogateParams = Field(default_factory=SurrogateParams)
    defenses: Annotated[list[ExtractionDefense], Field(max_length=8)] = []
    detection: Annotated[list[PradaParams], Field(max_length=4)] = []
    transfer: TransferParams | None = None
    max_samples: Annotated[int, Field(ge=1, le=100_000)] = 1000

    @model_validator(mode="after")
    def _budgets_increase(self) -> Self:
        """Budgets are measured in order: strictly increasing."""
        if any(a >= b for a, b in zip(self.budgets, self.budgets[1:], strict=False)):
            raise ValueError(f"budgets must be strictly increasing, got {self.budgets}")
        return self


class ExtractionJobSpec(JobSpecBase):
    """An extraction job: steal the model through its prediction interface and measure how well."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXTRACTION_EXAMPLE]})

    kind: Literal["extraction"]
    params: ExtractionParams
