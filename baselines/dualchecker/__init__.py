"""`dualchecker`: Interactive DualChecker (Wang et al., 2024), where a prompted teacher labels the ID train split and
the labels train the student.

What the paper and its code say: ../shared/METHODS.md, section 3.

The teacher is the suite's teacher model as it ships (few-shot prompted, not fine-tuned): a local white-box model
or any chat model through the endpoint. The ID card's `description` is its task instruction; each example's prompt
is the short input and its `detail` the longer one (cards in `tasks/cards/` say which is which). The labels are an
example's options: one label set on a classification card (the paper's setting), or each question's own on a
multiple-choice one (how `smoke` runs it, without the teacher checker: its card has no detail).

- ContextAligner (`part` simi, teacher, student, all): the gold-labelled train split is embedded (mean-pooled hidden
  states of the student's initial model, `harness.engines.embed_texts`); for each question the nearest other train
  examples by cosine similarity (the question itself excluded; 1, 1, 2, 3 of them for 1, 3, 5, 7 shots, as in the
  released code) become demonstrations "Text: ... Answer: <gold>. Reason: <why>", the reason written by the
  teacher when asked to justify the human label. Fixed gold examples fill the other shots. Without it (`part:
  none`, the plain few-shot baseline) the shots are fixed gold examples without reasons.
- Teacher checker (`part` teacher, all): a label whose confidence is below `tau` is asked once more with the
  example's `detail` (its first `detail_chars` characters, as the code truncates it for a white-box teacher) in
  place of its short text; both answers are kept, the second is the label. How the teacher is asked (`ask`):
  `choice` (white box, a local model's default) takes the label of highest log-likelihood, its confidence that
  probability renormalised over the labels; `reply` (black box: an endpoint's default and only way, or a local
  model asked the same way) has the teacher write "Answer / Confidence / Reason", and reads both confidences from
  the reply: the percentage it states (`verbalised_confidence`) and its label's token probability (the endpoint's
  or the engine's log-probs). `confidence: token | verbalised` says which one the checker reads (default: token
  for choice, verbalised for reply); both are recorded. `tau` defaults to 0.75 (token) and 0.85 (verbalised), the
  code's values for its white-box and black-box teachers.
- Student checker (`part` student, all): the student (the suite's, from its initial weights) learns online from
  buffers of `buffer` teacher-labelled examples, `buffer_epochs` steps each; before its last step on a buffer the
  misclassified example (against gold) with the lowest top probability becomes a demonstration with a teacher
  reason for its gold label, placed first in every later teacher prompt.
- An unparsable teacher reply is counted and its example left out of the student's training (`unparsable: drop`).
  The released code fills it with the gold label; `unparsable: gold_leak` does that, and its name says why not.

The final student is fine-tuned from its initial weights on the teacher's labels of the whole train split (the
suite's train settings) and scored like every other method. Every teacher call goes through the cached, counted
teacher engine, so a resumed run asks nothing twice.

The package, one job a file: `prompts` (the prompts, how a reply is read, ContextAligner's retrieval), `teacher`
(asking for labels, the teacher checker), `method` (the method, registered as `dualchecker`, with the student
checker) and `report` (its tables and figures, registered by name). Importing the package registers all of them.
"""
from trustbench.baselines.dualchecker.method import DEFAULTS, DualChecker, teacher_f1
from trustbench.baselines.dualchecker.prompts import (borderline, label_probability, label_span, neighbours,
                                                      parse_label, retrieved_count, token_pieces,
                                                      verbalised_confidence)
from trustbench.baselines.dualchecker.report import gains_table, paired_gain, teacher_side, teacher_table
from trustbench.baselines.dualchecker.teacher import REPLY_STOP, Teacher

__all__ = ["DEFAULTS", "DualChecker", "REPLY_STOP", "Teacher", "borderline", "gains_table", "label_probability",
           "label_span", "neighbours", "paired_gain", "parse_label", "retrieved_count", "teacher_f1", "teacher_side",
           "teacher_table", "token_pieces", "verbalised_confidence"]
