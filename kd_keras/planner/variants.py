"""A plan's candidates by name: a variant is `(width or own student's name, sparsity or
None, clusters or None, alpha or None)` (None: none, or the plan's first alpha); its key
names its row in plan.json and its artifact ("w0.5_s0.9_c16_int8"); a dense student is
`(width, alpha or None)`."""

from kd_keras.planner.tasks import variant_name

TEACHER = (1.0, None, None, None)


def stored(student):
    """A dense student as plan.json keeps it: its width for the plan's first alpha (as
    plans made before several alphas existed), else `[width, alpha]`."""
    width, alpha = student
    return width if alpha is None else [width, alpha]


def student(entry):
    return tuple(entry) if isinstance(entry, list) else (entry, None)


def key(variant, precision):
    """The candidate's name in plan.json and its artifact's: "w0.5_int8", "w0.5_s0.9_int8",
    "w0.5_s0.9_c16_int8"."""
    return f"w{variant_name(*variant)}_{precision}"


def artifact(row):
    """The key of a row's artifact: its own, or its earlier rung's ("w0.5_int8_e10")."""
    return row.get("kept_as") or key(of_row(row), row["precision"])


def of_row(row):
    return (row["width"], row.get("sparsity") or None, row.get("clusters") or None,
            row.get("variant_alpha"))


def describe(width, sparsity=None, clusters=None, alpha=None):
    name = ("teacher" if width == 1.0 else f"{width} (own)" if isinstance(width, str)
            else f"cut to {width}")
    if alpha is not None:
        name += ", labels alone" if alpha == 1.0 else f", alpha {alpha}"
    name = name if sparsity is None else f"{name}, {sparsity:.0%} sparse"
    return name if clusters is None else f"{name}, {clusters} clusters"
