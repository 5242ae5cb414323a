"""`gauntlet models upload|list|show|delete` and `gauntlet datasets upload|list`."""

import argparse
import json

from gauntlet_client.cli.common import EXIT_OK, Commands, connection_options, make_client, table


def _numbers(text: str) -> list[float]:
    """argparse type: a JSON list of numbers (`[1, 8, 8]`)."""
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, list) or not all(isinstance(v, int | float) for v in value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a JSON list of numbers such as [1, 8, 8]")
    return value


def upload_model(args: argparse.Namespace) -> int:
    """Upload a model file, wait for validation (unless --no-wait) and print its id last."""
    with make_client(args) as client:
        model = client.models.upload(
            args.path,
            name=args.name,
            input_shape=[int(v) for v in args.input_shape] if args.input_shape else None,
            num_classes=args.num_classes,
            format=args.format,
            input_range=args.input_range,
            architecture=args.architecture,
            input_mean=args.input_mean,
            input_std=args.input_std,
            wait=not args.no_wait,
            timeout=args.timeout,
        )
    print(model.id)
    return EXIT_OK


def list_models(args: argparse.Namespace) -> int:
    """Print every model."""
    with make_client(args) as client:
        rows = [
            (m.id, m.name, m.format, m.status, m.white_box, m.input_shape, m.num_classes)
            for m in client.models.list()
        ]
    print("\n".join(table(["id", "name", "format", "status", "white box", "input shape", "classes"], rows)))
    return EXIT_OK


def show_model(args: argparse.Namespace) -> int:
    """Print one model as JSON."""
    with make_client(args) as client:
        print(client.models.get(args.model_id).model_dump_json(indent=2))
    return EXIT_OK


def delete_model(args: argparse.Namespace) -> int:
    """Delete a model."""
    with make_client(args) as client:
        client.models.delete(args.model_id)
    print(f"deleted {args.model_id}")
    return EXIT_OK


def upload_dataset(args: argparse.Namespace) -> int:
    """Upload an .npz dataset and print its id."""
    with make_client(args) as client:
        dataset = client.datasets.upload(args.path, name=args.name, num_classes=args.num_classes)
    print(dataset.id)
    return EXIT_OK


def list_datasets(args: argparse.Namespace) -> int:
    """Print every dataset, built-in ones included."""
    with make_client(args) as client:
        rows = [
            (d.id, d.name, d.n_samples, d.sample_shape, d.num_classes, d.dtype)
            for d in client.datasets.list()
        ]
    print("\n".join(table(["id", "name", "samples", "sample shape", "classes", "dtype"], rows)))
    return EXIT_OK


def _register_models(commands: Commands) -> None:
    """Add `models` and its subcommands."""
    models = commands.add_parser("models", help="upload, list, show or delete models").add_subparsers(
        dest="models_command", required=True
    )
    upload = models.add_parser(
        "upload", parents=[connection_options()], help="upload an ONNX or safetensors file"
    )
    upload.add_argument("path", help="the model file (.onnx or .safetensors)")
    upload.add_argument("--name", required=True)
    upload.add_argument(
        "--input-shape", type=_numbers, default=None, help="one sample's shape, e.g. '[1, 8, 8]'"
    )
    upload.add_argument("--num-classes", type=int, default=None)
    upload.add_argument(
        "--format", choices=["onnx", "safetensors"], default=None, help="default: from the suffix"
    )
    upload.add_argument("--input-range", type=_numbers, default=None, help="e.g. '[0, 1]' (the default)")
    upload.add_argument("--architecture", default=None, help="catalog architecture of safetensors weights")
    upload.add_argument(
        "--input-mean", type=_numbers, default=None, help="per-channel mean to normalize with"
    )
    upload.add_argument("--input-std", type=_numbers, default=None, help="per-channel std to normalize with")
    upload.add_argument("--no-wait", action="store_true", help="do not wait for validation")
    upload.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for validation")
    upload.set_defaults(handler=upload_model)
    listing = models.add_parser("list", parents=[connection_options()], help="every model")
    listing.set_defaults(handler=list_models)
    for name, handler, text in (
        ("show", show_model, "one model as JSON"),
        ("delete", delete_model, "delete"),
    ):
        sub = models.add_parser(name, parents=[connection_options()], help=text)
        sub.add_argument("model_id")
        sub.set_defaults(handler=handler)


def register(commands: Commands) -> None:
    """Add `models` and `datasets`."""
    _register_models(commands)
    datasets = commands.add_parser("datasets", help="upload or list datasets").add_subparsers(
        dest="datasets_command", required=True
    )
    upload = datasets.add_parser("upload", parents=[connection_options()], help="upload an .npz (x, y)")
    upload.add_argument("path", help="an .npz file with arrays x and y")
    upload.add_argument("--name", required=True)
    upload.add_argument("--num-classes", type=int, default=None, help="the class count (default: inferred)")
    upload.set_defaults(handler=upload_dataset)
    listing = datasets.add_parser("list", parents=[connection_options()], help="every dataset")
    listing.set_defaults(handler=list_datasets)
