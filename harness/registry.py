"""Registries by decorator, the way lm-eval registers models and metrics.

    @METHODS.register("finetune")            class Finetune(Method): ...
    @LOADERS.register("bigbench")            def load(card) -> list[Example]: ...
    @ENGINES.register("hf")                  class HFEngine: ...
    @FORMATS.register("letter")              class LetterFormat(Format): ...
    @FIGURES.register("first_ece_vs_c")      def ece_vs_c(view) -> Figure | None: ...
    @TABLES.register("elad_budget")          def budget(view) -> DataFrame | None: ...
    @SELECTORS.register("egss") / @ANNOTATORS.register("clear")   ELAD's pluggable parts

The registries live in the core, so every layer can register into them without importing the layers above it:
the recipes in `baselines/` register methods and their figures, `tasks/` its loaders, the core its engines and
scoring formats. Whoever needs the built-ins imports the package that holds them (the runner imports `baselines`
and `tasks`; a report imports the recipe modules its manifest names).
"""
from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

from trustbench.harness.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> objects of one kind. `get` of an unknown name is a one-line UserError listing the known ones."""

    def __init__(self, kind: str, hint: str = ""):
        self.kind = kind
        self.hint = hint  # how the user can see or extend the list
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(obj: T) -> T:
            previous = self._items.get(name)
            if previous is not None and _qualname(previous) != _qualname(obj):
                raise ValueError(f"{self.kind} {name!r} is registered twice: {_qualname(previous)} and "
                                 f"{_qualname(obj)}")
            self._items[name] = obj
            return obj

        return decorate

    def get(self, name: str) -> T:
        if name not in self._items:
            close = difflib.get_close_matches(name, list(self._items), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UserError(f"unknown {self.kind} {name!r}: {hint}use one of {', '.join(sorted(self._items))}"
                            + (f" ({self.hint})" if self.hint else ""))
        return self._items[name]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._items.items())


def _qualname(obj) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


METHODS: Registry = Registry("method", "`trustbench list methods`, or `module:Class` for one of your own")
LOADERS: Registry = Registry("task source", "write `source: <loader>:<argument>` in the card")
ENGINES: Registry = Registry("backend")
FORMATS: Registry = Registry("scoring format")
FIGURES: Registry = Registry("figure")
TABLES: Registry = Registry("table")
SELECTORS: Registry = Registry("selector", "ELAD's question selectors: egss, random, max_entropy, ...")
ANNOTATORS: Registry = Registry("annotator", "ELAD's annotators: clear, teacher_cot")
