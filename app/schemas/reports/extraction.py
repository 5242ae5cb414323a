"""The extraction report: surrogates stolen through the prediction interface, per defense row and budget."""

from typing import Literal

from pydantic import Field

from app.schemas.reports.envelope import Closed, InputRange, MethodParams, Open, ReportEnvelope, Share


class VictimOutput(Closed):
    """What the victim's prediction interface returns."""

    kind: Literal["probabilities", "top_k", "label"]
    top_k: int | None
    decimals: int | None


class QueryPool(Closed):
    """The attacker's unlabeled query pool."""

    n_samples: int
    with_replacement: bool


class SurrogateSettings(Open):
    """The attacker's model and its training recipe, as the job ran it (the spec's `surrogate` block)."""

    architecture: str = Field(description="`victim` (the victim's graph re-initialised) or a catalog name.")
    epochs: int
    batch_size: int
    learning_rate: float
    optimizer: str


class TransferRate(Closed):
    """PGD crafted on the surrogate at one eps, tried on the victim."""

    eps: float
    transfer_success_rate: Share | None
    n_attacked: int


class BudgetResult(Closed):
    """The surrogate trained on the first `budget` queries, measured on the held-out set (onnxruntime)."""

    budget: int
    queries: int
    fidelity: Share = Field(description="Agreement of the surrogate's labels with the victim's.")
    surrogate_accuracy: Share
    victim_accuracy: Share
    transfer: list[TransferRate] | None = Field(
        default=None, description="At the largest budget only, when the spec asks for transfer."
    )


class PolicyTrace(Closed):
    """Knockoff's adaptive policy: pool clusters, queries spent on each, the final policy."""

    cluster_sizes: list[int]
    queries_per_cluster: list[int]
    final_policy: list[float]


class DefenseRowRun(Closed):
    """One attack against one defense row: what it saw, what it spent, a surrogate per budget."""

    defense: str
    sees: str = Field(description="What the attacker received: probabilities, top_k or label.")
    queries: int
    results: list[BudgetResult]
    seconds: float
    known_as: str | None = Field(default=None, description="The name the literature gives this setting.")
    policy: PolicyTrace | None = None


class ExtractionAttack(Closed):
    """One extraction strategy, run against every defense row."""

    name: str
    label: str
    paper: str
    params: MethodParams
    rows: list[DefenseRowRun]


class ExtractionDefense(Closed):
    """A defense row: what it costs honest callers and the best fidelity an attacker reached against it."""

    name: str
    params: MethodParams
    implicit: bool = Field(description="Added by the service (the label-only row), not asked for.")
    keeps_top_label: bool
    label_change_rate: Share
    accuracy: Share
    mean_l1_score_change: float | None
    returns_scores: bool
    attacker_fidelity: Share
    label_attacker_fidelity: Share | None


class WhiteBoxTransfer(Closed):
    """PGD crafted on the victim's own graph: the transfer figures' upper reference."""

    eps: float
    attack_success_rate: Share | None
    n_attacked: int


class TransferSettings(Closed):
    """The transfer attack as it ran, and the white-box reference (None for a black-box victim)."""

    name: Literal["pgd"]
    norm: str
    eps: list[float]
    steps: int | None = None
    step_size: float | None = None
    random_start: bool | None = None
    restarts: int | None = None
    white_box: list[WhiteBoxTransfer] | None


class DetectionStream(Closed):
    """A detector over one attack's query stream: the query at which it first alarms (None: never)."""

    attack: str
    n_queries: int
    alarm_at_query: int | None


class BenignStream(Closed):
    """A detector over the benign evaluation stream (a false alarm if it alarms)."""

    n_queries: int
    alarm_at_query: int | None


class ExtractionDetector(Closed):
    """A query-stream detector (for example PRADA) on every attack's stream and on benign queries."""

    name: str
    paper: str
    params: MethodParams
    benign: BenignStream
    streams: list[DetectionStream]


class ExtractionReport(ReportEnvelope):
    """An extraction job's report: the victim copied through its prediction interface within each budget."""

    kind: Literal["extraction"]
    n_samples: int
    victim_accuracy: Share
    chance_fidelity: Share = Field(
        description="Fidelity of a surrogate that always answers the commonest label."
    )
    input_range: InputRange
    victim_output: VictimOutput
    pool: QueryPool
    budgets: list[int]
    surrogate: SurrogateSettings
    defenses: list[ExtractionDefense]
    attacks: list[ExtractionAttack]
    transfer: TransferSettings | None
    detection: list[ExtractionDetector]
