"""The receptive field of an exported embedding network, computed from its ONNX graph.

Every tensor with spatial axes carries, per axis (H, W), the affine map from its index ``i`` to the input pixels
that can reach it: ``[i * step + low, i * step + high]``. Convolutions and pools compose it (kernel, stride,
padding, dilation), constant pads shift it, element-wise operations and channel-wise ones (BatchNorm, ReLU,
residual Add, channel Concat, a LayerNorm over channels) take the union of their inputs'. An operation that mixes
positions (global pooling, flattening the grid into tokens for attention, resizing) makes the field unbounded:
the network has global context and tiles cannot be exact.

``reach``: how far (px) beyond an output cell's own stride x stride pixels an input pixel can change its
embedding, as in training/models.py ``receptive_reach`` for the student (which walks its torch layers instead).
"""

import numpy as np

LOCAL_WINDOW = {"Conv", "MaxPool", "AveragePool", "LpPool"}
POINTWISE = {
    "Relu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Erf", "Exp", "Log", "Sqrt", "Reciprocal",
    "Neg", "Abs", "Identity", "Cast", "LeakyRelu", "Elu", "Selu", "Gelu", "Mish", "Softplus", "PRelu", "Add", "Sub",
    "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Where", "BatchNormalization", "Dropout", "Floor", "Ceil",
    "Round", "Sign", "Not", "Equal", "Less", "Greater", "And", "Or",
}
GLOBAL = {"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", "Flatten", "Reshape", "MatMul", "Gemm", "Resize",
          "Upsample", "Softmax", "InstanceNormalization", "GroupNormalization", "Transpose", "ReduceMean",
          "ReduceSum", "ReduceMax", "ReduceL2", "LayerNormalization", "Einsum", "ConvTranspose"}


class UnknownOperation(ValueError):
    pass


def _attribute(node, name, default):
    import onnx

    for attribute in node.attribute:
        if attribute.name == name:
            value = onnx.helper.get_attribute_value(attribute)
            return list(value) if isinstance(value, (list, tuple)) else value
    return default


def _fold(node, constants):
    """Add the outputs of ``node`` to ``constants`` when all its inputs are small constants."""
    if node.op_type == "Constant" or not all(name in constants for name in node.input if name):
        return
    if any(constants[name].size > 4096 for name in node.input if name):
        return
    from onnx.reference import ReferenceEvaluator

    try:
        values = ReferenceEvaluator(node).run(None, {name: constants[name] for name in node.input if name})
    except Exception:  # an operation the reference evaluator lacks: its outputs stay unknown
        return
    constants.update(zip(node.output, (np.asarray(value) for value in values)))


def _reduce_axes(node, graph_constants):
    axes = _attribute(node, "axes", None)
    if axes is None and len(node.input) > 1 and node.input[1] in graph_constants:
        axes = [int(v) for v in graph_constants[node.input[1]].flatten()]
    return axes


def graph_field(model):
    """{"H": (step, low, high), "W": ...} of the graph's first output, or None when it has global context."""
    from onnx import numpy_helper

    graph = model.graph
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            value = _attribute(node, "value", None)
            if value is not None:
                constants[node.output[0]] = numpy_helper.to_array(value)
    fields = {graph.input[0].name: ((1, 0, 0), (1, 0, 0))}
    unbounded = object()
    for node in graph.node:
        inputs = [fields[name] for name in node.input if name in fields]
        if not inputs:  # shapes, constants, weights: evaluated when small, for the pads of Pad
            _fold(node, constants)
            continue
        if any(field is unbounded for field in inputs):
            result = unbounded
        elif node.op_type in LOCAL_WINDOW:
            (step_h, low_h, high_h), (step_w, low_w, high_w) = inputs[0]
            kernel = _attribute(node, "kernel_shape", None)
            auto_pad = _attribute(node, "auto_pad", b"NOTSET")
            if auto_pad not in (b"NOTSET", b"VALID", "NOTSET", "VALID"):
                raise UnknownOperation(f"{node.op_type} {node.name} uses auto_pad {auto_pad}")
            if kernel is None:  # Conv: from the weight's shape
                kernel = list(constants[node.input[1]].shape[2:])
            strides = _attribute(node, "strides", [1, 1])
            dilations = _attribute(node, "dilations", [1, 1])
            pads = _attribute(node, "pads", [0, 0, 0, 0])
            result = tuple(
                (step * s, low - p * step, high + ((k - 1) * d - p) * step)
                for (step, low, high), k, s, d, p in zip(inputs[0], kernel, strides, dilations, pads[:2]))
        elif node.op_type == "Pad":
            pads = constants.get(node.input[1]) if len(node.input) > 1 else None
            if pads is None:
                pads = np.array(_attribute(node, "pads", []))
            mode = _attribute(node, "mode", b"constant")
            if mode not in (b"constant", "constant"):
                pads = None  # reflect/edge padding: still local, but not a shift this rule knows
            if pads is None or len(pads) != 8 or np.any(pads[[0, 1, 4, 5]]):
                raise UnknownOperation(f"Pad {node.name} with pads that are not constant on H and W")
            result = tuple((step, low - int(p) * step, high - int(p) * step)
                           for (step, low, high), p in zip(inputs[0], pads[2:4]))
        elif node.op_type in POINTWISE or (node.op_type == "Concat" and _attribute(node, "axis", [1])[0] == 1):
            steps = {field[axis][0] for field in inputs for axis in (0, 1)}
            if len({tuple(f[a][0] for a in (0, 1)) for f in inputs}) != 1:
                raise UnknownOperation(f"{node.op_type} {node.name} joins maps of different strides {steps}")
            result = tuple((inputs[0][axis][0], min(f[axis][1] for f in inputs), max(f[axis][2] for f in inputs))
                           for axis in (0, 1))
        elif node.op_type in ("ReduceMean", "ReduceSum", "ReduceMax") and _reduce_axes(node, constants) == [1]:
            result = inputs[0]  # over channels only
        elif node.op_type in GLOBAL:
            result = unbounded
        else:
            raise UnknownOperation(f"no receptive-field rule for ONNX operation {node.op_type} ({node.name})")
        for name in node.output:
            fields[name] = result
    output = fields.get(graph.output[0].name)
    if output is None:
        raise UnknownOperation("the output does not depend on the input")
    return None if output is unbounded else dict(zip("HW", output))


def reach_from_graph(path):
    """(stride, reach px, receptive field width px) of the ONNX model at ``path``, or None (global context)."""
    import onnx

    field = graph_field(onnx.load(str(path)))
    if field is None:
        return None
    steps = {step for step, _, _ in field.values()}
    if len(steps) != 1:
        raise UnknownOperation(f"different strides along H and W: {field}")
    stride = steps.pop()
    reach = max(max(-low, high - (stride - 1)) for _, low, high in field.values())
    width = max(high - low + 1 for _, low, high in field.values())
    return stride, reach, width
