"""The method registry. A method is one recipe file here plus an entry in BUILTIN.

Methods outside trustbench run like built-ins: name them as `module:Class` in a suite, or register them under the
`trustbench.methods` entry-point group of their own package.
"""
from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from baselines.base import Context, Method, StudentArtifact
from baselines.finetune import Finetune
from baselines.first import First
from baselines.kd import KD
from baselines.load import Load
from baselines.teacher import Teacher
from baselines.zeroshot import ZeroShot
from harness.config import MethodSpec
from harness.errors import UserError

BUILTIN: dict[str, type[Method]] = {m.name: m for m in (Teacher, ZeroShot, Finetune, KD, First, Load)}

__all__ = ["BUILTIN", "Context", "Method", "StudentArtifact", "available", "build"]


def available() -> dict[str, type[Method]]:
    methods = dict(BUILTIN)
    for entry in entry_points(group="trustbench.methods"):
        methods.setdefault(entry.name, entry)  # loaded lazily in build()
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
