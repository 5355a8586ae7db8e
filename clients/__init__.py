"""gRPC client library and video/camera analyzer (not built yet: see the clients issue)."""
