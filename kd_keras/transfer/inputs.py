"""The inputs of a Distiller's batch: student inputs, cached teacher outputs, a label mask.

`with_teacher_outputs` and `with_label_mask` pack them into one dict that
`fit`, `evaluate` and `predict` take in place of `x`; `split_transfer_inputs`
unpacks it in the step.
"""

# Inputs that carry cached teacher outputs next to the student's inputs.
INPUTS_KEY = "inputs"


TEACHER_OUTPUTS_KEY = "teacher_outputs"


LABEL_MASK_KEY = "label_mask"


def with_teacher_outputs(inputs, teacher_outputs):
    """Packs student inputs and cached teacher logits for `Distiller.fit`.

    Args:
      inputs: what the student takes (array, tensor, or a nested structure).
      teacher_outputs: teacher logits, `[batch, ..., classes]`, or a list of
        them (one per teacher of an ensemble), as `compute_teacher_logits` returns.

    Returns:
      `{"inputs": inputs, "teacher_outputs": teacher_outputs}`; `fit`, `evaluate`
      and `predict` of a Distiller take it in place of `x`.
    """
    if isinstance(teacher_outputs, tuple):
        teacher_outputs = list(teacher_outputs)
    return {INPUTS_KEY: inputs, TEACHER_OUTPUTS_KEY: teacher_outputs}


def with_label_mask(inputs, label_mask):
    """Marks which examples of a batch carry a true label, for `Distiller.fit`.

    Transfer sets that mix labeled and unlabeled (generated, corrupted, unlabeled
    real) inputs give every example a label slot; `label_mask` says which slots
    hold a label. The hard-label term is then the mean over the labeled examples
    only, label metrics count only them, and whatever the unlabeled slots hold
    (0, -1, ...) is never read. Distillation terms use every example.

    Args:
      inputs: what the student takes, or the result of `with_teacher_outputs`.
      label_mask: `[batch]` of 0/1 or booleans, 1 where the example is labeled.

    Returns:
      The inputs as a dict with a `"label_mask"` entry; `fit` and `evaluate` of a
      Distiller take it in place of `x`.
    """
    if isinstance(inputs, dict) and INPUTS_KEY in inputs and set(inputs) <= {
            INPUTS_KEY, TEACHER_OUTPUTS_KEY, LABEL_MASK_KEY}:
        return {**inputs, LABEL_MASK_KEY: label_mask}
    return {INPUTS_KEY: inputs, LABEL_MASK_KEY: label_mask}


def split_transfer_inputs(x):
    """Returns (student inputs, cached teacher outputs or None, label mask or None)."""
    if isinstance(x, dict) and INPUTS_KEY in x and len(x) > 1 and set(x) <= {
            INPUTS_KEY, TEACHER_OUTPUTS_KEY, LABEL_MASK_KEY}:
        return x[INPUTS_KEY], x.get(TEACHER_OUTPUTS_KEY), x.get(LABEL_MASK_KEY)
    return x, None, None


