"""Deployment for TensorFlow Serving (model config, batching and monitoring files, docker-compose,
Kubernetes manifests) and ``serving.local``, a server that speaks TF Serving's gRPC and REST APIs on
the official protos where the TF Serving binary is not available.

Nothing here imports the rest of the project: a SavedModel folder is all it needs.
"""
