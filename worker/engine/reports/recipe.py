"""Only the recipe fields that apply: a report keeps every resolved field of a method, the page shows the
ones the method used (TRADES' beta only for trades, SGD's momentum only for sgd, and so on)."""

from typing import Any

from worker.engine.reports.parts import human

# field -> (the field that decides, the values for which it applies)
_APPLIES: dict[str, tuple[str, frozenset[str]]] = {
    "beta": ("method", frozenset({"trades"})),
    "clean_weight": ("method", frozenset({"pgd"})),
    "guard_samples": ("method", frozenset({"fast"})),
    "steps": ("method", frozenset({"pgd", "trades"})),
    "random_start": ("method", frozenset({"pgd", "trades"})),
    "momentum": ("optimizer", frozenset({"sgd"})),
    "nesterov": ("optimizer", frozenset({"sgd"})),
    "step_epochs": ("schedule", frozenset({"step"})),
    "gamma": ("schedule", frozenset({"step"})),
    "pattern_seed": ("pattern", frozenset({"random"})),
    "value": ("pattern", frozenset({"solid"})),
}


def applicable(recipe: dict[str, Any]) -> dict[str, Any]:
    """The recipe without the fields its method, optimizer, schedule or pattern does not use, nor None."""
    kept = {}
    for key, value in recipe.items():
        rule = _APPLIES.get(key)
        if value is None or (rule is not None and rule[0] in recipe and recipe[rule[0]] not in rule[1]):
            continue
        kept[key] = value
    if recipe.get("row") is not None and recipe.get("col") is not None:
        kept.pop("location", None)
    return kept


def transforms_text(transforms: Any) -> str:
    """Preprocessing transforms for people: `jpeg (quality 75), bit depth (bits 4)`."""
    parts = []
    for transform in transforms if isinstance(transforms, list) else []:
        if isinstance(transform, dict):
            params = human({key: value for key, value in transform.items() if key != "name"})
            name = str(transform.get("name", "?")).replace("_", " ")
            parts.append(f"{name} ({params})" if params else name)
    return ", ".join(parts)
