"""`elad`: ELAD (Zhang et al., Findings of ACL 2024), explanation-guided active distillation.

What the poster and its sources say: ../shared/METHODS.md, section 2.

The loop of the authors' poster (its Figure 1), on a chain-of-thought ID task with a `pool` of questions:

1. The teacher writes explanations for a seed set of `n0` pool questions (drawn with the run's seed): D.
2. Round r = 0, 1, ...: the student is fine-tuned on D (from its initial weights, or `refit: continue` from the last
   round's); it writes an explanation and an answer for every question left in the pool U; a selector ranks them;
   the annotator explains the `B` ranked first, and those explanations join D.
3. After `R` rounds of selection, the student fine-tuned on D is the method's row; the students of rounds 0 .. R-1
   are rows `<name>@r<i>`, each scored like any method, with the teacher budget spent before it.

Selectors (higher is asked first; each reads the student's outputs on a question):
- `egss`, Explanation-Guided Sample Selection: intra + `egss_weight` x inter, where intra-explanation uncertainty
  is the share of the explanation's steps that change the answer the student reaches (`intra: prefix`: the answer
  read after steps 1..i against the one after steps 1..i-1, i = 1..m, the poster's reading; `intra: removal`: the
  answer without step i against the answer with all of them), and inter-explanation uncertainty is the answer
  disagreement over K sampled explanations, 1 - (votes of the most common answer) / K. `egss_terms: intra|inter`
  keeps one term. Both terms are stored per question and per round.
- `random`: uniformly at random (seeded).
- `max_entropy`: the mean entropy of the student's next-token distribution over the tokens of its answer (from
  the top 10 log-probs at each answer token; the tail beyond them is left out).
- `least_confidence`: 1 - the probability of the student's (greedy) answer tokens.
- `disagreement`: the answer disagreement over K sampled explanations (EGSS's inter term alone).
- `self_confidence`: 1 - the student's own probability that its answer is right: P(" Yes") against P(" No") after
  "Is this answer right? Yes or No:" appended to its explanation and answer.

Annotators:
- `clear` (CLEAR: Customized LLM-Annotated Explanation Revision): the teacher checks the student's steps in order
  and keeps the accepted prefix; from the first rejected step it writes the rest and the final answer. A local
  (white-box) teacher checks a step by its own greedy next step (`check: greedy`: accepted when it writes the
  same step) or by its likelihood (`check: likelihood`: mean token log-prob >= `likelihood_threshold`), and writes
  the rest by generation. With `check: greedy` and greedy decoding an accepted step is the teacher's own next
  step, so the revision is what `teacher_cot` writes, at the cost of the checks (measured: the same annotated sets,
  round by round); only `check: likelihood` (or a chat teacher) keeps student steps the teacher would not have
  written. A chat or endpoint teacher gets the poster's multi-turn prompt ("Can we start with this
  step: ...? If yes, give me your step. If no, give me the rest steps and the final answer."; then "Can we continue
  with this step ...?") and re-words each step it accepts.
- `teacher_cot`: the teacher writes the whole explanation itself.
An explanation whose final answer disagrees with gold is dropped (`keep: correct`) or kept (`keep: all`); one with
no parsable answer is dropped. Kept, dropped and unparsable counts are recorded per round.

Every teacher call goes through the teacher's engine: cached on disk and counted, so a run killed mid-round
resumes without asking the teacher anything twice; the budget axis is teacher calls and teacher tokens.

The package, one job a file: `student` (the student's explanations and the answers read after their steps),
`selectors`, `annotators`, `method` (the loop above, registered as `elad`) and `report` (its tables and figures,
registered by name). Importing the package registers all of them.
"""
from trustbench.baselines.elad.annotators import Annotation, clear, teacher_cot
from trustbench.baselines.elad.method import DEFAULTS, Elad
from trustbench.baselines.elad.report import (budget_bands, budget_curves, budget_table, claim_pairs, claims_table,
                                              egss_term_values, full_pool_targets, main_table, uncertainty_figure)
from trustbench.baselines.elad.selectors import egss, inter_uncertainty, intra_uncertainty
from trustbench.baselines.elad.student import Explained, explain, split_steps

__all__ = ["Annotation", "DEFAULTS", "Elad", "Explained", "budget_bands", "budget_curves", "budget_table",
           "claim_pairs", "claims_table", "clear", "egss", "egss_term_values", "explain", "full_pool_targets",
           "inter_uncertainty", "intra_uncertainty", "main_table", "split_steps", "teacher_cot", "uncertainty_figure"]
