"""The diffusion math of DESIGN.md §1, in numpy only."""
