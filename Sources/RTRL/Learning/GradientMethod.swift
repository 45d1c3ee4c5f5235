/// The gradient methods, by the names the `rtrl` command takes (`description` gives the name,
/// ``init(parsing:)`` reads it back). Encoded as that name in JSON.
public enum GradientMethod: Hashable, Sendable, CustomStringConvertible, Codable {
    /// Backpropagation through the whole sequence (the correctness oracle).
    case bptt
    /// Truncated BPTT: every h steps, backpropagate the last h steps' losses through them.
    case tbptt(Int)
    /// Exact RTRL on the closure of the influence pattern (sparse).
    case rtrl
    /// Exact RTRL with dense matrices (a plain reference for small models).
    case rtrlDense
    /// SnAp-n (n ≥ 1).
    case snap(Int)
    /// Unbiased Online Recurrent Optimization.
    case uoro
    /// NoBackTrack (rank-one, one sign per unit).
    case noBackTrack
    /// Kronecker-factored RTRL.
    case kfRTRL
    /// Optimal Kronecker-sum approximation of rank r.
    case ok(Int)

    /// Parses `bptt`, `tbptt-H`, `rtrl`, `rtrl-dense`, `snap-N`, `uoro`, `nobacktrack`,
    /// `kf-rtrl`, `ok-R`.
    public init(parsing text: String) throws {
        func number(after prefix: String, _ what: String) throws -> Int {
            guard let n = Int(text.dropFirst(prefix.count)), n >= 1 else {
                throw RTRLError.invalidOption("'\(text)': \(what) must be a whole number ≥ 1")
            }
            return n
        }
        switch text {
        case "bptt": self = .bptt
        case "rtrl": self = .rtrl
        case "rtrl-dense": self = .rtrlDense
        case "uoro": self = .uoro
        case "nobacktrack": self = .noBackTrack
        case "kf-rtrl": self = .kfRTRL
        case _ where text.hasPrefix("snap-"): self = .snap(try number(after: "snap-", "the SnAp order N"))
        case _ where text.hasPrefix("tbptt-"): self = .tbptt(try number(after: "tbptt-", "the truncation length"))
        case _ where text.hasPrefix("ok-"): self = .ok(try number(after: "ok-", "the rank R"))
        default:
            throw RTRLError.invalidOption("unknown method '\(text)' (expected bptt, tbptt-H, rtrl, rtrl-dense, snap-N, uoro, nobacktrack, kf-rtrl or ok-R)")
        }
    }

    /// Throws unless the method's number (truncation length, SnAp order, rank) is at least 1.
    public func validate() throws {
        switch self {
        case .tbptt(let h) where h < 1:
            throw RTRLError.invalidOption("tbptt(\(h)): the truncation length must be a whole number ≥ 1")
        case .snap(let n) where n < 1:
            throw RTRLError.invalidOption("snap(\(n)): the SnAp order must be a whole number ≥ 1")
        case .ok(let r) where r < 1:
            throw RTRLError.invalidOption("ok(\(r)): the rank must be a whole number ≥ 1")
        default:
            return
        }
    }

    /// Reads the method's name, as ``init(parsing:)`` does.
    public init(from decoder: Decoder) throws {
        self = try GradientMethod(parsing: decoder.singleValueContainer().decode(String.self))
    }

    /// Writes the method's name (its `description`).
    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }

    /// The method's name as the `rtrl` command takes it (`snap-2`, `tbptt-16`, `kf-rtrl`).
    public var description: String {
        switch self {
        case .bptt: return "bptt"
        case .tbptt(let h): return "tbptt-\(h)"
        case .rtrl: return "rtrl"
        case .rtrlDense: return "rtrl-dense"
        case .snap(let n): return "snap-\(n)"
        case .uoro: return "uoro"
        case .noBackTrack: return "nobacktrack"
        case .kfRTRL: return "kf-rtrl"
        case .ok(let r): return "ok-\(r)"
        }
    }

    /// Whether the method draws random numbers.
    public var isStochastic: Bool {
        switch self {
        case .uoro, .noBackTrack, .kfRTRL, .ok: return true
        default: return false
        }
    }
}
