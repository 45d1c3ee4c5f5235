#!/usr/bin/env python3
"""How much of one stochastic gradient estimate is signal, on a delayed-recall sequence.

    python3 estimator_snr.py --rtrl PATH --work DIR [--hidden 16 32 64] [--methods ...]
                             [--lag 16] [--length 200] [--samples 50]

For each hidden size k: a new rnn (`rtrl init`, 8 inputs, 5 outputs, density 0.3, seed 1) and
one delayed-recall sequence written here (the `--task delay` stream: a symbol among 4 with
probability 0.25, else a distractor among 4; the target is the token seen `lag` steps earlier if
it was a symbol, class 4 "blank" otherwise). The exact gradient of the sequence's loss comes
from `rtrl grad --method rtrl`; each method is then run with seeds 1 … S, one estimate each.
Over the recurrent core (every file but the readout's, which every method computes exactly) it
prints one Markdown row per (k, method):

- cos: the mean cosine between an estimate and the exact gradient (1 for an exact method; about
  1/sqrt(1 + noise/signal) for an unbiased one whose noise is spread over many directions);
- error: the mean of |estimate - exact| / |exact| (Euclidean norms);
- mean of S: the same relative error of the mean of the S estimates (an unbiased estimator's
  falls as 1/sqrt(S));
- long-range cos: the mean cosine between e - g_H and g - g_H, with g_H the gradient of TBPTT
  over H = lag/2 steps (`--method tbptt-H`): g - g_H is the part of the gradient that only
  dependencies longer than H steps carry, the part delayed recall needs and truncation lacks, so
  this says how much of an estimate's departure from truncated BPTT points that way.
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_estimator import read_directory  # noqa: E402

READOUT = ("readout_weight.mtx", "readout_bias.mtx")


def delay_sequence(length, lag, seed):
    rng = np.random.default_rng(seed)
    tokens = [int(rng.integers(0, 4)) if rng.random() < 0.25 else 4 + int(rng.integers(0, 4)) for _ in range(length)]
    inputs = [[1.0 if i == t else 0.0 for i in range(8)] for t in tokens]
    targets = [tokens[t - lag] if t >= lag and tokens[t - lag] < 4 else 4 for t in range(length)]
    return {"inputs": inputs, "targets": targets}


def core_vector(directory):
    files = read_directory(directory)
    return np.concatenate([files[name] for name in sorted(files) if name not in READOUT])


def gradient(rtrl, model, sequence, method, seed, out):
    subprocess.run([rtrl, "grad", "--model", model, "--sequence", sequence, "--method", method,
                    "--seed", str(seed), "--out", out], check=True, stdout=subprocess.DEVNULL)
    return core_vector(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rtrl", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--hidden", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--methods", nargs="+", default=["nobacktrack", "uoro", "kf-rtrl", "snap-1", "rtrl"])
    parser.add_argument("--lag", type=int, default=16)
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--samples", type=int, default=50)
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    sequence = os.path.join(args.work, "sequence.json")
    with open(sequence, "w") as f:
        json.dump(delay_sequence(args.length, args.lag, seed=1), f)
    print("| k | method | cos (mean over %d estimates) | error of one estimate | error of their mean | long-range cos |" % args.samples)
    print("|---|---|---|---|---|---|")
    for k in args.hidden:
        model = os.path.join(args.work, "rnn-%d" % k)
        if not os.path.isdir(model):
            subprocess.run([args.rtrl, "init", "--cell", "rnn", "--inputs", "8", "--hidden", str(k), "--outputs", "5",
                            "--density", "0.3", "--seed", "1", "--out", model], check=True, stdout=subprocess.DEVNULL)
        exact = gradient(args.rtrl, model, sequence, "rtrl", 0, os.path.join(args.work, "exact-%d" % k))
        norm = np.linalg.norm(exact)
        truncated = gradient(args.rtrl, model, sequence, "tbptt-%d" % max(1, args.lag // 2), 0,
                             os.path.join(args.work, "truncated-%d" % k))
        far = exact - truncated
        for method in args.methods:
            estimates = np.array([gradient(args.rtrl, model, sequence, method, s, os.path.join(args.work, "estimate"))
                                  for s in range(1, args.samples + 1)])
            cos = np.mean([e @ exact / (np.linalg.norm(e) * norm) for e in estimates])
            error = np.mean([np.linalg.norm(e - exact) / norm for e in estimates])
            mean_error = np.linalg.norm(estimates.mean(axis=0) - exact) / norm
            far_cos = np.mean([(e - truncated) @ far / (np.linalg.norm(e - truncated) * np.linalg.norm(far)) for e in estimates])
            print("| %d | %s | %.3f | %.2f | %.2f | %.3f |" % (k, method, cos, error, mean_error, far_cos))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
