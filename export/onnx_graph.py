"""Where things sit in a gsam ONNX graph: the input normalization and the layers that read it.

The fp16 variant keeps the normalization in fp32 and the int8 variant leaves the first
convolutions unquantized; both find them here by following the `image` input's data edges.
"""

from __future__ import annotations

import onnx

WEIGHTED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


def input_normalization_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """Float nodes between the `image` input and the first weighted layers (the pixel normalization,
    padding and resizing the convolutions read), found by following the image's data edges."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    found, frontier, seen = [], ["image"], set()
    while frontier:
        for node in consumers.get(frontier.pop(), []):
            if node.op_type in WEIGHTED_OPS or node.op_type == "Shape" or id(node) in seen:
                continue
            seen.add(id(node))
            found.append(node)
            frontier.extend(node.output)
    return found


def first_convolutions(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The weighted layers that read the (normalized) image itself."""
    normalized = {"image"} | {out for node in input_normalization_nodes(graph) for out in node.output}
    return [n for n in graph.node if n.op_type in WEIGHTED_OPS and n.input and n.input[0] in normalized]
