// swift-tools-version:6.0
//
// A package that must NOT compile: it shares one OnlineLearner (a class that is not Sendable)
// between two concurrent tasks, and Swift 6 language mode refuses that with a Sendable
// diagnostic. Scripts/consumer-check builds it (next to a link named `SparseRTRL` to the
// checkout, as for Examples/Consumer) and fails if it builds, or if it fails for another reason.
import PackageDescription

let package = Package(
    name: "ConsumerSharingLearner",
    dependencies: [
        .package(path: "../SparseRTRL"),
    ],
    targets: [
        .executableTarget(
            name: "ConsumerSharingLearner",
            dependencies: [
                .product(name: "RTRL", package: "SparseRTRL"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
