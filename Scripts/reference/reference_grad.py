#!/usr/bin/env python3
"""Independent reference gradient for an `rtrl` model directory (contract §1–3).

    python3 reference_grad.py --model DIR --sequence FILE --out DIR [--check-fd]

Reads a model directory and a sequence, computes the loss
L = Σ_t CE(softmax(readout_weight · s_t + readout_bias), target_t) from a zero
initial state, and its gradient with respect to every parameter by reverse-mode
automatic differentiation (autograd), all in float64. The gradient is written as
a model directory without config.json: coordinate files keep exactly the model's
stored entries (explicit zeros included), array files are dense. stdout gets one
JSON line {"loss": L, "steps": T}.

For egru the step function H keeps its exact value in the forward pass and its
derivative is replaced by the pseudo-derivative
    H'(u) = dampening · max(0, 1 − support · |u|)
wherever H appears.

--check-fd additionally compares the gradient with central finite differences of
the loss (step 1e-6, every parameter) and reports the result on stderr. For egru,
where L is piecewise smooth in the parameters, the finite differences are compared
with the gradient taken with H' ≡ 0 (the true derivative of the piecewise-smooth
loss); the pseudo-derivative gradient itself cannot be checked this way.

Stacked models (contract §1b): config.json may give "num_layers": L (absent
means 1). Layer l's files are weight_ih_l{l}, weight_hh_l{l}, bias_ih_l{l},
bias_hh_l{l} (egru also threshold_l{l}); weight_ih_l0 is G·k × n and
weight_ih_l{l} for l >= 1 is G·k × k. L = 1 uses the unsuffixed names or, all
of them, the _l0 names; L >= 2 only the suffixed names. Mixed names, a missing
layer file, a layer file for a layer >= L, or a wrong shape is an error. Within a
step the layers run bottom-up, layer l >= 1 reading layer l-1's output of the
same step (h; y for egru) in place of x; the readout reads the top layer. The
gradient files have the names the model's files were read under.
"""

import argparse
import json
import math
import os
import re
import sys

import autograd.numpy as anp
import numpy as np
from autograd import value_and_grad
from autograd.extend import defvjp, primitive
from autograd.scipy.special import logsumexp

from mtx_io import FormatError, read_array, read_coordinate, write_array, write_coordinate

GATES = {"rnn": 1, "gru": 3, "egru": 3, "lstm": 4}
LAYER_FILES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")  # per layer; egru adds "threshold"


class InputError(Exception):
    """Bad model or sequence; reported as one sentence on stderr."""


# --------------------------------------------------------------------------
# Differentiable building blocks
# --------------------------------------------------------------------------

@primitive
def scatter(values, rows, cols, shape):
    """Dense matrix with `values` at (rows, cols) and zeros elsewhere."""
    dense = np.zeros(shape)
    dense[rows, cols] = values  # indices are unique (checked on reading)
    return dense


defvjp(scatter, lambda ans, values, rows, cols, shape: lambda g: g[rows, cols])


@primitive
def heaviside(u, dampening, support):
    """H(u) = 1 if u > 0 else 0, differentiated with the pseudo-derivative."""
    return (u > 0).astype(np.float64)


def _heaviside_vjp(ans, u, dampening, support):
    pseudo = dampening * np.maximum(0.0, 1.0 - support * np.abs(u))
    return lambda g: g * pseudo


defvjp(heaviside, _heaviside_vjp)


def sigmoid(a):
    return 0.5 * (anp.tanh(0.5 * a) + 1.0)


# --------------------------------------------------------------------------
# Model and sequence
# --------------------------------------------------------------------------

class Model:
    """A model directory: configuration, sparsity patterns and parameter values.

    `params` maps each file stem (the file name without .mtx, e.g. "weight_hh" or
    "weight_hh_l1") to its values: a vector in file order for the coordinate files,
    a 2-D array (the file's shape) for the array files. `layer_names[l]` maps the
    per-layer base names (weight_ih, …, threshold) to layer l's file stems.
    """

    def __init__(self, directory):
        config_path = os.path.join(directory, "config.json")
        try:
            with open(config_path) as f:
                config = json.load(f)
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read {config_path} ({exc})") from exc
        if not isinstance(config, dict):
            raise InputError(f"{config_path} does not hold a JSON object")
        self.cell = config.get("cell")
        if self.cell not in GATES:
            raise InputError(f"{config_path} has unknown cell {self.cell!r}")
        try:
            self.n = int(config["input_size"])
            self.k = int(config["hidden_size"])
            self.o = int(config["output_size"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{config_path} lacks a valid size field ({exc})") from exc
        self.dampening = float(config.get("dampening", 0.7))
        self.support = float(config.get("support", 1.0))
        layers = config.get("num_layers", 1)
        if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
            raise InputError(f"{config_path} has num_layers {layers!r}, expected an integer of at least 1")
        self.layers = layers

        base_names = LAYER_FILES + (("threshold",) if self.cell == "egru" else ())
        suffixed = self._naming(directory, base_names)
        self.layer_names = [
            {base: (f"{base}_l{layer}" if suffixed else base) for base in base_names}
            for layer in range(self.layers)
        ]

        gk = GATES[self.cell] * self.k
        self.shapes = {}  # file stem -> shape, in the order the files are read and written
        self.coordinate_stems = set()
        for layer, names in enumerate(self.layer_names):
            self.shapes[names["weight_ih"]] = (gk, self.n if layer == 0 else self.k)
            self.shapes[names["weight_hh"]] = (gk, self.k)
            self.shapes[names["bias_ih"]] = (gk, 1)
            self.shapes[names["bias_hh"]] = (gk, 1)
            self.coordinate_stems.update((names["weight_ih"], names["weight_hh"]))
        self.shapes["readout_weight"] = (self.o, self.k)
        self.shapes["readout_bias"] = (self.o, 1)
        if self.cell == "egru":
            for names in self.layer_names:
                self.shapes[names["threshold"]] = (self.k, 1)

        self.patterns = {}  # stem -> (rows, cols)
        self.params = {}
        for stem, shape in self.shapes.items():
            path = os.path.join(directory, stem + ".mtx")
            if not os.path.isfile(path):
                what = f"num_layers is {self.layers}" if suffixed else "a single-layer model with unsuffixed names"
                raise InputError(f"{directory} lacks {stem}.mtx ({what})")
            if stem in self.coordinate_stems:
                file_shape, rows, cols, values = read_coordinate(path)
                self.patterns[stem] = (rows, cols)
            else:
                values = read_array(path)
                file_shape = values.shape
            if tuple(file_shape) != shape:
                raise InputError(f"{path} is {file_shape[0]}×{file_shape[1]}, expected {shape[0]}×{shape[1]}")
            self.params[stem] = values

    def _naming(self, directory, base_names):
        """Whether the per-layer files carry the _l{l} suffix; rejects mixed or surplus names."""
        try:
            files = set(os.listdir(directory))
        except OSError as exc:
            raise InputError(f"cannot list {directory} ({exc})") from exc
        plain = sorted(f for f in files if f[:-4] in base_names and f.endswith(".mtx"))
        pattern = re.compile(r"(%s)_l(0|[1-9][0-9]*)\.mtx" % "|".join(base_names))
        suffixed = sorted(f for f in files if pattern.fullmatch(f))
        if plain and suffixed:
            raise InputError(f"{directory} mixes unsuffixed layer files ({', '.join(plain)}) "
                             f"with suffixed ones ({', '.join(suffixed)})")
        beyond = [f for f in suffixed if int(pattern.fullmatch(f).group(2)) >= self.layers]
        if beyond:
            raise InputError(f"{directory} has {', '.join(beyond)} but num_layers is {self.layers}")
        if self.layers >= 2:
            if plain:
                raise InputError(f"{directory} has unsuffixed layer files ({', '.join(plain)}) "
                                 f"but num_layers is {self.layers}, which needs the _l{{l}} names")
            return True
        return bool(suffixed)  # L = 1: the _l0 names if those are what is there

    def stems(self):
        return list(self.shapes)


def read_sequence(path, model):
    try:
        with open(path) as f:
            sequence = json.load(f)
        inputs = sequence["inputs"]
        targets = sequence["targets"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"cannot read a sequence with inputs and targets from {path} ({exc})") from exc
    if len(inputs) != len(targets):
        raise InputError(f"{path} has {len(inputs)} input rows but {len(targets)} targets")
    for t, row in enumerate(inputs):
        if not isinstance(row, list) or len(row) != model.n:
            width = len(row) if isinstance(row, list) else "not a list"
            raise InputError(f"input row {t} of {path} has width {width}, expected {model.n}")
    try:
        x = np.array(inputs, dtype=np.float64).reshape(len(inputs), model.n)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path} has a non-numeric input ({exc})") from exc
    if not np.all(np.isfinite(x)):
        raise InputError(f"{path} has a non-finite input")
    y = []
    for t, target in enumerate(targets):
        valid = (isinstance(target, (int, float)) and not isinstance(target, bool)
                 and math.isfinite(target) and target == int(target)
                 and (target == -1 or 0 <= target < model.o))
        if not valid:
            raise InputError(f"target {target!r} at step {t} of {path} is outside [0, {model.o}) and not -1")
        y.append(int(target))
    return x, y


# --------------------------------------------------------------------------
# Cells: step(params, state, x) -> (new state, readout input s_t)
# --------------------------------------------------------------------------

def gate_blocks(v, g, k):
    return [v[i * k:(i + 1) * k] for i in range(g)]


def rnn_step(p, state, x, model):
    (h,) = state
    h = anp.tanh(p["W_ih"] @ x + p["b_ih"] + p["W_hh"] @ h + p["b_hh"])
    return (h,), h


def gru_step(p, state, x, model):
    (h,) = state
    xr, xz, xn = gate_blocks(p["W_ih"] @ x + p["b_ih"], 3, model.k)
    hr, hz, hn = gate_blocks(p["W_hh"] @ h + p["b_hh"], 3, model.k)
    r = sigmoid(xr + hr)
    z = sigmoid(xz + hz)
    n = anp.tanh(xn + r * hn)
    h = (1.0 - z) * n + z * h
    return (h,), h


def lstm_step(p, state, x, model):
    h, c = state
    gi, gf, gg, go = gate_blocks(p["W_ih"] @ x + p["b_ih"] + p["W_hh"] @ h + p["b_hh"], 4, model.k)
    c = sigmoid(gf) * c + sigmoid(gi) * anp.tanh(gg)
    h = sigmoid(go) * anp.tanh(c)
    return (h, c), h


def egru_candidate(p, h, y, x, k):
    """v = z ⊙ h + (1 − z) ⊙ n, with the gates reading the emitted output y."""
    xr, xz, xn = gate_blocks(p["W_ih"] @ x + p["b_ih"], 3, k)
    yr, yz, yn = gate_blocks(p["W_hh"] @ y + p["b_hh"], 3, k)
    r = sigmoid(xr + yr)
    z = sigmoid(xz + yz)
    n = anp.tanh(xn + r * yn)
    return z * h + (1.0 - z) * n


def egru_step(p, state, x, model):
    h, y = state
    v = egru_candidate(p, h, y, x, model.k)
    theta = p["threshold"]
    event = heaviside(v - theta, model.dampening, model.support)
    h = v - event * theta
    y = event * v
    return (h, y), y


STEPS = {"rnn": rnn_step, "gru": gru_step, "lstm": lstm_step, "egru": egru_step}
STATE_SIZE = {"rnn": 1, "gru": 1, "lstm": 2, "egru": 2}


def dense_params(params, model, layer=0):
    """Layer `layer`'s parameters as dense matrices and bias vectors (differentiably)."""
    names = model.layer_names[layer]
    p = {
        "W_ih": scatter(params[names["weight_ih"]], *model.patterns[names["weight_ih"]],
                        model.shapes[names["weight_ih"]]),
        "W_hh": scatter(params[names["weight_hh"]], *model.patterns[names["weight_hh"]],
                        model.shapes[names["weight_hh"]]),
        "b_ih": params[names["bias_ih"]][:, 0],
        "b_hh": params[names["bias_hh"]][:, 0],
    }
    if model.cell == "egru":
        p["threshold"] = params[names["threshold"]][:, 0]
    return p


def loss(params, model, inputs, targets):
    """L as a function of the parameter dict (values as stored in the files)."""
    p = [dense_params(params, model, layer) for layer in range(model.layers)]
    readout_w = params["readout_weight"]
    readout_b = params["readout_bias"][:, 0]

    step = STEPS[model.cell]
    states = [tuple(np.zeros(model.k) for _ in range(STATE_SIZE[model.cell])) for _ in range(model.layers)]
    total = 0.0
    for x, target in zip(inputs, targets):
        s = x
        for layer in range(model.layers):  # bottom-up: layer l reads layer l-1's output of this step
            states[layer], s = step(p[layer], states[layer], s, model)
        if target >= 0:
            logits = readout_w @ s + readout_b
            total = total + (logsumexp(logits) - logits[target])  # −log softmax(logits)[target]
    return total


def loss_and_gradient(model, inputs, targets):
    if all(t < 0 for t in targets):  # L ≡ 0: autograd would warn about a constant function
        value = loss(model.params, model, inputs, targets)
        return float(value), {stem: np.zeros_like(v) for stem, v in model.params.items()}
    value, gradient = value_and_grad(loss)(model.params, model, inputs, targets)
    return float(value), gradient


# --------------------------------------------------------------------------
# Output and finite-difference check
# --------------------------------------------------------------------------

def write_gradient(directory, model, gradient):
    os.makedirs(directory, exist_ok=True)
    for stem in model.stems():
        path = os.path.join(directory, stem + ".mtx")
        if stem in model.coordinate_stems:
            rows, cols = model.patterns[stem]
            write_coordinate(path, model.shapes[stem], rows, cols, gradient[stem])
        else:
            write_array(path, gradient[stem])


def finite_difference_gradient(model, inputs, targets, eps):
    """Central differences (L(p + eps·e_j) − L(p − eps·e_j)) / (2 eps) for every parameter."""
    params = {stem: v.copy() for stem, v in model.params.items()}
    fd = {}
    for stem, values in params.items():
        out = np.zeros_like(values)
        flat, flat_out = values.reshape(-1), out.reshape(-1)  # views into params / out
        for j in range(flat.size):
            original = flat[j]
            flat[j] = original + eps
            plus = loss(params, model, inputs, targets)
            flat[j] = original - eps
            minus = loss(params, model, inputs, targets)
            flat[j] = original
            flat_out[j] = (plus - minus) / (2.0 * eps)
        fd[stem] = out
    return fd


def relative_error(a, b):
    scale = max(np.max(np.abs(a), initial=0.0), np.max(np.abs(b), initial=0.0), 1e-300)
    return float(np.max(np.abs(a - b), initial=0.0) / scale)


def egru_activity(model, inputs):
    """Per layer, counts of (step, unit) pairs where an egru unit fires (H = 1) and where H' ≠ 0."""
    p = [dense_params(model.params, model, layer) for layer in range(model.layers)]
    h = [np.zeros(model.k) for _ in range(model.layers)]
    y = [np.zeros(model.k) for _ in range(model.layers)]
    events, active = [0] * model.layers, [0] * model.layers
    for x in inputs:
        below = x
        for layer, q in enumerate(p):
            v = egru_candidate(q, h[layer], y[layer], below, model.k)
            u = v - q["threshold"]
            event = (u > 0).astype(np.float64)
            events[layer] += int(event.sum())
            active[layer] += int(np.count_nonzero(model.dampening
                                                  * np.maximum(0.0, 1.0 - model.support * np.abs(u))))
            h[layer], y[layer] = v - event * q["threshold"], event * v
            below = y[layer]
    return events, active


def check_finite_differences(model, inputs, targets, gradient, eps, tol):
    """Compare the gradient with central differences; returns a JSON-able summary."""
    note = None
    if model.cell == "egru":
        # Away from the switching surfaces L is smooth and the true dH/du is 0, so finite
        # differences estimate the gradient taken with H' ≡ 0. That is the reported gradient
        # only where the pseudo-derivative vanishes at every step and unit.
        per_layer, active_per_layer = egru_activity(model, inputs)
        events, active = sum(per_layer), sum(active_per_layer)
        if active:
            saved = model.dampening
            model.dampening = 0.0
            _, gradient = loss_and_gradient(model, inputs, targets)
            model.dampening = saved
            note = (f"{events} events, pseudo-derivative nonzero at {active} (step, unit) pairs, "
                    "so compared with the H' = 0 gradient, not the reported one")
        else:
            note = f"{events} events, pseudo-derivative zero everywhere, so the reported gradient is compared"
        if model.layers >= 2:
            note += f" (events per layer: {', '.join(map(str, per_layer))})"
    fd = finite_difference_gradient(model, inputs, targets, eps)
    per_file = {stem: relative_error(gradient[stem], fd[stem]) for stem in model.stems()}
    worst = max(per_file.values())
    print(f"finite-difference check (eps {eps:g}, tol {tol:g})" + (f": {note}" if note else ""),
          file=sys.stderr)
    for stem, err in per_file.items():
        print(f"  {stem:16s} {np.asarray(gradient[stem]).size:6d} params  max rel err {err:.3e}",
              file=sys.stderr)
    print(f"  overall max rel err {worst:.3e}: {'PASS' if worst <= tol else 'FAIL'}", file=sys.stderr)
    summary = {"max_rel_error": worst, "passed": worst <= tol, "per_file": per_file}
    if note:
        summary["note"] = note
    if model.cell == "egru" and model.layers >= 2:
        summary["events_per_layer"] = per_layer
    return summary


# --------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model directory")
    parser.add_argument("--sequence", required=True, help="sequence JSON file")
    parser.add_argument("--out", help="directory to write the gradient to")
    parser.add_argument("--check-fd", action="store_true", help="also check against finite differences")
    parser.add_argument("--fd-eps", type=float, default=1e-6, help="finite-difference step (default 1e-6)")
    parser.add_argument("--fd-tol", type=float, default=1e-6, help="allowed max relative error (default 1e-6)")
    args = parser.parse_args(argv)

    try:
        model = Model(args.model)
        inputs, targets = read_sequence(args.sequence, model)
        value, gradient = loss_and_gradient(model, inputs, targets)
        result = {"loss": value, "steps": len(targets)}
        if args.check_fd:
            result["fd_check"] = check_finite_differences(model, inputs, targets, gradient,
                                                          args.fd_eps, args.fd_tol)
        if args.out:
            write_gradient(args.out, model, gradient)
    except (InputError, FormatError) as exc:
        print(f"error: {exc}.", file=sys.stderr)
        return 2
    if not math.isfinite(value):
        print("error: the loss is not finite.", file=sys.stderr)
        return 2
    print(json.dumps(result))
    if args.check_fd and not result["fd_check"]["passed"]:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
