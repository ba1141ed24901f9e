"""Engines that run a model bundle: ONNX Runtime (CPU) and TensorRT (GPU) behind one interface."""
