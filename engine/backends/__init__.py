"""Where work runs beyond this process's threads: ONNX Runtime (the model contract), a Dask cluster."""
