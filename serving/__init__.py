"""TensorFlow Serving deployment and the local gRPC stand-in (not built yet: see the serving issue)."""
