"""Offline PyTorch code (training, export to ONNX). Never imported by the plugin."""
