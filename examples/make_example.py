"""Regenerate the bundled example: a synthetic sensor dataset and a small sparse mixed-activation model.

    python examples/make_example.py          # needs the [search] extra (torch)

Writes examples/motor.csv (training rows), examples/motor_holdout.csv (held-out rows) and
examples/motor.safetensors. Deterministic: same seed, same files. The model is trained the way the search's
fine-tuning stage trains (Adam on a masked, per-neuron-activation MLP); it stands in for a searched model until
`swat-edge search` exists, and is what the back end's tests and the README's first command run on.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from swat_edge.model import Layer, SparseMLP, save_model  # noqa: E402

FEATURES = ("rpm", "load_pct", "ambient_c", "supply_v")
TARGET = "winding_temp_c"
SEED = 7


def make_rows(n_rows: int, rng: np.random.Generator) -> np.ndarray:
    """A motor's winding temperature from speed, load, ambient temperature and supply voltage (synthetic)."""
    rpm = rng.uniform(500, 6000, n_rows)
    load = rng.uniform(0, 100, n_rows)
    ambient = rng.uniform(-10, 45, n_rows)
    supply = rng.uniform(200, 250, n_rows)
    current = (load / 100.0) ** 1.5 * 12.0 * (230.0 / supply)
    cooling = 1.0 + 0.8 * np.tanh(rpm / 2500.0)
    temp = ambient + 2.2 * current**2 / cooling + 8.0 * np.exp(-((rpm - 3200) / 900.0) ** 2) * (load > 60)
    temp += rng.normal(0, 0.4, n_rows)
    return np.column_stack([rpm, load, ambient, supply, temp])


def write_csv(path: Path, rows: np.ndarray) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*FEATURES, TARGET])
        for row in rows:
            writer.writerow([f"{v:.4f}" for v in row])


def train(rows: np.ndarray) -> SparseMLP:
    import torch

    from swat_edge.search.embedding.decode import activation_fn

    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    x, y = rows[:, :4], rows[:, 4:]
    lo, hi = x.min(0), x.max(0)
    in_scale, in_offset = 2.0 / (hi - lo), -1.0 - 2.0 * lo / (hi - lo)
    ylo, yhi = y.min(0), y.max(0)
    out_scale, out_offset = (yhi - ylo) / 2.0, (yhi + ylo) / 2.0
    xt = torch.tensor(x * in_scale + in_offset, dtype=torch.float64)
    yt = torch.tensor((y - out_offset) / out_scale, dtype=torch.float64)

    widths = (4, 7, 7, 7, 1)
    acts = [
        ("tanh", "relu", "sigmoid", "tanh", "leaky_relu", "relu", "tanh"),
        ("relu", "tanh", "tanh", "sigmoid", "relu", "leaky_relu", "identity"),
        ("tanh", "sigmoid", "relu", "relu", "tanh", "leaky_relu", "tanh"),
    ]
    fns = [[activation_fn(a) for a in layer] for layer in acts]
    params = []
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        w = torch.empty(n_in, n_out, dtype=torch.float64)
        torch.nn.init.xavier_uniform_(w)
        params += [w.requires_grad_(), torch.zeros(n_out, dtype=torch.float64, requires_grad=True)]
    masks = [torch.ones_like(p) for p in params[::2]]

    def net(h: torch.Tensor) -> torch.Tensor:
        for i in range(len(widths) - 1):
            h = h @ (params[2 * i] * masks[i]) + params[2 * i + 1]
            if i < len(acts):
                h = torch.stack([fn(h[:, j]) for j, fn in enumerate(fns[i])], dim=1)
        return h

    def fit(steps: int, l1: float) -> None:
        opt = torch.optim.Adam(params, lr=3e-3)
        for _ in range(steps):
            opt.zero_grad()
            loss = torch.mean((net(xt) - yt) ** 2) + l1 * sum(p.abs().sum() for p in params[::2])
            loss.backward()
            opt.step()

    fit(3000, 1e-4)
    with torch.no_grad():  # magnitude-prune ~half of the weights per layer, then fine-tune the survivors
        for i, w in enumerate(params[::2]):
            threshold = w.abs().flatten().kthvalue(int(0.45 * w.numel())).values
            masks[i] = (w.abs() > threshold).to(w.dtype)
    fit(3000, 0.0)

    w = [(p * m).detach().numpy() for p, m in zip(params[::2], masks)]
    b = [p.detach().numpy() for p in params[1::2]]
    gate = np.ones(7, dtype=bool)
    gate[5] = False  # one neuron of the last hidden layer switched off, as a search's gate would
    hidden = [Layer.make(w[i], b[i], acts[i], gate if i == 2 else None) for i in range(3)]
    output = Layer.make(w[3], b[3], "identity")
    rng = np.random.default_rng(SEED + 1)
    calibration = x[rng.choice(len(x), size=64, replace=False)]
    return SparseMLP.make(
        hidden,
        output,
        input_scale=in_scale,
        input_offset=in_offset,
        output_scale=out_scale,
        output_offset=out_offset,
        feature_names=FEATURES,
        target_names=(TARGET,),
        provenance={"made_by": "examples/make_example.py", "seed": SEED, "train_rows": len(x)},
        calibration=calibration,
    )


def main() -> None:
    rng = np.random.default_rng(SEED)
    rows = make_rows(2000, rng)
    train_rows, holdout_rows = rows[:1500], rows[1500:]
    write_csv(HERE / "motor.csv", train_rows)
    write_csv(HERE / "motor_holdout.csv", holdout_rows)
    model = train(train_rows)
    save_model(model, HERE / "motor.safetensors", force=True)
    from swat_edge.model import forward, model_stats

    pred = forward(model, holdout_rows[:, :4])
    mse = float(np.mean((pred - holdout_rows[:, 4:]) ** 2))
    print(f"held-out MSE {mse:.4f} (target variance {holdout_rows[:, 4].var():.2f}); {model_stats(model)}")


if __name__ == "__main__":
    main()
