#!/usr/bin/env python3
"""Self-test of the reference scripts.

    python3 self_test.py [--keep DIR]

1. rnn, gru, lstm: autograd gradient vs central finite differences (reference_grad.py --check-fd)
   on several random cases (shared and independent gate masks, shuffled entry order).
2. egru with firing units: finite differences vs the gradient taken with H' ≡ 0.
3. egru with thresholds so large that no unit fires and H' vanishes: finite differences vs the
   reported gradient.
4. egru pseudo-derivative, one step, k = 1: every partial derivative written out by hand.
5. egru pseudo-derivative, many steps: a hand-written numpy BPTT (no autograd) vs reference_grad.py.
6. Files: gradient coordinate files store exactly the model's entries (explicit zeros included) and
   are `general`; compare_grads.py passes on identical directories and fails on a changed value or
   pattern; bad sequences are rejected.
7. Stacked layers (contract §1b), lines starting "stack:":
   a. finite differences of the stacked gradient for L = 2 and 3 on every cell (egru as in 2 and 3:
      every layer firing, against the H' = 0 gradient; and an L = 2 stack that never fires, against
      the reported gradient);
   b. an L = 1 model under the _l0 names (make_case --suffix-single), or with "num_layers": 1 in
      config.json, gives the same loss and byte-identical gradient files, written under the names read;
   c. the loss of L = 2 and 3 stacks against a hand-written numpy forward pass (gru, and also rnn,
      lstm, egru), to 1e-12; for lstm and egru, feeding c or h up the stack instead of the output
      must change the loss, so the check can see a wrong wiring;
   d. if PyTorch is importable, the loss of torch.nn.GRU(num_layers=2) with a dense model's weights
      (skipped with a note otherwise);
   e. directories that break §1b (mixed names, a missing layer file, surplus layer files, a wrong
      shape, a bad num_layers) are rejected with one sentence and exit status 2;
   f. a stack's gradient files have the model's names and stored patterns, and compare_grads.py
      works by the suffixed names.
Each line reports PASS/FAIL (SKIP for 7d without PyTorch); exit status 1 if anything fails.
"""

import argparse
import filecmp
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import scipy.io
import scipy.sparse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from mtx_io import read_array, read_coordinate, write_array, write_coordinate  # noqa: E402

FAILURES = []
PASSES = [0, 0]  # all passed checks, passed stack checks


def report(name, ok, detail=""):
    print(f"{'PASS' if ok else 'FAIL'}  {name}" + (f"  ({detail})" if detail else ""))
    if not ok:
        FAILURES.append(name)
    else:
        PASSES[0] += 1
        PASSES[1] += name.startswith("stack:")


def run(script, *args, check=True):
    proc = subprocess.run([sys.executable, os.path.join(HERE, script), *map(str, args)],
                          capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{script} {' '.join(map(str, args))} failed:\n{proc.stdout}{proc.stderr}")
    return proc


def make_case(root, name, **options):
    out = os.path.join(root, name)
    args = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif isinstance(value, (tuple, list)):
            args += [flag, *value]
        else:
            args += [flag, value]
    run("make_case.py", *args, "--out", out)
    return out


def reference(case, out=None, check_fd=False, model=None, sequence=None):
    args = ["--model", model or os.path.join(case, "model"),
            "--sequence", sequence or os.path.join(case, "sequence.json")]
    if out:
        args += ["--out", out]
    if check_fd:
        args.append("--check-fd")
    proc = run("reference_grad.py", *args, check=False)
    return proc, (json.loads(proc.stdout) if proc.stdout.strip() else None)


def read_gradient(directory, stems):
    grad = {}
    for stem in stems:
        path = os.path.join(directory, stem + ".mtx")
        if scipy.io.mminfo(path)[3] == "coordinate":
            grad[stem] = read_coordinate(path)
        else:
            grad[stem] = read_array(path)
    return grad


def sigmoid(a):
    return 1.0 / (1.0 + math.exp(-a))


# --------------------------------------------------------------------------

def test_finite_differences(root):
    cases = []
    for cell in ("rnn", "gru", "lstm"):
        cases.append((cell, dict(cell=cell, inputs=3, hidden=5, outputs=4, density=0.4, steps=8, seed=1)))
        cases.append((cell + " independent masks, shuffled",
                      dict(cell=cell, inputs=4, hidden=7, outputs=3, density=0.3, steps=12, seed=7,
                           independent_gate_masks=True, shuffle_entries=True)))
    for label, options in cases:
        case = make_case(root, "fd_" + label.replace(" ", "_").replace(",", ""), **options)
        proc, result = reference(case, check_fd=True)
        err = result["fd_check"]["max_rel_error"] if result else float("nan")
        report(f"finite differences, {label}", proc.returncode == 0 and err <= 1e-6,
               f"loss {result['loss']:.6f}, max rel err {err:.2e}" if result else proc.stderr.strip())


def test_egru_finite_differences(root):
    case = make_case(root, "egru_fire", cell="egru", inputs=4, hidden=8, outputs=3, density=0.5,
                     steps=20, seed=2, independent_gate_masks=True)
    proc, result = reference(case, check_fd=True)
    fd = result["fd_check"] if result else {}
    fired = fd.get("note", "").split()[0] if fd else "?"
    report("egru, units firing: finite differences vs H' = 0 gradient",
           proc.returncode == 0 and fd["max_rel_error"] <= 1e-6 and fired != "0",
           f"{fd.get('note', proc.stderr.strip())}; max rel err {fd.get('max_rel_error', float('nan')):.2e}")

    case = make_case(root, "egru_silent", cell="egru", inputs=4, hidden=8, outputs=3, density=0.5,
                     steps=20, seed=3, threshold_range=(5.0, 10.0))
    grad_dir = os.path.join(case, "grad")
    proc, result = reference(case, out=grad_dir, check_fd=True)
    fd = result["fd_check"] if result else {}
    grad = read_gradient(grad_dir, ["weight_ih", "weight_hh", "bias_ih", "bias_hh", "threshold",
                                    "readout_weight", "readout_bias"])
    core_zero = all(np.all(grad[s][3] == 0) for s in ("weight_ih", "weight_hh")) and \
        all(np.all(grad[s] == 0) for s in ("bias_ih", "bias_hh", "threshold", "readout_weight"))
    report("egru, thresholds 5–10 (no events, H' = 0): finite differences vs reported gradient",
           proc.returncode == 0 and fd["max_rel_error"] <= 1e-6 and fd["note"].startswith("0 events")
           and "zero everywhere" in fd["note"] and core_zero,
           f"{fd.get('note', proc.stderr.strip())}; max rel err {fd.get('max_rel_error', float('nan')):.2e}; "
           f"all but readout_bias exactly zero: {core_zero}")


def write_scalar_egru(directory, w_ih, w_hh, b_ih, b_hh, theta, w_out, b_out, extra_config):
    """A k = 1, n = 1 egru model; every weight entry stored (w_hh has one stored 0.0)."""
    os.makedirs(directory, exist_ok=True)
    config = {"cell": "egru", "input_size": 1, "hidden_size": 1, "output_size": len(b_out), **extra_config}
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f)
    write_coordinate(os.path.join(directory, "weight_ih.mtx"), (3, 1), [0, 1, 2], [0, 0, 0], w_ih)
    write_coordinate(os.path.join(directory, "weight_hh.mtx"), (3, 1), [0, 1, 2], [0, 0, 0], w_hh)
    write_array(os.path.join(directory, "bias_ih.mtx"), np.array(b_ih).reshape(3, 1))
    write_array(os.path.join(directory, "bias_hh.mtx"), np.array(b_hh).reshape(3, 1))
    write_array(os.path.join(directory, "threshold.mtx"), np.array([[theta]]))
    write_array(os.path.join(directory, "readout_weight.mtx"), np.array(w_out).reshape(-1, 1))
    write_array(os.path.join(directory, "readout_bias.mtx"), np.array(b_out).reshape(-1, 1))


def hand_one_step(w_ih, w_hh, b_ih, b_hh, theta, w_out, b_out, x, target, dampening, support):
    """Loss and every partial derivative of one egru step from zero state, by the chain rule."""
    a_r = w_ih[0] * x + b_ih[0] + b_hh[0]          # W_hr · y_0 = 0
    a_z = w_ih[1] * x + b_ih[1] + b_hh[1]
    r, z = sigmoid(a_r), sigmoid(a_z)
    n = math.tanh(w_ih[2] * x + b_ih[2] + r * b_hh[2])
    v = (1 - z) * n                                 # z · h_0 = 0
    u = v - theta
    o = 1.0 if u > 0 else 0.0
    y = o * v
    logits = [w * y + b for w, b in zip(w_out, b_out)]
    top = max(logits)
    lse = top + math.log(sum(math.exp(l - top) for l in logits))
    loss = lse - logits[target]
    dlogits = [math.exp(l - lse) - (1.0 if j == target else 0.0) for j, l in enumerate(logits)]

    pseudo = dampening * max(0.0, 1.0 - support * abs(u))   # H'(u)
    g_y = sum(w * d for w, d in zip(w_out, dlogits))
    g_v = g_y * (o + v * pseudo)                    # y = H(v − ϑ) · v
    g_theta = g_y * (-v * pseudo)
    g_an = g_v * (1 - z) * (1 - n * n)              # pre-activation of n
    g_az = g_v * (-n) * z * (1 - z)
    g_ar = g_an * b_hh[2] * r * (1 - r)             # n's argument holds r · (W_hn y + b_hn) = r · b_hn
    return loss, {
        "weight_ih": np.array([g_ar * x, g_az * x, g_an * x]),
        "weight_hh": np.zeros(3),                   # multiplies y_0 = 0
        "bias_ih": np.array([[g_ar], [g_az], [g_an]]),
        "bias_hh": np.array([[g_ar], [g_az], [g_an * r]]),
        "threshold": np.array([[g_theta]]),
        "readout_weight": np.array(dlogits).reshape(-1, 1) * y,
        "readout_bias": np.array(dlogits).reshape(-1, 1),
    }, {"u": u, "o": o, "pseudo": pseudo}


def test_egru_hand_one_step(root):
    base = dict(w_ih=[0.4, -1.1, 1.7], w_hh=[0.3, 0.0, -0.8], b_ih=[0.2, -0.3, 0.5],
                b_hh=[-0.1, 0.25, 0.6], w_out=[0.9, -1.3, 0.4], b_out=[0.1, 0.0, -0.2])
    scenarios = [
        # (label, threshold, config, dampening, support)
        ("fires, u inside support", 0.6, {"dampening": 0.45, "support": 2.0}, 0.45, 2.0),
        ("silent, u inside support", 0.9, {"dampening": 0.45, "support": 2.0}, 0.45, 2.0),
        ("fires, default dampening/support", 0.1, {}, 0.7, 1.0),
        ("silent, u outside support", 2.5, {"dampening": 0.7, "support": 1.0}, 0.7, 1.0),
    ]
    x, target = 1.3, 2
    for i, (label, theta, config, dampening, support) in enumerate(scenarios):
        model_dir = os.path.join(root, f"hand_{i}", "model")
        write_scalar_egru(model_dir, theta=theta, extra_config=config, **base)
        seq = os.path.join(root, f"hand_{i}", "sequence.json")
        with open(seq, "w") as f:
            json.dump({"inputs": [[x]], "targets": [target]}, f)
        grad_dir = os.path.join(root, f"hand_{i}", "grad")
        proc, result = reference(None, out=grad_dir, model=model_dir, sequence=seq)
        loss, expected, info = hand_one_step(theta=theta, x=x, target=target, dampening=dampening,
                                             support=support, **base)
        got = read_gradient(grad_dir, expected)
        errs = []
        for stem, want in expected.items():
            have = got[stem][3] if isinstance(got[stem], tuple) else got[stem]
            errs.append(float(np.max(np.abs(have - want))))
        loss_err = abs(result["loss"] - loss) if result else float("inf")
        worst = max(errs + [loss_err])
        report(f"egru one step by hand, {label}", proc.returncode == 0 and worst <= 1e-14,
               f"u = {info['u']:+.4f}, H = {info['o']:.0f}, H' = {info['pseudo']:.4f}, "
               f"dL/dϑ = {expected['threshold'][0, 0]:+.6f}, max abs err {worst:.1e}")


def egru_bptt(model_dir, sequence_path):
    """Loss and gradient of an egru model by a hand-written backward pass (plain numpy)."""
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    k = config["hidden_size"]
    dampening, support = config.get("dampening", 0.7), config.get("support", 1.0)
    shape_ih, ri, ci, vi = read_coordinate(os.path.join(model_dir, "weight_ih.mtx"))
    shape_hh, rh, ch, vh = read_coordinate(os.path.join(model_dir, "weight_hh.mtx"))
    w_ih = np.zeros(shape_ih)
    w_ih[ri, ci] = vi
    w_hh = np.zeros(shape_hh)
    w_hh[rh, ch] = vh
    b_ih = read_array(os.path.join(model_dir, "bias_ih.mtx"))[:, 0]
    b_hh = read_array(os.path.join(model_dir, "bias_hh.mtx"))[:, 0]
    theta = read_array(os.path.join(model_dir, "threshold.mtx"))[:, 0]
    w_out = read_array(os.path.join(model_dir, "readout_weight.mtx"))
    b_out = read_array(os.path.join(model_dir, "readout_bias.mtx"))[:, 0]
    with open(sequence_path) as f:
        seq = json.load(f)

    def sig(a):
        return 1.0 / (1.0 + np.exp(-a))

    tape, loss = [], 0.0
    h, y = np.zeros(k), np.zeros(k)
    for x, target in zip(np.array(seq["inputs"], dtype=float), seq["targets"]):
        ai, ah = w_ih @ x + b_ih, w_hh @ y + b_hh
        r, z = sig(ai[:k] + ah[:k]), sig(ai[k:2 * k] + ah[k:2 * k])
        n = np.tanh(ai[2 * k:] + r * ah[2 * k:])
        v = z * h + (1 - z) * n
        u = v - theta
        o = (u > 0).astype(float)
        h_new, y_new = v - o * theta, o * v
        d_logits = None
        if target >= 0:
            logits = w_out @ y_new + b_out
            top = logits.max()
            lse = top + np.log(np.exp(logits - top).sum())
            loss += lse - logits[target]
            d_logits = np.exp(logits - lse)
            d_logits[target] -= 1.0
        tape.append(dict(x=x, h=h, y=y, r=r, z=z, n=n, hn=ah[2 * k:], v=v, u=u, o=o,
                         y_new=y_new, d_logits=d_logits))
        h, y = h_new, y_new

    g = {name: np.zeros_like(a) for name, a in
         dict(w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh, theta=theta, w_out=w_out, b_out=b_out).items()}
    g_h, g_y = np.zeros(k), np.zeros(k)                  # dL/dh_t, dL/dy_t from later steps
    for s in reversed(tape):
        if s["d_logits"] is not None:
            g["w_out"] += np.outer(s["d_logits"], s["y_new"])
            g["b_out"] += s["d_logits"]
            g_y = g_y + w_out.T @ s["d_logits"]
        pseudo = dampening * np.maximum(0.0, 1.0 - support * np.abs(s["u"]))
        # h_t = v − H(v − ϑ) ϑ and y_t = H(v − ϑ) v
        g_v = g_h * (1 - theta * pseudo) + g_y * (s["o"] + s["v"] * pseudo)
        g["theta"] += g_h * (-s["o"] + theta * pseudo) + g_y * (-s["v"] * pseudo)
        g_z = g_v * (s["h"] - s["n"])
        g_n = g_v * (1 - s["z"])
        g_an = g_n * (1 - s["n"] ** 2)
        g_r = g_an * s["hn"]
        g_ar, g_az = g_r * s["r"] * (1 - s["r"]), g_z * s["z"] * (1 - s["z"])
        g_ai = np.concatenate([g_ar, g_az, g_an])
        g_ah = np.concatenate([g_ar, g_az, g_an * s["r"]])
        g["w_ih"] += np.outer(g_ai, s["x"])
        g["b_ih"] += g_ai
        g["w_hh"] += np.outer(g_ah, s["y"])
        g["b_hh"] += g_ah
        g_h = g_v * s["z"]
        g_y = w_hh.T @ g_ah
    return loss, {
        "weight_ih": g["w_ih"][ri, ci], "weight_hh": g["w_hh"][rh, ch],
        "bias_ih": g["b_ih"][:, None], "bias_hh": g["b_hh"][:, None], "threshold": g["theta"][:, None],
        "readout_weight": g["w_out"], "readout_bias": g["b_out"][:, None],
    }


def test_egru_bptt(root):
    cases = [
        ("default pseudo-derivative", dict(cell="egru", inputs=4, hidden=8, outputs=3, density=0.5,
                                           steps=25, seed=11)),
        ("dampening 0.3 support 3, independent masks", dict(cell="egru", inputs=5, hidden=12, outputs=4,
                                                            density=0.3, steps=40, seed=12, dampening=0.3,
                                                            support=3.0, independent_gate_masks=True,
                                                            shuffle_entries=True)),
    ]
    for label, options in cases:
        case = make_case(root, "bptt_" + str(options["seed"]), **options)
        grad_dir = os.path.join(case, "grad")
        proc, result = reference(case, out=grad_dir)
        loss, expected = egru_bptt(os.path.join(case, "model"), os.path.join(case, "sequence.json"))
        got = read_gradient(grad_dir, expected)
        worst = 0.0
        for stem, want in expected.items():
            have = got[stem][3] if isinstance(got[stem], tuple) else got[stem]
            scale = max(np.max(np.abs(want)), np.max(np.abs(have)), 1e-300)
            worst = max(worst, float(np.max(np.abs(have - want)) / scale))
        worst = max(worst, abs(result["loss"] - loss) / abs(loss))
        report(f"egru many steps vs hand-written BPTT, {label}", proc.returncode == 0 and worst <= 1e-12,
               f"loss {loss:.6f}, max rel err {worst:.1e}")


def test_files(root):
    case = make_case(root, "files", cell="gru", inputs=5, hidden=5, outputs=5, density=0.5, steps=6, seed=5,
                     zero_fraction=0.3, shuffle_entries=True)
    grad_dir = os.path.join(case, "grad")
    reference(case, out=grad_dir)
    ok, details = True, []
    for stem in ("weight_ih", "weight_hh"):
        m_shape, m_rows, m_cols, m_vals = read_coordinate(os.path.join(case, "model", stem + ".mtx"))
        g_shape, g_rows, g_cols, _ = read_coordinate(os.path.join(grad_dir, stem + ".mtx"))
        header = open(os.path.join(grad_dir, stem + ".mtx")).readline().strip()
        same = (m_shape == g_shape and np.array_equal(m_rows, g_rows) and np.array_equal(m_cols, g_cols)
                and header == "%%MatrixMarket matrix coordinate real general")
        ok &= same
        details.append(f"{stem}: {len(m_rows)} entries, {int(np.sum(m_vals == 0))} explicit zeros, "
                       f"{'same' if same else 'DIFFERENT'} pattern")
    for stem in ("bias_ih", "bias_hh", "readout_weight", "readout_bias"):
        header = open(os.path.join(grad_dir, stem + ".mtx")).readline().strip()
        ok &= header == "%%MatrixMarket matrix array real general"
    report("gradient files keep the model pattern (square 5×5 readout stays general)", ok, "; ".join(details))

    same = run("compare_grads.py", grad_dir, grad_dir, check=False)
    report("compare_grads: identical directories pass", same.returncode == 0,
           same.stdout.strip().splitlines()[-1])

    changed = os.path.join(case, "grad_changed")
    reference(case, out=changed)
    shape, rows, cols, vals = read_coordinate(os.path.join(changed, "weight_hh.mtx"))
    vals[0] *= 1 + 1e-6
    order = np.argsort(-rows, kind="stable")  # reorder entries: comparison must not depend on order
    write_coordinate(os.path.join(changed, "weight_hh.mtx"), shape, rows[order], cols[order], vals[order])
    diff = run("compare_grads.py", grad_dir, changed, check=False)
    report("compare_grads: a 1e-6 change fails at tol 1e-9", diff.returncode == 1,
           [l for l in diff.stdout.splitlines() if l.startswith("weight_hh")][0])

    write_coordinate(os.path.join(changed, "weight_hh.mtx"), shape, rows[1:], cols[1:], vals[1:])
    diff = run("compare_grads.py", grad_dir, changed, check=False)
    report("compare_grads: a missing entry is a pattern mismatch", diff.returncode == 1
           and "PATTERN MISMATCH" in diff.stdout,
           [l for l in diff.stdout.splitlines() if l.startswith("weight_hh")][0])

    bad = {
        "target out of range": {"inputs": [[0.0] * 5], "targets": [5]},
        "wrong input width": {"inputs": [[0.0] * 4], "targets": [0]},
        "non-finite input": {"inputs": [[0.0] * 4 + [float("nan")]], "targets": [0]},
    }
    for label, sequence in bad.items():
        path = os.path.join(case, "bad.json")
        with open(path, "w") as f:
            json.dump(sequence, f)
        proc, _ = reference(case, sequence=path)
        report(f"rejects {label}", proc.returncode != 0 and not proc.stdout and proc.stderr.count("\n") == 1,
               proc.stderr.strip())


# --------------------------------------------------------------------------
# Stacked layers (contract §1b)
# --------------------------------------------------------------------------

LAYER_STEMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "threshold")


def model_files(directory):
    return sorted(f for f in os.listdir(directory) if f.endswith(".mtx"))


def test_stack_finite_differences(root):
    """Every cell with L = 2 and 3: the stacked gradient against central finite differences.

    The check is a relative error per file, and finite differences carry ~1e-9 absolute roundoff,
    so the seeds are ones where every layer's gradient is far above that (in a stack where an upper
    layer barely responds, the lower layers' gradients can be ~1e-9 and the per-file error is then
    roundoff, not a wrong gradient). egru follows test_egru_finite_differences: with units firing the
    finite differences are compared with the H' = 0 gradient, and every layer must fire; with
    thresholds 5–10 nothing fires, H' vanishes, and the reported gradient itself is compared.
    """
    cases = [("rnn", 2, 31), ("rnn", 3, 31), ("gru", 2, 31), ("gru", 3, 31),
             ("lstm", 2, 31), ("lstm", 3, 32), ("egru", 2, 31), ("egru", 3, 31)]
    for cell, layers, seed in cases:
        options = dict(cell=cell, inputs=3, hidden=5, outputs=3, density=0.5, steps=8, seed=seed,
                       layers=layers, independent_gate_masks=True)
        if cell == "egru":
            options["threshold_range"] = (0.0, 0.1)
        case = make_case(root, f"stack_fd_{cell}_{layers}", **options)
        proc, result = reference(case, check_fd=True)
        fd = result["fd_check"] if result else {}
        ok = proc.returncode == 0 and fd.get("max_rel_error", 1.0) <= 1e-6
        files = len(fd.get("per_file", {}))
        ok &= files == layers * (5 if cell == "egru" else 4) + 2
        detail = f"{files} files, max rel err {fd.get('max_rel_error', float('nan')):.2e}"
        if cell == "egru":
            fired = fd.get("events_per_layer", [])
            ok &= len(fired) == layers and min(fired) > 0 and "H' = 0 gradient" in fd.get("note", "")
            detail += f", events per layer {fired}, compared with the H' = 0 gradient"
        report(f"stack: finite differences, {cell} L = {layers}", ok,
               detail if result else proc.stderr.strip())

    case = make_case(root, "stack_fd_egru_silent", cell="egru", inputs=3, hidden=5, outputs=3, density=0.5,
                     steps=8, seed=33, layers=2, threshold_range=(5.0, 10.0))
    grad_dir = os.path.join(case, "grad")
    proc, result = reference(case, out=grad_dir, check_fd=True)
    fd = result["fd_check"] if result else {}
    core_zero = all(np.all(read_coordinate(os.path.join(grad_dir, f"{s}_l{l}.mtx"))[3] == 0)
                    for s in ("weight_ih", "weight_hh") for l in range(2)) and \
        all(np.all(read_array(os.path.join(grad_dir, f"{s}_l{l}.mtx")) == 0)
            for s in ("bias_ih", "bias_hh", "threshold") for l in range(2))
    report("stack: egru L = 2, thresholds 5–10 (no events, H' = 0): finite differences vs reported gradient",
           proc.returncode == 0 and fd.get("max_rel_error", 1.0) <= 1e-6
           and fd.get("events_per_layer") == [0, 0] and "zero everywhere" in fd.get("note", "") and core_zero,
           f"max rel err {fd.get('max_rel_error', float('nan')):.2e}; every layer's gradient exactly zero: "
           f"{core_zero}")


def test_stack_suffix_single(root):
    """L = 1 under the _l0 names (make_case --suffix-single, or "num_layers": 1 in config.json)."""
    for cell in ("rnn", "gru", "lstm", "egru"):
        options = dict(cell=cell, inputs=3, hidden=4, outputs=3, density=0.5, steps=10, seed=51,
                       shuffle_entries=True)
        plain = make_case(root, f"single_{cell}", **options)
        suffixed = make_case(root, f"single_{cell}_l0", suffix_single=True, **options)
        explicit = os.path.join(root, f"single_{cell}_explicit")
        shutil.copytree(plain, explicit)
        config_path = os.path.join(explicit, "model", "config.json")
        with open(config_path) as f:
            config = json.load(f)
        with open(config_path, "w") as f:
            json.dump({**config, "num_layers": 1}, f)

        def rename(name):  # unsuffixed file name -> _l0 name
            stem = name[:-4]
            return f"{stem}_l0.mtx" if stem in LAYER_STEMS else name

        problems = []
        plain_files = model_files(os.path.join(plain, "model"))
        if model_files(os.path.join(suffixed, "model")) != sorted(map(rename, plain_files)):
            problems.append("make_case --suffix-single wrote other file names")
        else:
            for name in plain_files:
                if not filecmp.cmp(os.path.join(plain, "model", name),
                                   os.path.join(suffixed, "model", rename(name)), shallow=False):
                    problems.append(f"model file {rename(name)} differs from {name}")
        runs = {}
        for label, case in (("plain", plain), ("_l0", suffixed), ("num_layers 1", explicit)):
            grad_dir = os.path.join(case, "grad")
            proc, result = reference(case, out=grad_dir)
            if proc.returncode != 0:
                problems.append(f"{label}: {proc.stderr.strip()}")
                continue
            runs[label] = (result["loss"], grad_dir)
        if len(runs) == 3:
            loss, plain_grad = runs["plain"]
            for label, mapping in (("_l0", rename), ("num_layers 1", lambda name: name)):
                other_loss, other_grad = runs[label]
                if other_loss != loss:
                    problems.append(f"{label}: loss {other_loss!r} != {loss!r}")
                names = model_files(plain_grad)
                if model_files(other_grad) != sorted(map(mapping, names)):
                    problems.append(f"{label}: gradient files {model_files(other_grad)}")
                    continue
                for name in names:  # byte-identical files hold identical values and patterns
                    if not filecmp.cmp(os.path.join(plain_grad, name), os.path.join(other_grad, mapping(name)),
                                       shallow=False):
                        problems.append(f"{label}: gradient {mapping(name)} differs")
        report(f"stack: {cell} L = 1 under _l0 names and with \"num_layers\": 1: same loss and gradient bytes",
               not problems, "; ".join(problems) if problems else
               f"loss {runs['plain'][0]:.6f}, {len(plain_files)} files, gradient written under the names read")


def test_stack_reader_errors(root):
    """Directories that break §1b are rejected: one sentence on stderr, exit status 2, nothing on stdout."""
    base = make_case(root, "stack_bad_base", cell="egru", inputs=3, hidden=4, outputs=2, steps=5, seed=61,
                     layers=2)
    single = make_case(root, "stack_bad_single", cell="gru", inputs=3, hidden=4, outputs=2, steps=5, seed=62)
    sequence = os.path.join(base, "sequence.json")

    def set_layers(value):
        def edit(model):
            path = os.path.join(model, "config.json")
            with open(path) as f:
                config = json.load(f)
            config["num_layers"] = value
            with open(path, "w") as f:
                json.dump(config, f)
        return edit

    def copy(src, dst):
        return lambda model: shutil.copyfile(os.path.join(model, src), os.path.join(model, dst))

    def remove(name):
        return lambda model: os.remove(os.path.join(model, name))

    def rename(src, dst):
        return lambda model: os.rename(os.path.join(model, src), os.path.join(model, dst))

    cases = [
        # (label, source case, edit, text the message must contain)
        ("L = 2 with an unsuffixed file added", base, copy("weight_ih_l0.mtx", "weight_ih.mtx"), "mixes"),
        ("L = 1 with one file under its _l0 name", single, rename("bias_hh.mtx", "bias_hh_l0.mtx"), "mixes"),
        ("L = 2 lacking weight_hh_l1", base, remove("weight_hh_l1.mtx"), "weight_hh_l1.mtx"),
        ("L = 2 lacking threshold_l1 (egru)", base, remove("threshold_l1.mtx"), "threshold_l1.mtx"),
        ("num_layers 3 with two layers' files", base, set_layers(3), "weight_ih_l2.mtx"),
        ("num_layers 1 with layer 1's files", base, set_layers(1), "num_layers is 1"),
        ("L = 2 with unsuffixed names only", single, set_layers(2), "num_layers is 2"),
        ("weight_ih_l1 of shape G·k × n", base, copy("weight_ih_l0.mtx", "weight_ih_l1.mtx"), "expected 12×4"),
        ("num_layers 0", base, set_layers(0), "num_layers"),
        ("num_layers \"2\"", base, set_layers("2"), "num_layers"),
        ("num_layers 1.5", base, set_layers(1.5), "num_layers"),
        ("num_layers true", base, set_layers(True), "num_layers"),
    ]
    for i, (label, source, edit, needle) in enumerate(cases):
        model = os.path.join(root, f"stack_bad_{i}")
        shutil.copytree(os.path.join(source, "model"), model)
        edit(model)
        proc, _ = reference(None, model=model, sequence=sequence)
        report(f"stack: rejects {label}", proc.returncode == 2 and not proc.stdout
               and proc.stderr.count("\n") == 1 and needle in proc.stderr, proc.stderr.strip())


def hand_stacked_loss(model_dir, sequence_path, feed="output"):
    """Loss of a (stacked) model by a plain numpy forward pass written out cell by cell.

    Reads the files with scipy.io.mmread directly. feed="output" passes each layer's output up
    the stack (h; y for egru), as contract §1b says; feed="other" passes the other state variable
    (c for lstm, h for egru) instead, a deliberately wrong wiring used as a negative control.
    """
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    cell, k = config["cell"], config["hidden_size"]
    layers = config.get("num_layers", 1)
    suffixed = layers > 1 or os.path.exists(os.path.join(model_dir, "weight_ih_l0.mtx"))

    def load(stem):
        m = scipy.io.mmread(os.path.join(model_dir, stem + ".mtx"))
        return m.toarray() if scipy.sparse.issparse(m) else np.asarray(m)

    params = []
    for l in range(layers):
        sfx = f"_l{l}" if suffixed else ""
        params.append(dict(w_ih=load("weight_ih" + sfx), w_hh=load("weight_hh" + sfx),
                           b_ih=load("bias_ih" + sfx)[:, 0], b_hh=load("bias_hh" + sfx)[:, 0],
                           theta=load("threshold" + sfx)[:, 0] if cell == "egru" else None))
    w_out, b_out = load("readout_weight"), load("readout_bias")[:, 0]
    with open(sequence_path) as f:
        seq = json.load(f)

    def sig(a):
        return 1.0 / (1.0 + np.exp(-a))

    first = [np.zeros(k) for _ in range(layers)]   # h (all cells)
    second = [np.zeros(k) for _ in range(layers)]  # c (lstm), y (egru)
    loss = 0.0
    for x, target in zip(np.array(seq["inputs"], dtype=float), seq["targets"]):
        inp = x
        for l, p in enumerate(params):
            h = first[l]
            if cell == "rnn":
                h = np.tanh(p["w_ih"] @ inp + p["b_ih"] + p["w_hh"] @ h + p["b_hh"])
                out = other = h
            elif cell == "gru":
                a, b = p["w_ih"] @ inp + p["b_ih"], p["w_hh"] @ h + p["b_hh"]
                r = sig(a[:k] + b[:k])
                z = sig(a[k:2 * k] + b[k:2 * k])
                n = np.tanh(a[2 * k:] + r * b[2 * k:])
                h = (1 - z) * n + z * h
                out = other = h
            elif cell == "lstm":
                a = p["w_ih"] @ inp + p["b_ih"] + p["w_hh"] @ h + p["b_hh"]
                c = sig(a[k:2 * k]) * second[l] + sig(a[:k]) * np.tanh(a[2 * k:3 * k])
                h = sig(a[3 * k:]) * np.tanh(c)
                second[l] = c
                out, other = h, c
            else:  # egru: the gates read the layer's own emitted y
                a, b = p["w_ih"] @ inp + p["b_ih"], p["w_hh"] @ second[l] + p["b_hh"]
                r = sig(a[:k] + b[:k])
                z = sig(a[k:2 * k] + b[k:2 * k])
                n = np.tanh(a[2 * k:] + r * b[2 * k:])
                v = z * h + (1 - z) * n
                fire = (v - p["theta"] > 0).astype(float)
                h = v - fire * p["theta"]
                second[l] = fire * v
                out, other = second[l], h
            first[l] = h
            inp = out if feed == "output" else other
        if target >= 0:
            logits = w_out @ out + b_out  # the readout reads the top layer's output
            top = logits.max()
            loss += top + np.log(np.exp(logits - top).sum()) - logits[target]
    return loss


def test_stack_hand_forward(root):
    """A hand-written numpy forward pass of the stack against reference_grad.py's loss (to 1e-12)."""
    cases = [("gru", 2), ("gru", 3), ("rnn", 2), ("lstm", 2), ("egru", 2), ("egru", 3)]
    for cell, layers in cases:
        options = dict(cell=cell, inputs=4, hidden=6, outputs=3, density=0.4, steps=30, seed=70 + layers,
                       layers=layers, shuffle_entries=True)
        if cell == "egru":
            options["threshold_range"] = (0.0, 0.2)
        case = make_case(root, f"stack_hand_{cell}_{layers}", **options)
        model, seq = os.path.join(case, "model"), os.path.join(case, "sequence.json")
        proc, result = reference(case)
        want = hand_stacked_loss(model, seq)
        diff = abs(result["loss"] - want) if result else float("inf")
        ok = proc.returncode == 0 and diff <= 1e-12 * max(1.0, abs(want))
        detail = f"loss {want:.12f}, |difference| {diff:.1e}"
        if cell in ("lstm", "egru"):  # the check must notice a wrong wiring
            wrong = hand_stacked_loss(model, seq, feed="other")
            ok &= abs(wrong - want) > 1e-6 * max(1.0, abs(want))
            detail += f"; feeding {'c' if cell == 'lstm' else 'h'} up instead gives {wrong:.6f}"
        report(f"stack: {cell} L = {layers} loss vs hand-written numpy forward pass", ok, detail)


def test_stack_torch(root):
    """If PyTorch is importable: a 2-layer torch.nn.GRU with the model's weights gives the same loss."""
    try:
        import torch
    except ImportError:
        print("SKIP  stack: gru L = 2 loss vs torch.nn.GRU(num_layers=2)  (PyTorch is not installed)")
        return
    n, k, o = 3, 5, 4
    case = make_case(root, "stack_torch", cell="gru", inputs=n, hidden=k, outputs=o, density=1.0,
                     zero_fraction=0.0, steps=12, seed=81, layers=2)
    model = os.path.join(case, "model")
    proc, result = reference(case)
    with open(os.path.join(case, "sequence.json")) as f:
        seq = json.load(f)

    def load(stem):
        m = scipy.io.mmread(os.path.join(model, stem + ".mtx"))
        return np.array(m.toarray() if scipy.sparse.issparse(m) else m, dtype=np.float64)

    gru = torch.nn.GRU(input_size=n, hidden_size=k, num_layers=2, batch_first=False).double()
    with torch.no_grad():
        for l in range(2):
            for stem in ("weight_ih", "weight_hh"):
                getattr(gru, f"{stem}_l{l}").copy_(torch.from_numpy(load(f"{stem}_l{l}")))
            for stem in ("bias_ih", "bias_hh"):
                getattr(gru, f"{stem}_l{l}").copy_(torch.from_numpy(load(f"{stem}_l{l}")[:, 0]))
        x = torch.tensor(seq["inputs"], dtype=torch.float64).reshape(len(seq["inputs"]), 1, n)
        out, _ = gru(x)  # (T, 1, k): the top layer's h at every step, from zero initial states
        logits = out[:, 0, :] @ torch.from_numpy(load("readout_weight")).T + torch.from_numpy(
            load("readout_bias")[:, 0])
        targets = torch.tensor(seq["targets"])
        keep = targets >= 0
        want = float(torch.nn.functional.cross_entropy(logits[keep], targets[keep], reduction="sum"))
    diff = abs(result["loss"] - want) if result else float("inf")
    report("stack: gru L = 2 loss vs torch.nn.GRU(num_layers=2) with the model's weights",
           proc.returncode == 0 and diff <= 1e-12 * max(1.0, abs(want)),
           f"torch {torch.__version__}: loss {want:.12f}, |difference| {diff:.1e}")


def test_stack_files(root):
    """Gradient files of a stack: the model's names and patterns; compare_grads.py by suffixed names."""
    case = make_case(root, "stack_files", cell="lstm", inputs=3, hidden=4, outputs=3, density=0.5, steps=6,
                     seed=91, layers=3, zero_fraction=0.3, shuffle_entries=True)
    model, grad_dir = os.path.join(case, "model"), os.path.join(case, "grad")
    reference(case, out=grad_dir)
    names = model_files(model)
    ok = model_files(grad_dir) == names
    zeros = 0
    for name in names:
        header = open(os.path.join(grad_dir, name)).readline().strip()
        if name.startswith("weight_"):
            m_shape, m_rows, m_cols, m_vals = read_coordinate(os.path.join(model, name))
            g_shape, g_rows, g_cols, _ = read_coordinate(os.path.join(grad_dir, name))
            zeros += int(np.sum(m_vals == 0))
            ok &= (m_shape == g_shape and np.array_equal(m_rows, g_rows) and np.array_equal(m_cols, g_cols)
                   and header == "%%MatrixMarket matrix coordinate real general")
        else:
            ok &= header == "%%MatrixMarket matrix array real general"
    report("stack: lstm L = 3 gradient files have the model's names and stored patterns", ok,
           f"{len(names)} files ({', '.join(n[:-4] for n in names if n.endswith('_l2.mtx'))}, …), "
           f"{zeros} explicit zeros kept")

    same = run("compare_grads.py", grad_dir, grad_dir, check=False)
    report("stack: compare_grads passes on identical stacked directories",
           same.returncode == 0 and sum(".mtx " in l for l in same.stdout.splitlines()) == len(names),
           same.stdout.strip().splitlines()[-1])

    changed = os.path.join(case, "grad_changed")
    shutil.copytree(grad_dir, changed)
    shape, rows, cols, vals = read_coordinate(os.path.join(changed, "weight_ih_l1.mtx"))
    vals[0] += 1e-6 * np.max(np.abs(vals))
    write_coordinate(os.path.join(changed, "weight_ih_l1.mtx"), shape, rows, cols, vals)
    diff = run("compare_grads.py", grad_dir, changed, check=False)
    errors = {l.split()[0]: float(l.split()[-1]) for l in diff.stdout.splitlines() if ".mtx " in l}
    nonzero = sorted(name for name, err in errors.items() if err != 0)
    report("stack: compare_grads fails on a 1e-6 change in weight_ih_l1 and only that file differs",
           diff.returncode == 1 and len(errors) == len(names) and nonzero == ["weight_ih_l1.mtx"]
           and 1e-7 < errors["weight_ih_l1.mtx"] < 1e-5,
           f"files with a nonzero error: {nonzero}, "
           f"weight_ih_l1 {errors.get('weight_ih_l1.mtx', float('nan')):.1e}")

    plain = make_case(root, "stack_files_plain", cell="gru", inputs=3, hidden=4, outputs=3, steps=5, seed=92)
    suffixed = make_case(root, "stack_files_l0", cell="gru", inputs=3, hidden=4, outputs=3, steps=5, seed=92,
                         suffix_single=True)
    for c in (plain, suffixed):
        reference(c, out=os.path.join(c, "grad"))
    diff = run("compare_grads.py", os.path.join(plain, "grad"), os.path.join(suffixed, "grad"), check=False)
    report("stack: compare_grads fails when the file names differ (weight_ih vs weight_ih_l0)",
           diff.returncode == 1 and "file sets differ" in diff.stdout, diff.stdout.strip().splitlines()[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", help="write the cases here instead of a temporary directory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or tmp
        os.makedirs(root, exist_ok=True)
        test_finite_differences(root)
        test_egru_finite_differences(root)
        test_egru_hand_one_step(root)
        test_egru_bptt(root)
        test_files(root)
        test_stack_finite_differences(root)
        test_stack_suffix_single(root)
        test_stack_reader_errors(root)
        test_stack_hand_forward(root)
        test_stack_torch(root)
        test_stack_files(root)
    print(f"{PASSES[0]} checks passed, {PASSES[1]} of them stack checks; "
          + (f"{len(FAILURES)} failure(s)" if FAILURES else "all checks passed"))
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
