#!/usr/bin/env python3
"""Generate a random test case: a model directory (contract §1) and a sequence.

    python3 make_case.py --cell rnn|gru|lstm|egru --inputs n --hidden k --outputs o \
        --density d --steps T --seed S --out DIR

writes DIR/model/ and DIR/sequence.json. weight_ih and weight_hh get random masks
of density d (one mask shared by all gate blocks unless --independent-gate-masks;
every unit keeps at least one recurrent input); stored values are N(0, 1)/sqrt(k)
with a fraction (--zero-fraction, default 0.1) of the stored entries set to an
explicit 0.0. Biases and the readout are dense N(0, 1)/sqrt(k). For egru the
thresholds are uniform in --threshold-range (default 0.05 0.5). The sequence has
T steps of N(0, 1) inputs and targets uniform in [0, o), each -1 with
probability --no-target (default 0.2).

--layers L (default 1) stacks L layers (contract §1b): config.json gets
"num_layers": L and layer l's files are weight_ih_l{l}, weight_hh_l{l},
bias_ih_l{l}, bias_hh_l{l} (egru also threshold_l{l}); weight_ih_l{l} for l >= 1
is G·k × k, with its own mask of the same density and the same value
distribution as weight_ih_l0. With L = 1 the files keep the unsuffixed names
(and are byte-for-byte what they were before --layers existed) unless
--suffix-single asks for the _l0 names. Draw order: per layer, the two masks
then their values; per layer, bias_ih and bias_hh; the readout; per layer
(egru) the thresholds; the sequence.
"""

import argparse
import json
import os
import sys

import numpy as np

from mtx_io import write_array, write_coordinate

GATES = {"rnn": 1, "gru": 3, "egru": 3, "lstm": 4}


def random_mask(rng, rows, cols, density, at_least_one_per_row):
    mask = rng.random((rows, cols)) < density
    if at_least_one_per_row:
        for i in np.flatnonzero(~mask.any(axis=1)):
            mask[i, rng.integers(cols)] = True
    return mask


def gate_mask(rng, gates, k, cols, density, independent, at_least_one_per_row):
    """Mask of a G·k × cols weight: one k × cols mask tiled over the gate blocks, or one per block."""
    if independent:
        blocks = [random_mask(rng, k, cols, density, at_least_one_per_row) for _ in range(gates)]
    else:
        blocks = [random_mask(rng, k, cols, density, at_least_one_per_row)] * gates
    return np.vstack(blocks)


def sparse_values(rng, mask, scale, zero_fraction, shuffle):
    """(rows, cols, values) of the stored entries, some of them explicit zeros."""
    rows, cols = np.nonzero(mask)
    values = rng.normal(0.0, scale, size=rows.size)
    if rows.size:
        zeros = rng.random(rows.size) < zero_fraction
        if zero_fraction > 0 and not zeros.any():
            zeros[rng.integers(rows.size)] = True
        values[zeros] = 0.0
    if shuffle:
        order = rng.permutation(rows.size)
        rows, cols, values = rows[order], cols[order], values[order]
    return rows, cols, values


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cell", required=True, choices=sorted(GATES))
    parser.add_argument("--inputs", type=int, required=True, help="input size n")
    parser.add_argument("--hidden", type=int, required=True, help="hidden size k")
    parser.add_argument("--outputs", type=int, required=True, help="output size o")
    parser.add_argument("--density", type=float, default=0.3, help="mask density of weight_ih and weight_hh")
    parser.add_argument("--steps", type=int, default=10, help="sequence length T")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="case directory (model/ and sequence.json)")
    parser.add_argument("--independent-gate-masks", action="store_true",
                        help="draw a separate mask for each gate block")
    parser.add_argument("--zero-fraction", type=float, default=0.1,
                        help="fraction of stored weight entries set to an explicit 0.0")
    parser.add_argument("--shuffle-entries", action="store_true",
                        help="store coordinate entries in random order instead of row-major")
    parser.add_argument("--no-target", type=float, default=0.2, help="probability that a target is -1")
    parser.add_argument("--threshold-range", type=float, nargs=2, default=(0.05, 0.5), metavar=("LO", "HI"),
                        help="egru: thresholds uniform in [LO, HI]")
    parser.add_argument("--dampening", type=float, default=0.7, help="egru pseudo-derivative dampening")
    parser.add_argument("--support", type=float, default=1.0, help="egru pseudo-derivative support")
    parser.add_argument("--layers", type=int, default=1, help="number of stacked layers L (default 1)")
    parser.add_argument("--suffix-single", action="store_true",
                        help="with L = 1, write the _l0 file names instead of the unsuffixed ones")
    args = parser.parse_args(argv)

    n, k, o, gates = args.inputs, args.hidden, args.outputs, GATES[args.cell]
    if min(n, k, o) < 1 or args.steps < 0 or not 0.0 <= args.density <= 1.0:
        print("error: sizes must be positive, steps non-negative and density in [0, 1].", file=sys.stderr)
        return 2
    if args.layers < 1:
        print("error: --layers must be at least 1.", file=sys.stderr)
        return 2
    if args.suffix_single and args.layers != 1:
        print("error: --suffix-single applies only to --layers 1 (stacks always use suffixed names).",
              file=sys.stderr)
        return 2
    layers = args.layers
    suffixed = layers >= 2 or args.suffix_single

    def name(stem, layer):
        """File stem of a per-layer parameter (contract §1b)."""
        return f"{stem}_l{layer}" if suffixed else stem

    rng = np.random.default_rng(args.seed)
    scale = 1.0 / np.sqrt(k)

    model_dir = os.path.join(args.out, "model")
    os.makedirs(model_dir, exist_ok=True)
    config = {"cell": args.cell, "input_size": n, "hidden_size": k, "output_size": o}
    if args.cell == "egru":
        config.update(dampening=args.dampening, support=args.support)
    if layers >= 2:
        config["num_layers"] = layers
    with open(os.path.join(model_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")

    for layer in range(layers):
        cols_ih = n if layer == 0 else k  # layer l >= 1 reads layer l-1's k outputs
        masks = {
            name("weight_ih", layer): gate_mask(rng, gates, k, cols_ih, args.density,
                                                args.independent_gate_masks, False),
            name("weight_hh", layer): gate_mask(rng, gates, k, k, args.density,
                                                args.independent_gate_masks, True),
        }
        for stem, mask in masks.items():
            rows, cols, values = sparse_values(rng, mask, scale, args.zero_fraction, args.shuffle_entries)
            write_coordinate(os.path.join(model_dir, stem + ".mtx"), mask.shape, rows, cols, values)

    dense = {}
    for layer in range(layers):
        dense[name("bias_ih", layer)] = rng.normal(0.0, scale, size=(gates * k, 1))
        dense[name("bias_hh", layer)] = rng.normal(0.0, scale, size=(gates * k, 1))
    dense["readout_weight"] = rng.normal(0.0, scale, size=(o, k))
    dense["readout_bias"] = rng.normal(0.0, scale, size=(o, 1))
    if args.cell == "egru":
        lo, hi = args.threshold_range
        for layer in range(layers):
            dense[name("threshold", layer)] = rng.uniform(lo, hi, size=(k, 1))
    for stem, array in dense.items():
        write_array(os.path.join(model_dir, stem + ".mtx"), array)

    inputs = rng.normal(0.0, 1.0, size=(args.steps, n))
    targets = rng.integers(0, o, size=args.steps)
    targets[rng.random(args.steps) < args.no_target] = -1
    with open(os.path.join(args.out, "sequence.json"), "w") as f:
        json.dump({"inputs": inputs.tolist(), "targets": targets.tolist()}, f)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
