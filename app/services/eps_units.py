"""An eps that looks like pixel units (8 meaning 8/255) on a model whose inputs span a small range.

Every budget of a spec is an `eps` (a number or a list) beside its `norm` (linf when absent); an
L-inf budget wider than the input range is meaningless, and one between 1 and 255 on such a model was
almost certainly meant in 0..255 pixel units. The 422 says what was probably meant.
"""

from collections.abc import Iterator
from typing import Any

from app.errors import InvalidInput

PIXEL_LEVELS = 255


def _budgets(value: Any, where: str) -> Iterator[tuple[str, float]]:
    """(location, eps) of every L-inf budget in a dumped spec."""
    if isinstance(value, dict):
        if value.get("norm", "linf") == "linf" and "eps" in value:
            eps = value["eps"]
            for index, item in enumerate(eps if isinstance(eps, list) else [eps]):
                if isinstance(item, int | float) and not isinstance(item, bool):
                    yield (f"{where}.eps[{index}]" if isinstance(eps, list) else f"{where}.eps"), float(item)
        for key, item in value.items():
            yield from _budgets(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _budgets(item, f"{where}[{index}]")


def check_pixel_units(params: dict[str, Any], input_range: list[float]) -> None:
    """422 `eps_out_of_range` naming eps/255 when an L-inf eps exceeds the range and looks like pixels."""
    low, high = float(input_range[0]), float(input_range[1])
    width = high - low
    if width >= PIXEL_LEVELS:
        return
    for where, eps in _budgets(params, "params"):
        if width < eps <= PIXEL_LEVELS:
            meant = eps / PIXEL_LEVELS * width
            fraction = f"{eps:g}/255" if width == 1 else f"{eps:g}/255 of the range width {width:g}"
            raise InvalidInput(
                f"{where} = {eps:g} exceeds the width of the model's input range [{low:g}, {high:g}]: "
                "eps is in the model's input units, not 0..255 pixel levels; "
                f"did you mean {fraction} = {meant:.3g}?",
                code="eps_out_of_range",
            )
