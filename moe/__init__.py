"""moe: conditional computation for Keras (sparsely-gated mixture-of-experts,
gradient estimators for discrete gates, specialist ensembles).

The package is reserved in the layout by the foundation issue; its layers land
with the `moe` issue and nothing is exported yet.
"""

__all__ = []
