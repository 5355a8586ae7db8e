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


def check_declared(alias: str, proto: tensor_pb2.TensorProto, info: meta_graph_pb2.TensorInfo, max_batch: int,
                   max_bytes: int) -> int:
    """Checks a request tensor's declared shape against the signature, the limits and the data it
    actually carries, before anything is allocated; returns its size in bytes once decoded.

    A 40-byte request declaring ``[1, 64, 64, 65536]`` would otherwise make TensorFlow allocate the
    whole declared tensor (a single value is broadcast to fill it).
    """
    dims = [d.size for d in proto.tensor_shape.dim]
    if any(d < 0 for d in dims):
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"input {alias}: declared shape {dims} has a negative dimension; sizes must be 0 or more")
    if not info.tensor_shape.unknown_rank:
        expected = [d.size for d in info.tensor_shape.dim]
        if len(expected) != len(dims) or any(e >= 0 and e != a for e, a in zip(expected, dims)):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"input {alias}: expected shape {expected} (-1 = any), got {dims}")
    if dims and dims[0] > max_batch:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"input {alias}: a batch of {dims[0]} exceeds this server's limit of {max_batch}")
    count = int(np.prod(dims, dtype=np.float64)) if dims else 1
    if proto.dtype == types_pb2.DT_STRING:
        carried = len(proto.string_val)
        if carried != count:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"input {alias}: declared shape {dims} holds {count} values but {carried} were sent")
        return sum(len(v) for v in proto.string_val)
    itemsize = tf.dtypes.as_dtype(proto.dtype).size
    nbytes = count * itemsize
    if nbytes > max_bytes:
        raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                           f"input {alias}: declared shape {dims} needs {nbytes} bytes, above this server's limit of "
                           f"{max_bytes} bytes per request (--max_request_bytes)")
    if proto.tensor_content:
        carried, unit = len(proto.tensor_content), "bytes"
        wanted = nbytes
    else:
        field = "half_val" if proto.dtype == types_pb2.DT_HALF else _FIELDS.get(proto.dtype)
        carried, unit = (len(getattr(proto, field)) if field else count), "values"
        wanted = count
    if carried != wanted:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"input {alias}: declared shape {dims} holds {wanted} {unit} but {carried} were sent")
    return nbytes


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
