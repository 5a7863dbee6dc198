"""``traces``: the natural-trace head ("Let Real Images be as a Judger", 2024).

A features -> logit graph trained by ``ufd-train --method traces`` (formulation
in :mod:`ufd.export.train.traces`): far from every natural trace = fake.
"""

from __future__ import annotations

from ufd.runtime.methods.linear import HeadMethod
from ufd.runtime.registry import register


@register
class Traces(HeadMethod):
    """Distance to learned natural traces of real images, as p(fake)."""

    name = "traces"
    summary = "traces (natural-trace head, ufd-train --method traces)"
    prefix = "traces_"
    fields = ("traces_logit", "traces_prob", "traces_label")
    table_columns = (("traces_label", "traces", 6), ("traces_prob", "p_traces", 8))
    missing_hint = "train one with ufd-train BUNDLE --method traces --real DIR --fake DIR"
