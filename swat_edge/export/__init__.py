"""Export: turn a compiled SparseMLP into deployable artefacts and check each against the reference forward().

Owns: onnx (ONNX graph builder, onnxsim, verification, onnxruntime session options), quantize (static/dynamic
QDQ int8, drift), c (C99 generator and its compile-run-compare check), cc (the host C compiler), pipeline
(what `swat-edge export` runs: compile passes -> emit -> verify -> quantize -> atomic write).
May import: errors, files, model, data, compile. Never imports torch.
"""
