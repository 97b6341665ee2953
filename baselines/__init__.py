"""The method registry. A method is one recipe file here, registered by decorator (`@register_method("kd")`).

Importing this package imports no recipe: `load_builtins()` does, so a report that needs one recipe's figures
imports that recipe alone. Methods outside trustbench run like built-ins: name them as `module:Class` in a
suite, or register them under the `trustbench.methods` entry-point group of their own package.
"""
from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from trustbench.baselines.base import Context, Method, StudentArtifact, register_method
from trustbench.harness.config import MethodSpec
from trustbench.harness.errors import UserError
from trustbench.harness.registry import METHODS

BUILTIN_MODULES = tuple(f"trustbench.baselines.{name}" for name in (
    "prior", "teacher", "zeroshot", "finetune", "kd", "first", "sampled_kd", "gkd", "reverse_kd", "elad",
    "cot_distill", "dualchecker", "load"))
REFERENCES = ("prior",)  # reference rows every run scores, whatever its suite names

__all__ = ["BUILTIN_MODULES", "REFERENCES", "Context", "Method", "StudentArtifact", "available", "build", "load_builtins",
           "register_method"]


def load_builtins() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def available() -> dict:
    """Registered methods by name, built-in and installed (entry points, loaded on use)."""
    load_builtins()
    methods = dict(METHODS.items())
    for entry in entry_points(group="trustbench.methods"):
        methods.setdefault(entry.name, entry)
    return methods


def build(spec: MethodSpec) -> Method:
    """Instantiate the method a suite names: a registered name, an entry point, or `module:Class`."""
    if ":" in spec.method:
        module_name, _, class_name = spec.method.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as error:
            raise UserError(f"cannot load method {spec.method!r} ({error}); check the module is importable") from None
    else:
        methods = available()
        if spec.method not in methods:
            raise UserError(f"unknown method {spec.method!r}: use one of {', '.join(sorted(methods))} "
                            "or `module:Class` (`trustbench list methods`)")
        cls = methods[spec.method]
        cls = cls.load() if hasattr(cls, "load") and not isinstance(cls, type) else cls
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise UserError(f"method {spec.method!r} is not a baselines.Method subclass")
    return cls(spec)
