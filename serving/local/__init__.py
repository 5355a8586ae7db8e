"""The local stand-in for TensorFlow Serving: the same gRPC API on the official protos.

``python -m serving.local --model_name gimefive --model_base_path models/gimefive``
"""
