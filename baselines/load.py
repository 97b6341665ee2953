"""`load`: score a given checkpoint (a zoo name, a local folder, or a locally cached Hugging Face id)."""
from __future__ import annotations

from trustbench.baselines.base import Context, Method, StudentArtifact, register_method
from trustbench.harness import zoo
from trustbench.harness.errors import UserError


@register_method("load")
class Load(Method):
    seeded = False
    trains = False
    params = ("path",)

    def __init__(self, spec):
        super().__init__(spec)
        if "path" not in spec.params:
            raise UserError(f"method {spec.name!r}: `load` needs `path:` (a checkpoint folder or zoo model name)")

    def check(self, ctx: Context) -> None:
        zoo.check(str(self.spec.params["path"]))

    def fit(self, ctx: Context) -> StudentArtifact:
        return StudentArtifact(zoo.resolve(str(self.spec.params["path"])), {"train_tokens": 0})
