"""The evasion runner: attack the model on the held-out set and build the report and artifacts."""

from app.schemas.evasion import EvasionJobSpec
from worker.engine.evasion.runner import EvasionOutcome, run_evasion
from worker.services.context import JobData, RunEnv
from worker.services.outputs import Outcome, npz_artifact, png_artifact
from worker.services.targets import Target

THREAT_MODEL = "evasion: the attacker perturbs inputs at test time within each attack's budget"


def _artifact_kind(name: str) -> str:
    """Artifact kind of an array bundle: patches or adversarial examples."""
    return "adversarial_patch" if name.startswith("patch_") else "adversarial_examples"


def run(spec: EvasionJobSpec, target: Target, data: JobData, env: RunEnv) -> Outcome:
    """Run every attack of the spec over the first max_samples samples."""
    params = spec.params
    model = target.module().to(env.device) if target.white_box else None
    limit = params.max_samples
    outcome = run_evasion(
        model,
        data.held_out.x[:limit],
        data.held_out.y[:limit],
        params.attacks,
        input_range=target.signature.input_range,
        batch_size=params.batch_size,
        seed=env.seed,
        device=env.device,
        progress=env.progress,
        black_box=target.black_box_model(),
        sanity_runs=params.sanity_runs,
    )
    return outcome_of(outcome)


def outcome_of(outcome: EvasionOutcome) -> Outcome:
    """The job outcome of an evaluation: report body, checks, summary and artifacts."""
    body = dict(outcome.report)
    checks = body.pop("checks")
    artifacts = [
        npz_artifact(_artifact_kind(name), name, arrays) for name, arrays in outcome.adversarial.items()
    ]
    artifacts += [png_artifact("patch_image", name, png) for name, png in outcome.images.items()]
    summary = {
        "n_samples": body["n_samples"],
        "clean_accuracy": body["clean_accuracy"],
        "worst_case": body["worst_case"],
        "checks_passed": all(check["passed"] for check in checks),
    }
    return Outcome(body, checks, summary, THREAT_MODEL, artifacts)
