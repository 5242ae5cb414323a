"""A model that expects normalized inputs, declared at upload, is attacked in the declared input range."""

import io

import pytest
import torch

from tests.app.helpers import TERMINAL, evasion_spec, upload_onnx, wait_for
from worker.engine.training.classifier import train_digits_model

pytestmark = pytest.mark.service
MEAN, STD = 0.5, 0.1


class _ExpectsNormalized(torch.nn.Module):
    """The digits CNN as a model whose inputs must be normalized with MEAN and STD first."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.inner(z * STD + MEAN)


@pytest.fixture(scope="module")
def normalized_onnx() -> bytes:
    buffer = io.BytesIO()
    model = _ExpectsNormalized(train_digits_model("small-cnn", epochs=15, seed=0)).eval()
    torch.onnx.export(
        model,
        (torch.rand(1, 1, 8, 8),),
        buffer,
        dynamo=False,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}},
    )
    return buffer.getvalue()


@pytest.fixture(scope="module")
def tenant(make_key, start_worker) -> dict:
    start_worker()
    return make_key("normalization-tenant")


def _run(api, tenant, data: bytes, **fields: str) -> dict:
    model = upload_onnx(api, tenant, data, **fields)
    model = wait_for(api, f"/v1/models/{model['id']}", tenant, {"ready", "invalid"})
    assert model["status"] == "ready", model
    attacks = [
        {"name": "pgd", "norm": "linf", "eps": [0.1], "steps": 10},
        {"name": "square", "norm": "linf", "eps": [0.1], "queries": 100},
    ]
    job = api.post(
        "/v1/jobs", headers=tenant, json=evasion_spec(model["id"], attacks, max_samples=100)
    ).json()
    assert wait_for(api, f"/v1/jobs/{job['id']}", tenant, TERMINAL, timeout=300)["status"] == "succeeded"
    return api.get(f"/v1/jobs/{job['id']}/report", headers=tenant).json()


def test_declared_normalization_is_applied_and_attacks_stay_in_the_input_range(api, tenant, normalized_onnx):
    declared = _run(api, tenant, normalized_onnx, input_mean=f"[{MEAN}]", input_std=f"[{STD}]")
    undeclared = _run(api, tenant, normalized_onnx)
    assert declared["clean_accuracy"] > 0.85
    assert undeclared["clean_accuracy"] < declared["clean_accuracy"] - 0.1
    for attack in declared["attacks"]:
        row = attack["results"][0]
        assert row["robust_accuracy"] < declared["clean_accuracy"]
        assert row["max_perturbation"] <= 0.1 + 1e-6  # eps in the input range, not in normalized units


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"input_mean": "[0.3]"}, "both"),
        ({"input_mean": "[0.3, 0.1]", "input_std": "[0.4, 0.4]"}, "one value per channel"),
        ({"input_mean": "[0.3]", "input_std": "[0]"}, "positive"),
    ],
)
def test_bad_normalization_fields_are_422(api, tenant, normalized_onnx, fields, fragment):
    form = {"name": "n", "format": "onnx", "input_shape": "[1, 8, 8]", "num_classes": "10", **fields}
    response = api.post("/v1/models", headers=tenant, files={"file": ("m.onnx", normalized_onnx)}, data=form)
    assert response.status_code == 422 and fragment in response.json()["error"]["message"]
