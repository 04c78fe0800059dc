"""Post-processing steps on the window-step skeleton: blur, merge, KNN refinement, render, statistics."""
