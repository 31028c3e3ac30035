"""Measure: what an artefact does on this machine, and whether it regressed.

Owns: bench (onnxruntime timing, interleaved A/B, peak memory), bench_c (the generated C's timing harness,
harness.c), gate (baselines, verdicts, CI JSON), summary (`inspect`: layer tables, ONNX op histograms) and
calibrate (time probe networks here and fit a target profile's cost coefficients).
May import: errors, files, model, data, compile, export, device. Never imports torch.
"""
