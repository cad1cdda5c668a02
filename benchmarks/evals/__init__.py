"""Quality evaluations that do not trust the generator (issue 6).

Each module scores images with a measure built only from real or procedural data:
`digits` (a classifier and PCA space fitted on sklearn's real digits), `shapes` (an analytic
colour + geometry detector, GenEval-style), `landscapes` (a per-pixel classifier fitted on
procedural scenes), `inpaint` (kept pixels and a seam score). `common` generates batches through
the desktop runtime and holds the standard sampler settings table.
"""
