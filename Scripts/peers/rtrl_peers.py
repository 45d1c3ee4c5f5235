"""Dense RTRL in JAX and NumPy on a model directory: the peers `Scripts/bench-peers` times the
package against (benchmarks only; nothing in the package or its tests uses this).

Implementations, all with the weights of the model directory (contract section 1) and random
inputs and targets, one online step at a time (forward, influence update, gradient):

- jax-exact: textbook dense RTRL, jitted. J is a dense S x p matrix over the stored parameters;
  each step forms the dense one-step Jacobian D (S x S) and the dense immediate Jacobian I
  (S x p) and computes J <- D @ J + I, then g += w' J.
- jax-snap: the same with SnAp-n's mask applied every step, J <- (D @ J + I) * M, M the dense
  0/1 pattern of math.md section 3 (the "dense-masked" way of running SnAp).
- numpy-exact: dense RTRL for the rnn cell in NumPy (one matmul per step for D @ J).

Only the rnn, gru and lstm cells are written here (contract section 2). Prints one JSON line.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
import mtx_io  # noqa: E402

GATES = {"rnn": 1, "gru": 3, "lstm": 4}


class Model:
    def __init__(self, directory):
        with open(os.path.join(directory, "config.json")) as f:
            config = json.load(f)
        self.cell = config["cell"]
        if self.cell not in GATES:
            raise SystemExit(f"the peers support rnn, gru and lstm, not {self.cell}")
        self.n, self.k, self.o = config["input_size"], config["hidden_size"], config["output_size"]
        self.components = 2 if self.cell == "lstm" else 1
        self.S = self.components * self.k
        (_, self.ih_rows, self.ih_cols, self.ih_values) = mtx_io.read_coordinate(os.path.join(directory, "weight_ih.mtx"))
        (_, self.hh_rows, self.hh_cols, self.hh_values) = mtx_io.read_coordinate(os.path.join(directory, "weight_hh.mtx"))
        self.b_ih = mtx_io.read_array(os.path.join(directory, "bias_ih.mtx"))[:, 0]
        self.b_hh = mtx_io.read_array(os.path.join(directory, "bias_hh.mtx"))[:, 0]
        self.w_out = mtx_io.read_array(os.path.join(directory, "readout_weight.mtx"))
        self.b_out = mtx_io.read_array(os.path.join(directory, "readout_bias.mtx"))[:, 0]
        gk = GATES[self.cell] * self.k
        self.W_ih = np.zeros((gk, self.n))
        self.W_ih[self.ih_rows, self.ih_cols] = self.ih_values
        self.W_hh = np.zeros((gk, self.k))
        self.W_hh[self.hh_rows, self.hh_cols] = self.hh_values
        # theta: stored input weights, stored recurrent weights, both biases.
        self.p = len(self.ih_values) + len(self.hh_values) + 2 * gk

    def unit_of_parameters(self):
        gk = GATES[self.cell] * self.k
        rows = np.concatenate([self.ih_rows, self.hh_rows, np.arange(gk), np.arange(gk)])
        return rows % self.k

    def snap_mask(self, n):
        """Dense 0/1 mask of SnAp-n (math.md section 3), S x p."""
        k = self.k
        adjacency = np.zeros((k, k), dtype=bool)  # adjacency[i, j]: unit i depends on unit j
        adjacency[self.hh_rows % k, self.hh_cols] = True
        if self.cell != "rnn":
            adjacency[np.arange(k), np.arange(k)] = True
        reach = np.eye(k, dtype=bool)  # reach[u, i]: u within n-1 hops of i
        frontier = reach.copy()
        for _ in range(n - 1):
            frontier = (adjacency.astype(np.int64) @ frontier.astype(np.int64)) > 0
            reach |= frontier
        unit_mask = reach[:, self.unit_of_parameters()]  # k x p
        return np.tile(unit_mask, (self.components, 1)).astype(np.float64)


def jax_step_function(model, mask):
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    k, cell = model.k, model.cell
    W_ih, W_hh = jnp.asarray(model.W_ih), jnp.asarray(model.W_hh)
    b_ih, b_hh = jnp.asarray(model.b_ih), jnp.asarray(model.b_hh)
    w_out, b_out = jnp.asarray(model.w_out), jnp.asarray(model.b_out)
    ih_rows, ih_cols = jnp.asarray(model.ih_rows), jnp.asarray(model.ih_cols)
    hh_rows, hh_cols = jnp.asarray(model.hh_rows), jnp.asarray(model.hh_cols)
    M = None if mask is None else jnp.asarray(mask)

    def core(s, a_ih, a_hh):
        h = s[:k]
        if cell == "rnn":
            return jnp.tanh(a_ih + a_hh)
        if cell == "gru":
            r = jax.nn.sigmoid(a_ih[:k] + a_hh[:k])
            z = jax.nn.sigmoid(a_ih[k:2 * k] + a_hh[k:2 * k])
            n = jnp.tanh(a_ih[2 * k:] + r * a_hh[2 * k:])
            return (1 - z) * n + z * h
        c = s[k:]
        a = a_ih + a_hh
        i, f, g, o = (jax.nn.sigmoid(a[:k]), jax.nn.sigmoid(a[k:2 * k]), jnp.tanh(a[2 * k:3 * k]),
                      jax.nn.sigmoid(a[3 * k:]))
        c_new = f * c + i * g
        return jnp.concatenate([o * jnp.tanh(c_new), c_new])

    jacobian = jax.jacfwd(core, argnums=(0, 1, 2))

    def step(s, J, g, x, target):
        h = s[:k]
        a_ih = W_ih @ x + b_ih
        a_hh = W_hh @ h + b_hh
        s_new = core(s, a_ih, a_hh)
        d_s, d_ih, d_hh = jacobian(s, a_ih, a_hh)
        D = d_s.at[:, :k].add(d_hh @ W_hh)
        I = jnp.concatenate([d_ih[:, ih_rows] * x[ih_cols], d_hh[:, hh_rows] * h[hh_cols], d_ih, d_hh], axis=1)
        J = D @ J + I
        if M is not None:
            J = J * M
        logits = w_out @ s_new[:k] + b_out
        p = jax.nn.softmax(logits)
        w_h = w_out.T @ (p - jax.nn.one_hot(target, logits.shape[0]))
        w = jnp.concatenate([w_h, jnp.zeros(s.shape[0] - k)])
        return s_new, J, g + w @ J, -jnp.log(p[target])

    return jax.jit(step, donate_argnums=(1, 2)), jnp


def numpy_rnn_step(model):
    W_ih, W_hh, b_ih, b_hh = model.W_ih, model.W_hh, model.b_ih, model.b_hh
    ih_rows, ih_cols, hh_rows, hh_cols = model.ih_rows, model.ih_cols, model.hh_rows, model.hh_cols
    k, p = model.k, model.p
    n_ih, n_hh = len(ih_rows), len(hh_rows)
    units = model.unit_of_parameters()
    columns = np.arange(p)
    I = np.zeros((k, p))
    spare = [np.zeros((k, p))]  # the next J, written in place (no allocation per step)

    def step(s, J, g, x, target):
        h_new = np.tanh(W_ih @ x + b_ih + W_hh @ s + b_hh)
        a = 1 - h_new * h_new
        D = a[:, None] * W_hh
        feature = np.concatenate([x[ih_cols], s[hh_cols], np.ones(2 * k)])
        I[units, columns] = a[units] * feature
        J_new = spare[0]
        np.matmul(D, J, out=J_new)
        J_new += I
        I[units, columns] = 0
        spare[0], J = J, J_new
        logits = model.w_out @ h_new + model.b_out
        e = np.exp(logits - logits.max())
        prob = e / e.sum()
        prob[target] -= 1
        g += (model.w_out.T @ prob) @ J
        return h_new, J, g

    assert n_ih + n_hh + 2 * k == p
    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--impl", required=True, choices=["jax-exact", "jax-snap", "numpy-exact"])
    parser.add_argument("--n", type=int, default=2, help="SnAp order for jax-snap")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    model = Model(args.model)
    rng = np.random.default_rng(args.seed)
    inputs = rng.standard_normal((args.warmup + args.steps, model.n))
    targets = rng.integers(0, model.o, args.warmup + args.steps)
    times = []
    if args.impl == "numpy-exact":
        if model.cell != "rnn":
            raise SystemExit("numpy-exact is written for the rnn cell only")
        step = numpy_rnn_step(model)
        s, J, g = np.zeros(model.k), np.zeros((model.k, model.p)), np.zeros(model.p)
        for t in range(args.warmup + args.steps):
            start = time.perf_counter()
            s, J, g = step(s, J, g, inputs[t], targets[t])
            if t >= args.warmup:
                times.append(time.perf_counter() - start)
        multiply_adds = model.S * model.S * model.p
    else:
        mask = model.snap_mask(args.n) if args.impl == "jax-snap" else None
        step, jnp = jax_step_function(model, mask)
        s, J, g = jnp.zeros(model.S), jnp.zeros((model.S, model.p)), jnp.zeros(model.p)
        x_all, y_all = jnp.asarray(inputs), jnp.asarray(targets)
        for t in range(args.warmup + args.steps):
            start = time.perf_counter()
            s, J, g, loss = step(s, J, g, x_all[t], y_all[t])
            loss.block_until_ready()
            J.block_until_ready()
            if t >= args.warmup:
                times.append(time.perf_counter() - start)
        multiply_adds = model.S * model.S * model.p
    times = np.array(times)
    print(json.dumps({"impl": args.impl, "model": args.model, "cell": model.cell, "k": model.k, "p": model.p,
                      "seconds_per_step": float(np.median(times)), "p10": float(np.quantile(times, 0.1)),
                      "p90": float(np.quantile(times, 0.9)), "dense_multiply_adds": multiply_adds,
                      "threads": os.environ.get("PEER_THREADS", "default")}))


if __name__ == "__main__":
    main()
