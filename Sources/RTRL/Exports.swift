// The RTRL library's API is built on the kernel layer's types (`SparseMatrix`, `SparsityPattern`,
// `DenseMatrix`, `SeededGenerator`, the product plans), so `import RTRL` brings them in too.
// Every re-export of the module is here.
@_exported import SparseKernels
