"""Device profiles and cost: what a target is (targets/*.toml as TargetProfile) and what a network costs on it.

Owns: targets (profile loading, validation, TOML writing) and cost (the calibrated numpy cost model:
latency_us, flash and RAM bytes of a compiled network). May import: errors, files, model, compile (cost
counts what the compile passes leave). Never imports torch; the differentiable face is search.cost.
"""
