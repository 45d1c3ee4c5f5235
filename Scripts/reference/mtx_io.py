"""Matrix Market reading and writing for model and gradient directories.

Shared by reference_grad.py, make_case.py and compare_grads.py.

Coordinate files are kept as a (rows, cols, values) triplet list in file order,
explicit zeros included: in a model directory every stored entry is a
parameter, so nothing may be merged, dropped or reordered on the way in.
Writing goes through scipy.io.mmwrite with symmetry='general' and the result is
read back and checked; if scipy changed anything (dropped a zero, reordered,
rounded) the file is written by hand instead.
"""

import os

import numpy as np
import scipy.io
import scipy.sparse


class FormatError(Exception):
    """A file that does not match the model-directory format (contract §1)."""


def _info(path):
    if not os.path.isfile(path):
        raise FormatError(f"{path} does not exist")
    try:
        return scipy.io.mminfo(path)
    except Exception as exc:  # scipy raises several types for bad headers
        raise FormatError(f"{path} is not a readable Matrix Market file ({exc})") from exc


def _require(path, fmt_expected):
    """Check that `path` is a `<fmt_expected> real general` file; return its (rows, columns)."""
    n_rows, n_cols, _, fmt, field, symmetry = _info(path)
    if fmt != fmt_expected:
        raise FormatError(f"{path} must be a{'n' if fmt_expected == 'array' else ''} {fmt_expected} file, found {fmt}")
    if field not in ("real", "integer", "double"):
        raise FormatError(f"{path} must hold real values, found field {field}")
    if symmetry != "general":
        raise FormatError(f"{path} must be general, found {symmetry}")
    return n_rows, n_cols


def read_coordinate(path):
    """Read a `coordinate real general` file.

    Returns (shape, rows, cols, values): 0-based int64 index arrays and float64
    values, in file order, explicit zeros kept. Duplicate entries are an error.
    """
    n_rows, n_cols = _require(path, "coordinate")
    coo = scipy.io.mmread(path)
    if not scipy.sparse.issparse(coo) or coo.format != "coo":
        raise FormatError(f"{path} did not read as a coordinate matrix")
    rows = np.asarray(coo.row, dtype=np.int64)
    cols = np.asarray(coo.col, dtype=np.int64)
    values = np.asarray(coo.data, dtype=np.float64)
    keys = rows * n_cols + cols
    if np.unique(keys).size != keys.size:
        raise FormatError(f"{path} has duplicate entries")
    return (n_rows, n_cols), rows, cols, values


def read_array(path):
    """Read an `array real general` file as a dense float64 2-D array."""
    _require(path, "array")
    return np.array(scipy.io.mmread(path), dtype=np.float64, ndmin=2)


def _write_coordinate_by_hand(path, shape, rows, cols, values):
    with open(path, "w") as f:
        f.write("%%MatrixMarket matrix coordinate real general\n")
        f.write(f"{shape[0]} {shape[1]} {len(values)}\n")
        for i, j, v in zip(rows, cols, values):
            f.write(f"{i + 1} {j + 1} {float(v)!r}\n")


def _write_array_by_hand(path, array):
    with open(path, "w") as f:
        f.write("%%MatrixMarket matrix array real general\n")
        f.write(f"{array.shape[0]} {array.shape[1]}\n")
        for v in array.ravel(order="F"):  # Matrix Market arrays are column-major
            f.write(f"{float(v)!r}\n")


def write_coordinate(path, shape, rows, cols, values):
    """Write exactly the given entries (in the given order) as coordinate real general."""
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    coo = scipy.sparse.coo_matrix((values, (rows, cols)), shape=shape)
    scipy.io.mmwrite(path, coo, symmetry="general")
    try:
        got_shape, got_rows, got_cols, got_values = read_coordinate(path)
        faithful = (
            tuple(got_shape) == tuple(shape)
            and np.array_equal(got_rows, rows)
            and np.array_equal(got_cols, cols)
            and np.array_equal(got_values, values)
        )
    except FormatError:
        faithful = False
    if not faithful:
        _write_coordinate_by_hand(path, shape, rows, cols, values)


def write_array(path, array):
    """Write a dense 2-D array as array real general."""
    array = np.array(array, dtype=np.float64, ndmin=2)
    scipy.io.mmwrite(path, array, symmetry="general")
    try:
        faithful = np.array_equal(read_array(path), array)
    except FormatError:
        faithful = False
    if not faithful:
        _write_array_by_hand(path, array)
