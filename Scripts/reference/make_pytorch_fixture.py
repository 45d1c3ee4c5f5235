#!/usr/bin/env python3
"""Write the PyTorch fixture Tests/RTRLTests/Fixtures/pytorch-gru-2-layers/.

    python make_pytorch_fixture.py [--out DIR] [--cross-check [--reference-python PY]]

Needs PyTorch (plus numpy and scipy). Only this generator needs it: the fixture
is committed, so users, the Swift tests and the other reference scripts never do.
Any torch build works (a CPU-only one is enough), e.g. in a throwaway venv:

    python3 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch numpy scipy
    /tmp/torchvenv/bin/python Scripts/reference/make_pytorch_fixture.py --cross-check

(--cross-check runs reference_grad.py with `python3` from PATH, which needs
numpy, scipy and autograd; run the command outside an activated venv or pass
--reference-python.)

What it does, all in float64 with torch.manual_seed(7):

1. builds torch.nn.GRU(input_size=3, hidden_size=4, num_layers=2,
   batch_first=False) and a torch.nn.Linear(4, 3) readout (in that order, so
   their initial values come from the seeded generator), then draws a sequence
   of T = 6 inputs (torch.randn, 6 × 3) and one target class per step
   (torch.randint over [0, 3));
2. checks that PyTorch's gate blocks are in the contract's order (r, z, n; §2)
   by recomputing the GRU's output with the contract's equations from the
   state_dict rows [0:k] = r, [k:2k] = z, [2k:3k] = n; it stops with an error if
   that does not reproduce PyTorch's output to 1e-13 (and also shows that a
   wrong order does not);
3. computes with PyTorch the loss of contract §1,
   L = Σ_t CE(softmax(readout_weight · h_t + readout_bias), target_t) (natural
   log, summed over the steps with target ≥ 0; h_t is the top layer's output),
   and its gradient with respect to every parameter by torch.autograd;
4. writes the model directory of contract §1/§1b into DIR: config.json
   ({"cell": "gru", …, "num_layers": 2}); weight_ih_l{l}.mtx and
   weight_hh_l{l}.mtx as `coordinate real general` with every entry stored
   (row-major order); bias_ih_l{l}.mtx and bias_hh_l{l}.mtx as `array real
   general` 3k × 1 columns; readout_weight.mtx (`array`, o × k) and
   readout_bias.mtx (`array`, o × 1). Every file goes through scipy.io.mmwrite
   and is read back and compared bit for bit;
5. writes DIR/sequence.json in the format `rtrl grad --sequence` reads
   (contract §3): {"inputs": [[x_1, x_2, x_3], …], "targets": [t_1, …]};
6. writes DIR/expected.json: the loss, the torch version, the seed and the
   gradient of every file as a dense row-major matrix (file stem → list of rows;
   for the weights every entry is stored, so the dense matrix is the gradient
   of the file's entries in file order).

--cross-check then runs the package's independent reference
(reference_grad.py, numpy + autograd, run with --reference-python, default
`python3`, which needs autograd) on DIR and DIR/sequence.json and compares its
loss (relative error ≤ 1e-12) and gradient (per file
max|a − b| / max(max|a|, max|b|) ≤ 1e-10) with PyTorch's; exit 1 on a mismatch.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import scipy.io
import scipy.sparse
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.normpath(os.path.join(HERE, "..", "..", "Tests", "RTRLTests", "Fixtures",
                                            "pytorch-gru-2-layers"))

SEED = 7
N_INPUTS, HIDDEN, N_OUTPUTS, LAYERS, STEPS = 3, 4, 3, 2, 6
GATES = 3  # gru: r, z, n
LOSS_TOL, GRAD_TOL, GATE_ORDER_TOL = 1e-12, 1e-10, 1e-13


def build():
    """The seeded GRU, readout and sequence (inputs T × n float64, targets T int64)."""
    torch.manual_seed(SEED)
    gru = torch.nn.GRU(input_size=N_INPUTS, hidden_size=HIDDEN, num_layers=LAYERS,
                       batch_first=False, dtype=torch.float64)
    readout = torch.nn.Linear(HIDDEN, N_OUTPUTS, dtype=torch.float64)
    inputs = torch.randn(STEPS, N_INPUTS, dtype=torch.float64)
    targets = torch.randint(0, N_OUTPUTS, (STEPS,))
    return gru, readout, inputs, targets


def torch_loss(gru, readout, inputs, targets):
    """Contract §1: Σ over steps with target ≥ 0 of −log softmax(logits_t)[target_t]."""
    out, _ = gru(inputs.unsqueeze(1))  # (T, batch 1, k): the top layer's h_t, zero initial state
    logits = readout(out[:, 0, :])
    keep = targets >= 0
    return torch.nn.functional.cross_entropy(logits[keep], targets[keep], reduction="sum"), out[:, 0, :]


def contract_gru_forward(state_dict, inputs, order):
    """Top-layer outputs by contract §2/§1b, reading gate g's rows from block order[g] (r, z, n)."""
    k = HIDDEN

    def block(v, g):
        i = order[g]
        return v[i * k:(i + 1) * k]

    h = [np.zeros(k) for _ in range(LAYERS)]
    outputs = []
    for x in inputs:
        below = x
        for l in range(LAYERS):
            gi = state_dict[f"weight_ih_l{l}"] @ below + state_dict[f"bias_ih_l{l}"]
            gh = state_dict[f"weight_hh_l{l}"] @ h[l] + state_dict[f"bias_hh_l{l}"]
            r = 1.0 / (1.0 + np.exp(-(block(gi, 0) + block(gh, 0))))
            z = 1.0 / (1.0 + np.exp(-(block(gi, 1) + block(gh, 1))))
            n = np.tanh(block(gi, 2) + r * block(gh, 2))
            h[l] = (1.0 - z) * n + z * h[l]
            below = h[l]
        outputs.append(below)
    return np.array(outputs)


def check_gate_order(gru, inputs, torch_outputs):
    """Stop unless the state_dict rows in the contract's order (r, z, n) reproduce PyTorch."""
    sd = {name: t.detach().numpy() for name, t in gru.state_dict().items()}
    x = inputs.numpy()
    want = torch_outputs.detach().numpy()
    diff = float(np.max(np.abs(contract_gru_forward(sd, x, (0, 1, 2)) - want)))
    if not diff <= GATE_ORDER_TOL:
        raise SystemExit(f"error: PyTorch's GRU gate order does not match the contract's (r, z, n): "
                         f"max |difference| {diff:.3e}; the state_dict would need permuting")
    swapped = float(np.max(np.abs(contract_gru_forward(sd, x, (1, 0, 2)) - want)))
    if not swapped > 1e-6:
        raise SystemExit("error: the gate-order check cannot tell r from z on this model")
    return diff, swapped


# --------------------------------------------------------------------------
# Matrix Market output (scipy.io.mmwrite, read back and compared exactly)
# --------------------------------------------------------------------------

def write_coordinate_full(path, matrix):
    """Every entry of `matrix` stored, row-major, as `coordinate real general`."""
    rows, cols = np.nonzero(np.ones(matrix.shape, dtype=bool))
    values = matrix[rows, cols]
    scipy.io.mmwrite(path, scipy.sparse.coo_matrix((values, (rows, cols)), shape=matrix.shape),
                     symmetry="general")
    n_rows, n_cols, entries, fmt, field, symmetry = scipy.io.mminfo(path)
    back = scipy.io.mmread(path)
    same = ((fmt, field, symmetry) == ("coordinate", "real", "general")
            and (n_rows, n_cols, entries) == (*matrix.shape, matrix.size)
            and np.array_equal(back.row, rows) and np.array_equal(back.col, cols)
            and np.array_equal(back.data, values))
    if not same:
        raise SystemExit(f"error: {path} did not read back as written (scipy {scipy.__version__})")


def write_array(path, matrix):
    """A dense 2-D float64 matrix as `array real general`."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float64)
    assert matrix.ndim == 2
    scipy.io.mmwrite(path, matrix, symmetry="general")
    _, _, _, fmt, field, symmetry = scipy.io.mminfo(path)
    back = np.asarray(scipy.io.mmread(path))
    if (fmt, field, symmetry) != ("array", "real", "general") or not np.array_equal(back, matrix):
        raise SystemExit(f"error: {path} did not read back as written (scipy {scipy.__version__})")


def file_tensors(gru, readout, use_grad):
    """File stem → (2-D float64 array, 'coordinate' | 'array'), in contract §1b's naming."""
    def value(t):
        return (t.grad if use_grad else t).detach().numpy().astype(np.float64)

    files = {}
    for l in range(LAYERS):
        for stem in ("weight_ih", "weight_hh"):
            files[f"{stem}_l{l}"] = (value(getattr(gru, f"{stem}_l{l}")), "coordinate")
        for stem in ("bias_ih", "bias_hh"):
            files[f"{stem}_l{l}"] = (value(getattr(gru, f"{stem}_l{l}")).reshape(-1, 1), "array")
    files["readout_weight"] = (value(readout.weight), "array")
    files["readout_bias"] = (value(readout.bias).reshape(-1, 1), "array")
    return files


def expected_json(loss, gradient, targets):
    """expected.json text: one key per line, each gradient file on its own line."""
    head = {
        "generator": "Scripts/reference/make_pytorch_fixture.py",
        "torch_version": torch.__version__,
        "seed": SEED,
        "model": f"torch.nn.GRU(input_size={N_INPUTS}, hidden_size={HIDDEN}, num_layers={LAYERS}, "
                 f"batch_first=False) + torch.nn.Linear({HIDDEN}, {N_OUTPUTS}), float64",
        "steps": STEPS,
        "scored_steps": int((targets >= 0).sum()),
        "loss_definition": "sum over steps with target >= 0 of cross_entropy(readout(h_top_t), target_t), "
                           "natural log (torch.nn.functional.cross_entropy, reduction='sum')",
        "loss": loss,
        "gradient_layout": "file stem -> dense row-major matrix (rows × columns of the file); "
                           "the weight files store every entry, row-major",
    }
    lines = ["{"]
    lines += [f"  {json.dumps(key)}: {json.dumps(value)}," for key, value in head.items()]
    lines.append('  "gradient": {')
    items = list(gradient.items())
    for i, (stem, matrix) in enumerate(items):
        comma = "," if i + 1 < len(items) else ""
        lines.append(f"    {json.dumps(stem)}: {json.dumps(matrix.tolist())}{comma}")
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------

def cross_check(out, python, loss, gradient):
    """Run reference_grad.py on the fixture; compare loss and gradient with PyTorch's."""
    with tempfile.TemporaryDirectory() as tmp:
        ref_out = os.path.join(tmp, "ref")
        run = subprocess.run([python, os.path.join(HERE, "reference_grad.py"), "--model", out,
                              "--sequence", os.path.join(out, "sequence.json"), "--out", ref_out],
                             capture_output=True, text=True, cwd=HERE)
        if run.returncode != 0:
            raise SystemExit(f"error: reference_grad.py failed ({run.returncode}): {run.stderr.strip()}")
        ref_loss = json.loads(run.stdout)["loss"]
        ref_grad = {}
        for stem in gradient:
            m = scipy.io.mmread(os.path.join(ref_out, stem + ".mtx"))
            ref_grad[stem] = np.asarray(m.toarray() if scipy.sparse.issparse(m) else m, dtype=np.float64)
    loss_rel = abs(ref_loss - loss) / abs(loss)
    print(f"reference loss {ref_loss!r}, PyTorch loss {loss!r}: relative difference {loss_rel:.3e} "
          f"(tolerance {LOSS_TOL:g})")
    worst = 0.0
    for stem, (want, _) in gradient.items():
        got = ref_grad[stem]
        scale = max(np.abs(want).max(), np.abs(got).max(), 1e-300)
        rel = float(np.abs(got - want).max() / scale)
        worst = max(worst, rel)
        print(f"  {stem:15s} {want.size:3d} values  max|Δ| {np.abs(got - want).max():.3e}  rel {rel:.3e}")
    print(f"gradient: largest per-file relative difference {worst:.3e} (tolerance {GRAD_TOL:g})")
    ok = loss_rel <= LOSS_TOL and worst <= GRAD_TOL
    print("cross-check " + ("PASS" if ok else "FAIL"))
    return ok


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"fixture directory (default {DEFAULT_OUT})")
    parser.add_argument("--cross-check", action="store_true",
                        help="also compare with reference_grad.py (needs autograd in --reference-python)")
    parser.add_argument("--reference-python", default="python3",
                        help="interpreter for reference_grad.py (default python3)")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    gru, readout, inputs, targets = build()
    loss, top_outputs = torch_loss(gru, readout, inputs, targets)
    order_diff, swapped_diff = check_gate_order(gru, inputs, top_outputs)
    loss.backward()
    loss_value = float(loss.detach())

    os.makedirs(args.out, exist_ok=True)
    config = {"cell": "gru", "input_size": N_INPUTS, "hidden_size": HIDDEN, "output_size": N_OUTPUTS,
              "num_layers": LAYERS}
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    for stem, (matrix, fmt) in file_tensors(gru, readout, use_grad=False).items():
        path = os.path.join(args.out, stem + ".mtx")
        (write_coordinate_full if fmt == "coordinate" else write_array)(path, matrix)
    with open(os.path.join(args.out, "sequence.json"), "w") as f:
        json.dump({"inputs": inputs.tolist(), "targets": targets.tolist()}, f)
        f.write("\n")
    gradient = file_tensors(gru, readout, use_grad=True)
    with open(os.path.join(args.out, "expected.json"), "w") as f:
        f.write(expected_json(loss_value, {stem: m for stem, (m, _) in gradient.items()}, targets))

    print(f"torch {torch.__version__}: wrote {args.out}")
    print(f"gate order r, z, n reproduces torch.nn.GRU to {order_diff:.1e} (z, r, n would be off by "
          f"{swapped_diff:.1e})")
    print(f"loss {loss_value!r} over {STEPS} steps, targets {targets.tolist()}")
    if args.cross_check and not cross_check(args.out, args.reference_python, loss_value, gradient):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
