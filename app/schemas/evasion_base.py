"""What every evasion attack's spec is, the registry of spec classes by name, and the open attack field.

A spec class is the one description of an attack: its parameters, defaults, limits, facts (threat
model, images, minimum-norm, iterative, ensemble) and cost. Defining a subclass with a one-value
`name: Literal[...]` registers it; `AttackSpec`, the type of a job's attack entries, validates against
every registered class (dispatching on `name`) and describes them in the JSON schema as one
discriminated oneOf, so an attack defined outside this package (a plugin, see `app.plugins`) is
accepted once its module is imported.
"""

from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Union, get_args

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler, GetJsonSchemaHandler, TypeAdapter
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

_SPECS: dict[str, type["EvasionAttackSpec"]] = {}


class EvasionAttackSpec(BaseModel):
    """What every evasion attack's spec has: its enumerated name, its facts and its cost.

    Facts (class-level, read by the API's submission checks and by the engine):
        white_box: needs the model's gradients (False: queries outputs only, black-box).
        needs_images: defined on image inputs [channels, height, width] only.
        minimum_norm: searches the smallest perturbation (run once with eps=inf; a sample counts as
            broken at eps when its perturbation is at most eps) instead of working inside each eps.
        iterative: False for a single-step attack (the sanity checks expect iterative ones to beat it).
        ensemble: several attacks in one (left out of single-attack comparisons).
        budget_keys: the iteration budget the "more iterations change little" check doubles (empty: the
            check skips the attack).
    """

    model_config = ConfigDict(extra="forbid")
    white_box: ClassVar[bool] = True
    needs_images: ClassVar[bool] = False
    minimum_norm: ClassVar[bool] = False
    iterative: ClassVar[bool] = True
    ensemble: ClassVar[bool] = False
    budget_keys: ClassVar[tuple[str, ...]] = ()

    name: str

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """Register a subclass that names exactly one attack (`name: Literal["..."]`)."""
        super().__pydantic_init_subclass__(**kwargs)
        names = get_args(cls.model_fields["name"].annotation)
        if len(names) != 1 or "name" not in cls.__dict__.get("__annotations__", {}):
            return  # a base without a name, or a variant of a registered spec (it keeps its base's name)
        known = _SPECS.get(names[0])
        if known is not None and known.__qualname__ != cls.__qualname__:
            raise TypeError(f"attack name {names[0]!r} is taken by {known.__module__}.{known.__qualname__}")
        _SPECS[names[0]] = cls

    def uses_images(self) -> bool:
        """Whether this configuration needs image inputs (the class fact unless a setting changes it)."""
        return type(self).needs_images

    def runs(self) -> int:
        """Runs per sample: one per eps, or one for a minimum-norm search (and a physical attack)."""
        eps = getattr(self, "eps", None)
        return 1 if type(self).minimum_norm or eps is None else len(eps)

    def passes_per_sample(self) -> float:
        """Forward-and-backward passes per sample of one run (an upper bound, for the cost estimate)."""
        raise NotImplementedError

    def extra_passes(self, n_samples: int) -> float:
        """Sample passes of checks the attack adds on n evaluated samples (none by default)."""
        return 0.0

    def cost(self, n_samples: int) -> float:
        """Estimated sample passes of this attack over n samples, its checks included."""
        return self.passes_per_sample() * self.runs() * n_samples + self.extra_passes(n_samples)


def attack_specs() -> dict[str, type[EvasionAttackSpec]]:
    """Every registered attack spec class by its name (built-ins and imported plugins)."""
    return dict(_SPECS)


@lru_cache(maxsize=8)
def _adapter(classes: tuple[type[EvasionAttackSpec], ...]) -> TypeAdapter[Any]:
    """The discriminated union of the given spec classes."""
    return TypeAdapter(Annotated[Union[classes], Field(discriminator="name")])  # type: ignore[arg-type]  # noqa: UP007


def _registered_union() -> TypeAdapter[Any]:
    """The discriminated union of every spec class registered now."""
    return _adapter(tuple(_SPECS.values()))


def validate_attack(value: Any) -> EvasionAttackSpec:
    """A registered attack spec from its JSON form (or the spec itself); pydantic errors as for a union."""
    if isinstance(value, EvasionAttackSpec) and _SPECS.get(value.name) is type(value):
        return value
    spec: EvasionAttackSpec = _registered_union().validate_python(value)
    return spec


class _OpenAttackSpec:
    """Pydantic hooks of `AttackSpec`: validate against the registered classes at call time."""

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        """A validator that dispatches on `name` over the classes registered when it runs."""
        return core_schema.no_info_plain_validator_function(validate_attack)

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """The registered classes as one discriminated oneOf."""
        return handler(_registered_union().core_schema)


# The type of a job's attack entries: any registered spec class, chosen by `name`. At run time the
# annotated type is Any, so the schema lists the registered classes and not the abstract base.
if TYPE_CHECKING:
    AttackSpec = EvasionAttackSpec
else:
    AttackSpec = Annotated[Any, _OpenAttackSpec]
