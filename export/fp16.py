"""The fp16 variant of a gsam ONNX graph: onnxruntime's float16 converter, then a tidy-up.

fp16 weights and activations, fp32 I/O, and fp32 islands where fp16 overflows or loses what the
model needs (FP16_KEEP_FP32_OPS and the input normalization; docs/facts.md says why each is there).
"""

from __future__ import annotations

import onnx

from .onnx import ExportError
from .onnx_graph import input_normalization_nodes

# Ops whose float inputs and outputs stay fp32 in an fp16 variant: LayerNormalization sums
# squares over the channels and Softmax exponentiates and sums over every key, which overflows
# fp16 or loses the differences it can hold (vit_b without them gives NaN logits). Also
# blocking the convolutional LayerNorm's chain (ReduceMean, Pow, Sqrt) measured worse.
FP16_KEEP_FP32_OPS = ("LayerNormalization", "Softmax")


def convert_fp16(model: onnx.ModelProto, keep_ops=FP16_KEEP_FP32_OPS) -> onnx.ModelProto:
    """fp16 weights and activations, fp32 I/O, fp32 islands for `keep_ops` and the input normalization."""
    from onnxruntime.transformers.float16 import (
        DEFAULT_OP_BLOCK_LIST,
        convert_float_to_float16,
    )

    blocked_nodes = [n.name for n in input_normalization_nodes(model.graph)]
    model = convert_float_to_float16(model, keep_io_types=True, op_block_list=list(DEFAULT_OP_BLOCK_LIST) + list(keep_ops),
                                     node_block_list=blocked_nodes)
    _tidy_converted_graph(model.graph)
    return model


def _tidy_converted_graph(graph: onnx.GraphProto) -> None:
    """Repair what the fp16 converter leaves: it appends its Casts at the end (the ONNX checker wants
    topological order), adds one identical fp16->fp32 Cast per fp32 consumer of a tensor under one
    name (onnxruntime refuses repeated names), declares fp16 value_info for fp32 initializers, and
    passes a tensor between two fp32 nodes through fp16 (fp32->fp16->fp32 Casts): such a round trip
    only rounds, so the fp32 consumer reads the fp32 tensor instead."""
    initializers = {t.name for t in graph.initializer}
    known = {i.name for i in graph.input} | initializers | {""}
    produced_by = {out: node for node in graph.node for out in node.output}
    shortcut = {}  # fp32 tensor that went through fp16 and back -> the original fp32 tensor
    for node in graph.node:
        source = produced_by.get(node.input[0]) if node.op_type == "Cast" and node.input else None
        if (source is not None and source.op_type == "Cast" and _cast_to(node) == onnx.TensorProto.FLOAT
                and _cast_to(source) == onnx.TensorProto.FLOAT16 and source.input[0] not in initializers):
            shortcut[node.output[0]] = source.input[0]
    outputs = {o.name for o in graph.output}
    seen: set[tuple] = set()
    pending, ordered = [], []
    for node in graph.node:
        if node.op_type == "Cast" and node.output[0] in shortcut and node.output[0] not in outputs:
            continue
        for i, name in enumerate(node.input):
            if name in shortcut:
                node.input[i] = shortcut[name]
        key = (node.name, node.op_type, tuple(node.input), tuple(node.output))
        if node.op_type == "Cast" and key in seen:
            continue
        seen.add(key)
        pending.append(node)
    while pending:
        waiting = []
        for node in pending:
            if all(name in known for name in node.input):
                ordered.append(node)
                known.update(node.output)
            else:
                waiting.append(node)
        if len(waiting) == len(pending):
            raise ExportError(f"the fp16 graph has a cycle or a missing input at node {waiting[0].name}")
        pending = waiting
    while True:  # Casts the shortcuts left without a reader
        read = {name for node in ordered for name in node.input} | outputs
        unread = [n for n in ordered if n.op_type == "Cast" and n.output[0] not in read]
        if not unread:
            break
        ordered = [n for n in ordered if n not in unread]
    del graph.node[:]
    graph.node.extend(ordered)
    infos, names = [], set()
    for info in graph.value_info:
        if info.name not in names and info.name not in initializers:
            names.add(info.name)
            infos.append(info)
    del graph.value_info[:]
    graph.value_info.extend(infos)


def _cast_to(node: onnx.NodeProto) -> int | None:
    return next((a.i for a in node.attribute if a.name == "to"), None)
