// swift-tools-version:6.1
//
// SparseRTRL: sparse linear-algebra kernels over SuiteSparse, and online recurrent learning
// (exact RTRL, SnAp-n and unbiased estimators) on top.
//
// Layers depend downward only:
//   CSparseKernels (C: SuiteSparse shim + hot kernels)
//     <- SparseKernels (Swift kernel layer)
//       <- RTRL (recurrent learning)
//         <- RTRLCommand (the `rtrl` executable)
//       <- DistributedRTRL (RTRL over MPI processes; only with the `MPI` trait)
//
// The `MPI` trait (off by default) builds DistributedRTRL against Open MPI (Debian's
// libopenmpi-dev, found by pkg-config as ompi-c) and gives `rtrl` its `--distributed` option:
//   swift build --traits MPI
// Without it nothing links MPI, and DistributedRTRL is an empty module.
import PackageDescription

let package = Package(
    name: "SparseRTRL",
    products: [
        .library(name: "SparseKernels", targets: ["SparseKernels"]),
        .library(name: "RTRL", targets: ["RTRL"]),
        .library(name: "DistributedRTRL", targets: ["DistributedRTRL"]),
        .executable(name: "rtrl", targets: ["RTRLCommand"]),
    ],
    traits: [
        .trait(name: "MPI", description: "Training over MPI processes (DistributedRTRL, `rtrl train --distributed`); needs Open MPI"),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .target(
            name: "CSparseKernels",
            path: "Kernels",
            linkerSettings: [
                .linkedLibrary("cholmod"),
                .linkedLibrary("cxsparse"),
                .linkedLibrary("suitesparseconfig"),
                .linkedLibrary("pthread"),
                .linkedLibrary("m"),
            ]
        ),
        .target(
            name: "SparseKernels",
            dependencies: ["CSparseKernels"]
        ),
        .target(
            name: "RTRL",
            dependencies: ["SparseKernels"]
        ),
        .systemLibrary(
            name: "CMPI",
            path: "Sources/CMPI",
            pkgConfig: "ompi-c",
            providers: [.apt(["libopenmpi-dev"])]
        ),
        .target(
            name: "DistributedRTRL",
            dependencies: ["RTRL", .target(name: "CMPI", condition: .when(traits: ["MPI"]))]
        ),
        .executableTarget(
            name: "RTRLCommand",
            dependencies: [
                "RTRL",
                "SparseKernels",
                "DistributedRTRL",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(
            name: "SparseKernelsTests",
            dependencies: ["SparseKernels", "CSparseKernels"]
        ),
        .testTarget(
            name: "RTRLTests",
            dependencies: ["RTRL"],
            exclude: ["Fixtures"]
        ),
        .testTarget(
            name: "RTRLCommandTests",
            dependencies: ["RTRL"]
        ),
        .testTarget(
            name: "DistributedRTRLTests",
            dependencies: ["RTRL"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
