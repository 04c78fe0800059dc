"""What every run needs: typed errors, progress and cancel, memory budget, threads, checks, outputs."""
