"""`prior`: a reference row for every task: always the most frequent answer, with the class frequencies as its
probabilities. Not a student, not trained: the score anything that does not read the question gets.

The frequencies come from the task's own train split when it has one (its ID train split), and otherwise from the
scored split itself, which is then an oracle reference (marked `oracle` in results.csv and in the leaderboards).
Multiple choice: the frequency of each gold position, add-one smoothed over the positions an example offers (an
option that never won in training is unlikely, not impossible), renormalised over each example's options; the
prediction is the most frequent position. Open answers: the most frequent gold answer, its frequency as
confidence (a forecast of its own correctness, as the cot format writes open answers).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from trustbench.baselines.base import Context, Method, StudentArtifact, register_method
from trustbench.harness.scoring import open_answer_rows, predictions_frame
from trustbench.harness.types import Task


@register_method("prior")
class Prior(Method):
    seeded = False
    trains = False
    reference = True

    def fit(self, ctx: Context) -> StudentArtifact:
        return StudentArtifact(Path("-"), {"train_tokens": 0, "teacher_calls": 0})  # nothing to train or load

    def predict(self, task: Task, split: str) -> pd.DataFrame:
        examples = getattr(task.splits, split)
        source = task.splits.train or examples
        oracle = not task.splits.train
        if not examples[0].choices:
            answer, count = Counter(str(e.gold) for e in source).most_common(1)[0]
            frame = open_answer_rows(examples, [answer] * len(examples), [count / len(source)] * len(examples))
        else:
            most = max(len(e.choices) for e in source + examples)
            counts = np.bincount([e.gold for e in source], minlength=most) + 1.0
            frame = predictions_frame(examples, [np.log(counts[:len(e.choices)]) for e in examples])
        frame["oracle"] = oracle
        return frame
