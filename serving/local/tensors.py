"""TensorProto <-> numpy, with TF Serving's checks and its response encoding.

TF Serving answers Predict with typed repeated fields (``float_val``,
``int64_val``, ...: ``Tensor::AsProtoField``), not ``tensor_content``; so does
this server, so clients see the same bytes either way.
"""

from __future__ import annotations

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from serving.local.registry import ServingError

_FIELDS = {
    types_pb2.DT_FLOAT: "float_val", types_pb2.DT_DOUBLE: "double_val", types_pb2.DT_INT32: "int_val",
    types_pb2.DT_INT16: "int_val", types_pb2.DT_INT8: "int_val", types_pb2.DT_UINT8: "int_val",
    types_pb2.DT_UINT16: "int_val", types_pb2.DT_INT64: "int64_val", types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val", types_pb2.DT_BOOL: "bool_val", types_pb2.DT_STRING: "string_val",
}


def dtype_name(enum: int) -> str:
    return tf.dtypes.as_dtype(enum).name


def to_proto_field(array: np.ndarray) -> tensor_pb2.TensorProto:
    """Encodes ``array`` the way TF Serving encodes Predict outputs."""
    array = np.asarray(array)
    enum = tf.dtypes.as_dtype(array.dtype).as_datatype_enum if array.dtype.kind not in "OSU" else types_pb2.DT_STRING
    proto = tensor_pb2.TensorProto(dtype=enum, tensor_shape=tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=int(d)) for d in array.shape]))
    if enum == types_pb2.DT_HALF:
        proto.half_val.extend(array.ravel().view(np.uint16).tolist())
        return proto
    field = _FIELDS.get(enum)
    if field is None:
        return tf.make_tensor_proto(array)
    values = array.ravel().tolist()
    if enum == types_pb2.DT_STRING:
        values = [v if isinstance(v, bytes) else str(v).encode() for v in values]
    getattr(proto, field).extend(values)
    return proto


def check_and_convert(alias: str, position: int, proto: tensor_pb2.TensorProto,
                      info: meta_graph_pb2.TensorInfo) -> np.ndarray:
    """The request tensor as numpy, after TF Serving's dtype and shape checks (INVALID_ARGUMENT)."""
    if proto.dtype != info.dtype:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"Expects arg[{position}] ({alias}) to be {dtype_name(info.dtype)} "
                           f"but {dtype_name(proto.dtype)} is provided")
    try:
        array = tf.make_ndarray(proto)
    except Exception as err:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"input {alias}: malformed TensorProto ({err})") from None
    if not info.tensor_shape.unknown_rank:
        expected = [d.size for d in info.tensor_shape.dim]
        ok = len(expected) == array.ndim and all(e < 0 or e == a for e, a in zip(expected, array.shape))
        if not ok:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"input {alias}: expected shape {expected} (-1 = any), got {list(array.shape)}")
        if array.ndim and array.shape[0] == 0:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"input {alias}: the batch is empty")
    return array
