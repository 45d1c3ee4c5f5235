// swift-tools-version:6.0
//
// A package that depends on SparseRTRL the way a user's would, in Swift 6 language mode: it
// proves that the libraries' public API can be used with strict concurrency checking (shared
// plans between tasks, one learner per task). Built and run by Scripts/consumer-check, which
// copies this directory next to a link named `SparseRTRL` to the checkout, so the dependency's
// identity is `SparseRTRL` whatever the name of the directory the repository was cloned into.
import PackageDescription

let package = Package(
    name: "Consumer",
    dependencies: [
        .package(path: "../SparseRTRL"),
    ],
    targets: [
        .executableTarget(
            name: "Consumer",
            dependencies: [
                .product(name: "SparseKernels", package: "SparseRTRL"),
                .product(name: "RTRL", package: "SparseRTRL"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
