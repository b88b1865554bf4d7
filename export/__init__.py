"""PyTorch -> ONNX bundle export, ONNX -> TensorRT engines, and the TensorRT-compatibility lint."""
