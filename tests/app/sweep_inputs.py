"""Malformed path ids, query values and bodies for the sweep over every route."""

import base64
import json


def _cursor(value: object) -> str:
    """A cursor that decodes to any JSON value."""
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


def _deep(depth: int) -> str:
    """A JSON array nested `depth` times."""
    return "[" * depth + "]" * depth


PATH_IDS = [
    "x",
    "a" * 5000,
    "mdl_\x00",
    "..%2F..%2Fetc%2Fpasswd",
    "builtin:\x00",
    "builtin:../../x",
    "ü-\u202e",
    "' OR 1=1 --",
    "%ff%fe",
]

QUERY_VALUES = [
    "",
    "-1",
    "0",
    "abc",
    "1e309",
    "NaN",
    "[]",
    '{"a": 1}',
    "x" * 10000,
    "\x00",
    "ü",
    _cursor(_deep(5000)),
    _cursor([1, 2]),
    _cursor(["2020-01-01T00:00:00", {"a": 1}]),
    _cursor(["2020-01-01T00:00:00", ["job_x"]]),
    _cursor({"created": "2020"}),
    _cursor(["9999-12-31T23:59:59+14:00", "job_\x00"]),
    _cursor("just a string"),
    "!!!not-base64!!!",
    base64.urlsafe_b64encode(b"\xff\xfe\xfd").decode(),
]

JSON_BODIES: list[bytes] = [
    b"",
    b"{",
    b"not json",
    b"null",
    b"[]",
    b"1",
    b'"text"',
    b"{}",
    b"\xff\xfe",
    b'{"a": NaN}',
    b'{"a": 1e400}',
    _deep(100_000).encode(),
    b'{"name": "\\u0000", "endpoint_url": "http://127.0.0.1/\\u0000", "input_shape": [1], "num_classes": 2}',
    b'{"name": "m", "endpoint_url": "http://127.0.0.1/x", "input_shape": [1, 40132, 40132], '
    b'"num_classes": 10}',
    b'{"name": "m", "endpoint_url": "http://127.0.0.1/x", "input_shape": [9223372036854775807], '
    b'"num_classes": 10}',
    b'{"name": "m", "endpoint_url": "http://127.0.0.1/x", "input_shape": [1, 8, 8], "num_classes": 10, '
    b'"surprise": true}',
    b'{"name": "m", "input_shape": [1, 8, 8], "num_classes": 10}',
    b'{"name": "m", "architecture": "mlp", "input_shape": [1, 8, 8]}',
    b'{"name": "m", "architecture": ["mlp"], "input_shape": "x", "num_classes": "y"}',
    b'{"kind": "evasion"}',
    b'{"kind": "nope", "model_id": "m", "dataset_id": "d", "params": {}}',
    b'{"kind": "evasion", "model_id": "\\u0000", "dataset_id": "\\u0000", '
    b'"params": {"attacks": [{"name": "fgsm", "eps": [0.1]}]}}',
    b'{"kind": "evasion", "model_id": "mdl_x", "dataset_id": "builtin:digits", "seed": 99999999999999999999, '
    b'"params": {"attacks": [{"name": "fgsm", "eps": [0.1]}]}}',
    b'{"kind": "evasion", "model_id": "mdl_x", "dataset_id": "builtin:digits", '
    b'"callback_url": "http://user:pass@127.0.0.1/hook", '
    b'"params": {"attacks": [{"name": "fgsm", "eps": [0.1]}]}}',
    b'{"kind": "evasion", "model_id": "mdl_x", "dataset_id": "builtin:digits", '
    b'"params": {"attacks": [{"name": "pgd", "eps": [1e400], "steps": -1}]}}',
]

FORMS: list[dict[str, str]] = [
    {},
    {"name": "m"},
    {"name": "\x00", "format": "onnx", "input_shape": "[1, 8, 8]", "num_classes": "10"},
    {"name": "m", "format": "onnx", "input_shape": "[1, 40132, 40132]", "num_classes": "10"},
    {"name": "m", "format": "onnx", "input_shape": "[[[[[[[[[[1]]]]]]]]]]", "num_classes": "10"},
    {"name": "m", "format": "onnx", "input_shape": _deep(100_000), "num_classes": "10"},
    {"name": "m", "format": "onnx", "input_shape": "[1, 8, 8]", "num_classes": "99999999999999999999"},
    {
        "name": "m",
        "format": "onnx",
        "input_shape": "[1, 8, 8]",
        "num_classes": "10",
        "input_range": "[NaN, 1]",
    },
    {
        "name": "m",
        "format": "onnx",
        "input_shape": "[1, 8, 8]",
        "num_classes": "10",
        "input_mean": "[1e400]",
        "input_std": "[0]",
    },
    {
        "name": "m" * 300,
        "format": "safetensors",
        "input_shape": "[1, 8, 8]",
        "num_classes": "10",
        "architecture": "\x00",
    },
]

CONTENT_TYPES = ["text/plain", "application/xml", "application/x-www-form-urlencoded", "multipart/form-data"]
