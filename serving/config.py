"""Reading and checking TensorFlow Serving's configuration files.

``models.config`` is parsed with the official ``tensorflow_serving.config``
protos. The ``tensorflow-serving-api`` wheel ships no Python classes for
``BatchingParameters`` (session_bundle_config.proto) or ``MonitoringConfig``
(monitoring_config.proto), so this module declares those two messages with the
same package, field names, numbers and types as TF Serving's .proto files,
and parses the batching and monitoring files with them.
"""

from __future__ import annotations

from pathlib import Path

from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_format,
    wrappers_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

_F = descriptor_pb2.FieldDescriptorProto
_PACKAGE = "fer_keras_serving_mirror.tensorflow.serving"


def _build_mirror_classes():
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    fd = descriptor_pb2.FileDescriptorProto(name="fer_keras_serving_mirror.proto", package=_PACKAGE, syntax="proto3",
                                            dependency=["google/protobuf/wrappers.proto"])

    def field(msg, name, number, ftype, type_name=None, repeated=False):
        f = msg.field.add(name=name, number=number, type=ftype,
                          label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL)
        if type_name:
            f.type_name = type_name

    batching = fd.message_type.add(name="BatchingParameters")
    for name, number in (("max_batch_size", 1), ("batch_timeout_micros", 2), ("max_enqueued_batches", 3),
                         ("num_batch_threads", 4)):
        field(batching, name, number, _F.TYPE_MESSAGE, ".google.protobuf.Int64Value")
    field(batching, "thread_pool_name", 5, _F.TYPE_MESSAGE, ".google.protobuf.StringValue")
    field(batching, "allowed_batch_sizes", 6, _F.TYPE_INT64, repeated=True)
    field(batching, "pad_variable_length_inputs", 7, _F.TYPE_BOOL)
    prometheus = fd.message_type.add(name="PrometheusConfig")
    field(prometheus, "enable", 1, _F.TYPE_BOOL)
    field(prometheus, "path", 2, _F.TYPE_STRING)
    monitoring = fd.message_type.add(name="MonitoringConfig")
    field(monitoring, "prometheus_config", 1, _F.TYPE_MESSAGE, f".{_PACKAGE}.PrometheusConfig")
    # TF Serving's --ssl_config_file (tensorflow_serving/config/ssl_config.proto, not in the pip package).
    ssl = fd.message_type.add(name="SSLConfig")
    for name, number in (("server_key", 1), ("server_cert", 2), ("custom_ca", 3)):
        field(ssl, name, number, _F.TYPE_STRING)
    field(ssl, "client_verify", 4, _F.TYPE_BOOL)
    pool.Add(fd)
    get = lambda name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))  # noqa: E731
    return get("BatchingParameters"), get("MonitoringConfig"), get("SSLConfig")


BatchingParameters, MonitoringConfig, SSLConfig = _build_mirror_classes()


def _parse(path: str | Path, message):
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ValueError(f"cannot read {path}: {err}") from None
    try:
        return text_format.Parse(text, message)
    except text_format.ParseError as err:
        raise ValueError(f"{path} is not a valid {message.DESCRIPTOR.name} text proto: {err}") from None


def read_model_server_config(path: str | Path) -> model_server_config_pb2.ModelServerConfig:
    """Parses a ``models.config`` file (ModelServerConfig text format)."""
    config = _parse(path, model_server_config_pb2.ModelServerConfig())
    if not config.model_config_list.config:
        raise ValueError(f"{path}: model_config_list names no model")
    return config


def read_batching_parameters(path: str | Path):
    """Parses a batching parameters file and checks TF Serving's rules for allowed batch sizes."""
    params = _parse(path, BatchingParameters())
    sizes = list(params.allowed_batch_sizes)
    if sizes and (sizes != sorted(set(sizes)) or sizes[-1] != params.max_batch_size.value):
        raise ValueError(f"{path}: allowed_batch_sizes must increase and end at max_batch_size")
    return params


def read_monitoring_config(path: str | Path):
    return _parse(path, MonitoringConfig())


def read_ssl_config(path: str | Path):
    """Parses an ``--ssl_config_file`` (TF Serving's SSLConfig: PEM text in ``server_key``,
    ``server_cert``, optional ``custom_ca`` and ``client_verify``)."""
    config = _parse(path, SSLConfig())
    if not config.server_key or not config.server_cert:
        raise ValueError(f"{path}: an SSLConfig needs server_key and server_cert (PEM text)")
    if config.client_verify and not config.custom_ca:
        raise ValueError(f"{path}: client_verify needs custom_ca, the CA that signs the clients' certificates")
    return config


def server_credentials(ssl_config):
    """gRPC server credentials for an SSLConfig (mutual TLS when ``client_verify``)."""
    import grpc

    return grpc.ssl_server_credentials([(ssl_config.server_key.encode(), ssl_config.server_cert.encode())],
                                       root_certificates=ssl_config.custom_ca.encode() or None,
                                       require_client_auth=bool(ssl_config.client_verify))


def single_model_config(name: str, base_path: str) -> model_server_config_pb2.ModelServerConfig:
    """The config ``--model_name`` / ``--model_base_path`` stand for: one model, latest version."""
    return models_config({name: base_path})


def models_config(models: dict[str, str]) -> model_server_config_pb2.ModelServerConfig:
    """A config serving each ``name: base_path``, each at its latest version."""
    config = model_server_config_pb2.ModelServerConfig()
    for name, base_path in models.items():
        model = config.model_config_list.config.add(name=name, base_path=base_path, model_platform="tensorflow")
        model.model_version_policy.latest.num_versions = 1
    return config
