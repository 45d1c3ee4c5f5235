#!/usr/bin/env python3
"""Count the SnAp-n influence pattern of a model directory (contract §1b), independently of rtrl.

    python3 count_pattern.py --model DIR --n N        # N >= 1, or 0 / inf for the exact closure

prints one JSON line {"influence_nonzeros": nnz, "units": L·k, "layers": L}, to be compared with
`rtrl pattern --model DIR --n N`. Works on single-layer (L = 1, unsuffixed or _l0 names) and
stacked models. Only the weight PATTERNS matter: every stored entry, explicit zeros included, is an
edge and a parameter.

Unit-level graphs over the L·k units (unit i of layer l is node l·k + i):
  - within layer l: j -> i if weight_hh_l{l} stores an entry in a gate row g·k + i at column j,
    plus i -> i for gru, lstm and egru (the cell carries its own state);
  - upward: unit j of layer l-1 -> unit i of layer l if weight_ih_l{l} stores an entry in a gate
    row of unit i at column j (l >= 1).
R_1(u) = {u} ∪ every unit reachable from u by upward edges only (what u feeds within its step).
One hop of D's graph = one within-layer edge followed by any number of upward edges.
R_n(u) = units within n-1 hops of R_1(u); n = inf (or 0) is the closure.

Parameters of unit i of layer l: the stored entries of weight_ih_l{l} and weight_hh_l{l} in rows
g·k + i, the G entries of bias_ih_l{l} and of bias_hh_l{l} in those rows, and (egru) threshold_l{l}[i].
Count = Σ over parameters θ of components · |R_n(unit of θ)|, components = 2 for lstm (h and c), else 1.

Exit status 2 (one sentence on stderr) for an unreadable model or a bad --n.
"""

import argparse
import json
import os
import sys

import numpy as np

from mtx_io import FormatError, read_array, read_coordinate

GATES = {"rnn": 1, "gru": 3, "egru": 3, "lstm": 4}
COMPONENTS = {"rnn": 1, "gru": 1, "egru": 1, "lstm": 2}
SELF_STATE = {"rnn": False, "gru": True, "egru": True, "lstm": True}


class InputError(Exception):
    pass


def layer_paths(directory, layers, stem):
    """Paths of one per-layer parameter for every layer (unsuffixed names allowed only for L = 1)."""
    suffixed = [os.path.join(directory, f"{stem}_l{l}.mtx") for l in range(layers)]
    if layers == 1:
        plain = os.path.join(directory, f"{stem}.mtx")
        if os.path.isfile(plain) and os.path.isfile(suffixed[0]):
            raise InputError(f"{directory} has both {stem}.mtx and {stem}_l0.mtx")
        if os.path.isfile(plain):
            return [plain]
    for path in suffixed:
        if not os.path.isfile(path):
            raise InputError(f"{path} does not exist")
    return suffixed


def read_model(directory):
    """(cell, L, k, within, upward, params_per_unit): boolean edge matrices [source, target] over L·k units."""
    config_path = os.path.join(directory, "config.json")
    try:
        with open(config_path) as f:
            config = json.load(f)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {config_path} ({exc})") from exc
    cell = config.get("cell")
    if cell not in GATES:
        raise InputError(f"{config_path} has unknown cell {cell!r}")
    k = config.get("hidden_size")
    n_in = config.get("input_size")
    layers = config.get("num_layers", 1)
    for name, value in (("hidden_size", k), ("input_size", n_in), ("num_layers", layers)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InputError(f"{config_path} has {name} {value!r}, expected an integer of at least 1")
    gates = GATES[cell]
    units = layers * k

    within = np.zeros((units, units), dtype=bool)
    upward = np.zeros((units, units), dtype=bool)
    params = np.zeros(units, dtype=np.int64)

    hh_paths = layer_paths(directory, layers, "weight_hh")
    ih_paths = layer_paths(directory, layers, "weight_ih")
    bias_paths = [layer_paths(directory, layers, "bias_ih"), layer_paths(directory, layers, "bias_hh")]
    threshold_paths = layer_paths(directory, layers, "threshold") if cell == "egru" else []

    for l in range(layers):
        base = l * k
        shape, rows, cols, _ = read_coordinate(hh_paths[l])
        if tuple(shape) != (gates * k, k):
            raise InputError(f"{hh_paths[l]} is {shape[0]} × {shape[1]}, expected {gates * k} × {k}")
        unit = rows % k
        within[base + cols, base + unit] = True
        np.add.at(params, base + unit, 1)
        if SELF_STATE[cell]:
            within[base + np.arange(k), base + np.arange(k)] = True

        cols_expected = n_in if l == 0 else k
        shape, rows, cols, _ = read_coordinate(ih_paths[l])
        if tuple(shape) != (gates * k, cols_expected):
            raise InputError(f"{ih_paths[l]} is {shape[0]} × {shape[1]}, expected {gates * k} × {cols_expected}")
        unit = rows % k
        if l >= 1:
            upward[(l - 1) * k + cols, base + unit] = True
        np.add.at(params, base + unit, 1)

    for l, path in [(l, paths[l]) for paths in bias_paths for l in range(layers)]:
        bias = read_array(path)
        if bias.shape != (gates * k, 1):
            raise InputError(f"{path} is {bias.shape[0]} × {bias.shape[1]}, expected {gates * k} × 1")
        np.add.at(params, l * k + np.arange(gates * k) % k, 1)
    for l, path in enumerate(threshold_paths):
        threshold = read_array(path)
        if threshold.shape != (k, 1):
            raise InputError(f"{path} is {threshold.shape[0]} × {threshold.shape[1]}, expected {k} × 1")
        params[l * k:(l + 1) * k] += 1
    return cell, layers, k, within, upward, params


def step(reach, edges):
    """Boolean product: the units reached from each row's set by one edge."""
    return (reach.astype(np.float64) @ edges.astype(np.float64)) > 0


def reach_sets(within, upward, n):
    """Boolean matrix R[u, q]: q ∈ R_n(u). n = None means the closure."""
    units = within.shape[0]
    closure_up = np.eye(units, dtype=bool)  # reflexive-transitive closure of the upward edges
    while True:
        grown = closure_up | step(closure_up, upward)
        if np.array_equal(grown, closure_up):
            break
        closure_up = grown
    hop = step(within, closure_up)  # one within-layer edge, then any number of upward edges
    reach = closure_up.copy()  # R_1
    done = 1
    while n is None or done < n:
        grown = reach | step(reach, hop)
        done += 1
        if np.array_equal(grown, reach):
            break  # fixed point: every larger n gives the same sets
        reach = grown
    return reach


def parse_n(text):
    if text.lower() in ("inf", "0"):
        return None
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise InputError(f"--n must be an integer of at least 1, or 0 / inf, not {text!r}")
    return n


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model directory")
    parser.add_argument("--n", required=True, help="SnAp order N >= 1, or 0 / inf for the closure")
    args = parser.parse_args(argv)
    try:
        n = parse_n(args.n)
        cell, layers, k, within, upward, params = read_model(args.model)
    except (InputError, FormatError) as exc:
        print(f"error: {exc}.", file=sys.stderr)
        return 2
    reach = reach_sets(within, upward, n)
    count = COMPONENTS[cell] * int(np.dot(params, reach.sum(axis=1)))
    print(json.dumps({"influence_nonzeros": count, "units": layers * k, "layers": layers}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
