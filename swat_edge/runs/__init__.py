"""Run folders: what `swat-edge search` leaves behind (model, ONNX, card.json, report.html) and how later
commands find it (runs/latest).

Owns: folder (run directory layout, writing a run, resolving `export model.onnx` against the latest run) and
report (card.json and the HTML report). May import every torch-free stage: errors, files, console, model,
data, compile, device, export, measure; search only for type annotations. Never imports torch.
"""
