// swift-tools-version:6.0
//
// SparseRTRL: sparse linear-algebra kernels over SuiteSparse, and online recurrent learning
// (exact RTRL, SnAp-n and unbiased estimators) on top.
//
// Layers depend downward only:
//   CSparseKernels (C: SuiteSparse shim + hot kernels)
//     <- SparseKernels (Swift kernel layer)
//       <- RTRL (recurrent learning)
//         <- RTRLCommand (the `rtrl` executable)
import PackageDescription

let package = Package(
    name: "SparseRTRL",
    products: [
        .library(name: "SparseKernels", targets: ["SparseKernels"]),
        .library(name: "RTRL", targets: ["RTRL"]),
        .executable(name: "rtrl", targets: ["RTRLCommand"]),
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
        .executableTarget(
            name: "RTRLCommand",
            dependencies: [
                "RTRL",
                "SparseKernels",
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
    ],
    swiftLanguageModes: [.v6]
)
