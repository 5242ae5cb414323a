"""The evasion executor: attack the model on the held-out set and build the report and artifacts."""

from worker.engine.evasion.runner import run_evasion
from worker.services.context import JobContext
from worker.services.outputs import JobOutput, finish_output, npz_artifact, png_artifact

THREAT_MODEL = "evasion: the attacker perturbs inputs at test time within each attack's budget"


def _artifact_kind(name: str) -> str:
    """Artifact kind of an array bundle: patches or adversarial examples."""
    return "adversarial_patch" if name.startswith("patch_") else "adversarial_examples"


def execute(ctx: JobContext) -> JobOutput:
    """Run every attack of the spec over the first max_samples samples."""
    params = ctx.params
    model = ctx.model.white_box_module() if ctx.model.white_box else None
    limit = params["max_samples"]
    outcome = run_evasion(
        model.to(ctx.device) if model is not None else None,
        ctx.data.x[:limit],
        ctx.data.y[:limit],
        params["attacks"],
        input_range=ctx.model.input_range,
        batch_size=params["batch_size"],
        seed=ctx.seed,
        device=ctx.device,
        progress=ctx.progress,
        black_box=ctx.model.black_box_model(),
    )
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
    return finish_output(ctx, body, summary, threat_model=THREAT_MODEL, checks=checks, artifacts=artifacts)
