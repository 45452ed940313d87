import CFlamingoKernels
import Dispatch
import Glibc

/// Vision encoder: a Normalizer-Free ResNet as timm's `NormFreeNet` builds
/// the DeepMind-compatible `dm_nfnet_f0 … f6` (spec/11, docs/nfnet.md): the
/// encoder of the original Flamingo (NFNet-F6). Features are the final
/// feature map flattened row-major into tokens [H·W, C]: timm's
/// `forward_features` (final 1×1 conv + activation) or the last stage's
/// output, as configured.
public struct NFNetConfig: Equatable, Sendable {
    public enum StemType: String, Sendable, CaseIterable {
        case deepQuad = "deep_quad", deep, deepTiered = "deep_tiered", conv3x3 = "3x3", conv7x7 = "7x7"
    }

    public enum Activation: String, Sendable, CaseIterable {
        /// Exact (erf) GELU, timm's `gelu`.
        case gelu
        /// The tanh approximation (`jax.nn.gelu`'s default).
        case geluTanh = "gelu_tanh"
    }

    public enum Features: String, Sendable, CaseIterable {
        /// timm `forward_features`: final 1×1 conv (when present) then the activation.
        case final
        /// The last stage's output, before the final conv and activation.
        case lastStage = "last_stage"
    }

    /// Blocks per stage (1 to 4 stages).
    public var depths: [Int]
    /// Output width of each stage (before rounding to `channelDivisor`).
    public var channels: [Int]
    public var stemType: StemType
    /// Width of the stem's output (timm `stem_chs`).
    public var stemChannels: Int
    /// Channels per group of the 3×3 convolutions (0: one group).
    public var groupSize: Int
    /// Bottleneck width as a fraction of the block's output width.
    public var bottleneckRatio: Double
    /// Channel counts are rounded to multiples of this (timm `ch_div`).
    public var channelDivisor: Int
    /// A second grouped 3×3 conv per block (`conv2b`).
    public var extraConv: Bool
    /// A learned scalar `skipinit_gain` per block.
    public var skipinit: Bool
    /// Squeeze-excite reduction ratio after conv3 (0: no squeeze-excite).
    public var seRatio: Double
    /// Multiplies the squeeze-excite output (timm `attn_gain`).
    public var attnGain: Double
    /// Residual branch scale.
    public var alpha: Double
    public var activation: Activation
    /// The activation's output scale (timm `_nonlin_gamma`, applied in the activation).
    public var gamma: Double
    /// Epsilon of the weight standardisation.
    public var stdConvEps: Double
    /// Output channels of the final 1×1 conv (timm `num_features`; 0: no final conv).
    public var finalConvChannels: Int
    public var features: Features
    public var imageSize: Int
    /// Engine options, not config.json keys: run the stride-1 3×3 convs with at least
    /// `winogradMinChannels` input channels per group as Winograd F(m×m, 3×3), m = `winogradTile`
    /// (4: 4× fewer multiplies; 2: 2.25×). Off: the direct kernel everywhere. docs/nfnet.md
    /// has the speed and the accuracy against timm of each.
    public var winograd = true
    public var winogradTile = 4
    /// Input channels per group below which Winograd does not pay.
    public var winogradMinChannels = 16

    /// timm `_nonlin_gamma["gelu"]` (DeepMind's constant).
    public static let geluGamma = 1.7015043497085571

    /// Depths of the dm_nfnet variants.
    public static let variantDepths: [String: [Int]] = [
        "f0": [1, 2, 6, 3], "f1": [2, 4, 12, 6], "f2": [3, 6, 18, 9], "f3": [4, 8, 24, 12],
        "f4": [5, 10, 30, 15], "f5": [6, 12, 36, 18], "f6": [7, 14, 42, 21],
    ]
    /// timm's test resolution of each variant (its default `image_size` here).
    public static let variantImageSize: [String: Int] = [
        "f0": 256, "f1": 320, "f2": 352, "f3": 416, "f4": 512, "f5": 544, "f6": 576,
    ]

    public init(depths: [Int], channels: [Int] = [256, 512, 1536, 1536], stemType: StemType = .deepQuad,
                stemChannels: Int = 128, groupSize: Int = 128, bottleneckRatio: Double = 0.5, channelDivisor: Int = 8,
                extraConv: Bool = true, skipinit: Bool = true, seRatio: Double = 0.5, attnGain: Double = 2,
                alpha: Double = 0.2, activation: Activation = .gelu, gamma: Double = NFNetConfig.geluGamma,
                stdConvEps: Double = 1e-5, finalConvChannels: Int? = nil, features: Features = .final,
                imageSize: Int = 256) {
        self.depths = depths; self.channels = channels; self.stemType = stemType; self.stemChannels = stemChannels
        self.groupSize = groupSize; self.bottleneckRatio = bottleneckRatio; self.channelDivisor = channelDivisor
        self.extraConv = extraConv; self.skipinit = skipinit; self.seRatio = seRatio; self.attnGain = attnGain
        self.alpha = alpha; self.activation = activation; self.gamma = gamma; self.stdConvEps = stdConvEps
        self.finalConvChannels = finalConvChannels ?? 2 * (channels.last ?? 0)
        self.features = features; self.imageSize = imageSize
    }

    /// timm's `dm_nfnet_<variant>` (`_dm_nfnet_cfg`): "f0" … "f6", with or
    /// without the "dm_nfnet_" prefix.
    public static func preset(_ name: String, imageSize: Int? = nil) throws -> NFNetConfig {
        let key = name.hasPrefix("dm_nfnet_") ? String(name.dropFirst("dm_nfnet_".count)) : name
        guard let depths = variantDepths[key], let size = variantImageSize[key] else {
            throw FlamingoError.unsupported("NFNet variant \"\(name)\" is not one of f0 … f6 (dm_nfnet_f0 … dm_nfnet_f6)")
        }
        let c = NFNetConfig(depths: depths, imageSize: imageSize ?? size)
        try c.validate()
        return c
    }

    /// The "vision" object of config.json with "kind": "nfnet" (keys: docs/nfnet.md).
    public init(json: JSON, path: String = "vision") throws {
        var r = try ConfigReader(json, path: path)
        _ = try r.string("kind", oneOf: ["nfnet"])
        try self.init(&r)
        try r.finish()
    }

    /// The keys after "kind" (read by the caller).
    init(_ r: inout ConfigReader) throws {
        var base = NFNetConfig(depths: [1, 2, 6, 3])
        if r.has("variant") {
            let v = try r.string("variant")
            base = try NFNetConfig.preset(v)
        }
        func ints(_ key: String, _ d: [Int], max: Int) throws -> [Int] {
            guard let v = r.raw(key), v != .null else { return d }
            guard let a = v.array, (1...4).contains(a.count) else {
                throw FlamingoError.invalidFormat("config.json: \(r.path).\(key) must be an array of 1 to 4 integers")
            }
            return try a.map {
                guard let i = $0.int, i >= 1, i <= max else {
                    throw FlamingoError.invalidFormat("config.json: \(r.path).\(key) must contain integers in [1, \(max)]")
                }
                return i
            }
        }
        let explicitDepths = r.has("depths")
        guard explicitDepths || r.has("variant") else {
            throw FlamingoError.invalidFormat("config.json: \(r.path) needs \"variant\" (f0 … f6) or \"depths\"")
        }
        depths = try ints("depths", base.depths, max: 1024)
        channels = try ints("channels", base.channels, max: 1 << 16)
        let st = try r.string("stem_type", default: base.stemType.rawValue, oneOf: StemType.allCases.map(\.rawValue))
        stemType = StemType(rawValue: st) ?? .deepQuad
        stemChannels = try r.int("stem_channels", default: base.stemChannels, max: 1 << 16)
        groupSize = try r.int("group_size", default: base.groupSize, min: 0, max: 1 << 16)
        bottleneckRatio = try r.double("bottleneck_ratio", default: base.bottleneckRatio, min: 1e-3, max: 64)
        channelDivisor = try r.int("channel_divisor", default: base.channelDivisor, max: 1024)
        extraConv = try r.bool("extra_conv", default: base.extraConv)
        skipinit = try r.bool("skipinit", default: base.skipinit)
        seRatio = try r.double("se_ratio", default: base.seRatio, min: 0, max: 64)
        attnGain = try r.double("attn_gain", default: base.attnGain)
        alpha = try r.double("alpha", default: base.alpha)
        let act = try r.string("activation", default: base.activation.rawValue, oneOf: Activation.allCases.map(\.rawValue))
        activation = Activation(rawValue: act) ?? .gelu
        gamma = try r.double("gamma", default: base.gamma)
        stdConvEps = try r.double("std_conv_eps", default: base.stdConvEps, min: 0, max: 1)
        finalConvChannels = try r.int("final_conv_channels", default: r.has("channels") ? 2 * (channels.last ?? 0)
                                      : base.finalConvChannels, min: 0, max: 1 << 17)
        let f = try r.string("features", default: base.features.rawValue, oneOf: Features.allCases.map(\.rawValue))
        features = Features(rawValue: f) ?? .final
        imageSize = try r.int("image_size", default: r.has("variant") ? base.imageSize : nil, max: 4096)
        try validate()
    }

    // MARK: geometry (timm NormFreeNet.__init__)

    /// timm `make_divisible`.
    static func makeDivisible(_ v: Double, _ divisor: Int, roundLimit: Double = 0.9) -> Int {
        let d = max(divisor, 1)
        var n = max(d, Int(v + Double(d) / 2) / d * d)
        if Double(n) < roundLimit * v { n += d }
        return n
    }

    public struct StemConv: Equatable, Sendable {
        public let name: String
        public let inChannels, outChannels, kernel, stride: Int
    }

    public struct Block: Equatable, Sendable {
        public let name: String
        public let stage: Int
        public let inChannels, outChannels, midChannels, groups, stride, seChannels: Int
        public let beta: Double
        /// The shortcut is DownsampleAvg (pool when stride > 1, then 1×1 conv).
        public var transition: Bool { inChannels != outChannels || stride != 1 }
    }

    public var stemConvs: [StemConv] {
        let s = Self.makeDivisible(Double(stemChannels), channelDivisor)
        let chs: [Int], strides: [Int]
        switch stemType {
        case .deepQuad: chs = [s / 8, s / 4, s / 2, s]; strides = [2, 1, 1, 2]
        case .deep: chs = [s / 2, s / 2, s]; strides = [2, 1, 1]
        case .deepTiered: chs = [3 * s / 8, s / 2, s]; strides = [2, 1, 1]
        case .conv3x3: return [StemConv(name: "stem.conv", inChannels: 3, outChannels: s, kernel: 3, stride: 2)]
        case .conv7x7: return [StemConv(name: "stem.conv", inChannels: 3, outChannels: s, kernel: 7, stride: 2)]
        }
        var out: [StemConv] = [], prev = 3
        for (i, (c, st)) in zip(chs, strides).enumerated() {
            out.append(StemConv(name: "stem.conv\(i + 1)", inChannels: prev, outChannels: c, kernel: 3, stride: st))
            prev = c
        }
        return out
    }

    var stemStride: Int { stemType == .deepQuad ? 4 : 2 }

    public var blocks: [Block] {
        var out: [Block] = []
        var prev = stemConvs.last?.outChannels ?? 3
        var expectedVar = 1.0
        for (si, depth) in depths.enumerated() {
            let stride = si == 0 && stemStride > 2 ? 1 : 2
            let outChs = Self.makeDivisible(Double(si < channels.count ? channels[si] : 1), channelDivisor)
            for bi in 0..<depth {
                var mid = Self.makeDivisible(Double(outChs) * bottleneckRatio, channelDivisor)
                let groups = groupSize == 0 ? 1 : mid / groupSize
                if groupSize > 0 && groupSize % channelDivisor == 0 { mid = groupSize * groups }
                let se = seRatio > 0 ? Self.makeDivisible(Double(outChs) * seRatio, 8, roundLimit: 0) : 0
                out.append(Block(name: "stages.\(si).\(bi)", stage: si, inChannels: prev, outChannels: outChs, midChannels: mid,
                                 groups: groups, stride: bi == 0 ? stride : 1, seChannels: se,
                                 beta: 1 / expectedVar.squareRoot()))
                if bi == 0 { expectedVar = 1 }
                expectedVar += alpha * alpha
                prev = outChs
            }
        }
        return out
    }

    var lastStageChannels: Int { blocks.last?.outChannels ?? stemConvs.last?.outChannels ?? 3 }
    var finalChannels: Int { finalConvChannels > 0 ? Self.makeDivisible(Double(finalConvChannels), channelDivisor) : 0 }

    /// Channels of each output token.
    public var featureChannels: Int {
        features == .final && finalChannels > 0 ? finalChannels : lastStageChannels
    }

    /// Feature-map size for an input of h×w (every conv is TF "SAME").
    public func outputSize(height h: Int, width w: Int) -> (height: Int, width: Int) {
        var h = h, w = w
        for c in stemConvs { h = (h + c.stride - 1) / c.stride; w = (w + c.stride - 1) / c.stride }
        for b in blocks { h = (h + b.stride - 1) / b.stride; w = (w + b.stride - 1) / b.stride }
        return (h, w)
    }

    /// Tokens per image at `imageSize`.
    public var numPatches: Int { let s = outputSize(height: imageSize, width: imageSize); return s.height * s.width }

    public func validate() throws {
        func bad(_ m: String) -> FlamingoError { .invalidFormat("NFNet config: \(m)") }
        guard (1...4).contains(depths.count), depths.count == channels.count else {
            throw bad("depths and channels must both list 1 to 4 stages (\(depths.count) and \(channels.count))")
        }
        guard depths.allSatisfy({ (1...1024).contains($0) }), channels.allSatisfy({ (1...(1 << 16)).contains($0) }) else {
            throw bad("depths must be in [1, 1024] and channels in [1, 65536]")
        }
        guard (1...(1 << 16)).contains(stemChannels), (1...1024).contains(channelDivisor),
              (0...(1 << 16)).contains(groupSize), (0...(1 << 17)).contains(finalConvChannels),
              (1...4096).contains(imageSize) else {
            throw bad("stem_channels, channel_divisor, group_size, final_conv_channels or image_size out of range")
        }
        guard bottleneckRatio > 0, bottleneckRatio <= 64, seRatio >= 0, seRatio <= 64,
              [alpha, gamma, attnGain, stdConvEps].allSatisfy({ $0.isFinite }), stdConvEps >= 0 else {
            throw bad("bottleneck_ratio, se_ratio, alpha, gamma, attn_gain or std_conv_eps out of range")
        }
        for s in stemConvs where s.outChannels < 1 {
            throw bad("stem_channels \(stemChannels) is too small for stem \(stemType.rawValue) (\(s.name) would have 0 channels)")
        }
        for b in blocks {
            guard b.groups >= 1, b.midChannels >= 1, b.midChannels % b.groups == 0,
                  groupSize == 0 || b.midChannels == b.groups * groupSize else {
                throw bad("\(b.name): bottleneck width \(b.midChannels) does not split into groups of \(groupSize)")
            }
        }
    }

    /// Every tensor with timm's state-dict names under `prefix` ("" for none).
    public func weights(prefix p: String) -> [WeightSpec] {
        func n(_ s: String) -> String { p.isEmpty ? s : "\(p).\(s)" }
        var w: [WeightSpec] = []
        func conv(_ name: String, out: Int, in cin: Int, k: Int) {
            w.append(WeightSpec(n("\(name).weight"), [out, cin, k, k]))
            w.append(WeightSpec(n("\(name).bias"), [out]))
            w.append(WeightSpec(n("\(name).gain"), [out, 1, 1, 1]))
        }
        for s in stemConvs { conv(s.name, out: s.outChannels, in: s.inChannels, k: s.kernel) }
        for b in blocks {
            if b.transition { conv("\(b.name).downsample.conv", out: b.outChannels, in: b.inChannels, k: 1) }
            conv("\(b.name).conv1", out: b.midChannels, in: b.inChannels, k: 1)
            conv("\(b.name).conv2", out: b.midChannels, in: b.midChannels / b.groups, k: 3)
            if extraConv { conv("\(b.name).conv2b", out: b.midChannels, in: b.midChannels / b.groups, k: 3) }
            conv("\(b.name).conv3", out: b.outChannels, in: b.midChannels, k: 1)
            if b.seChannels > 0 {
                w.append(WeightSpec(n("\(b.name).attn_last.fc1.weight"), [b.seChannels, b.outChannels, 1, 1]))
                w.append(WeightSpec(n("\(b.name).attn_last.fc1.bias"), [b.seChannels]))
                w.append(WeightSpec(n("\(b.name).attn_last.fc2.weight"), [b.outChannels, b.seChannels, 1, 1]))
                w.append(WeightSpec(n("\(b.name).attn_last.fc2.bias"), [b.outChannels]))
            }
            if skipinit { w.append(WeightSpec(n("\(b.name).skipinit_gain"), [])) }
        }
        if finalChannels > 0 { conv("final_conv", out: finalChannels, in: lastStageChannels, k: 1) }
        return w
    }
}

/// The encoder itself: pixels [3, H, W] of one normalised image → tokens
/// [H/32 · W/32, featureChannels] (row-major over the feature map).
/// Weights are standardised and packed once here; a forward allocates its
/// own scratch, so one instance may run on several threads at once.
public final class NFNet: @unchecked Sendable {
    public let config: NFNetConfig
    let stem: [Conv2D]
    let blocks: [Block]
    let finalConv: Conv2D?
    let act: ConvActivation
    let gamma: Float
    private let scratchPool = ScratchPool()
    private let keepAlive: AnyObject?

    struct Block {
        let geometry: NFNetConfig.Block
        let downsample: Conv2D?
        let conv1, conv2: Conv2D
        let conv2b: Conv2D?
        let conv3: Conv2D
        let fc1, fc2: Matrix?
        let fc1Bias, fc2Bias: [Float]
        let skipGain: Float
    }

    /// From a loaded model directory (tensors validated against the config).
    public convenience init(_ model: Model, config: NFNetConfig, prefix: String) throws {
        try self.init(config: config, prefix: prefix, keepAlive: model) { try model.tensor($0) }
    }

    /// From any tensor source, e.g. one safetensors file: every tensor of
    /// `config.weights(prefix:)` is looked up (from several threads at once:
    /// `tensor` must be safe to call concurrently) and its shape checked. The
    /// squeeze-excite weights of an f32 file are used in place, so pass the
    /// object owning the mapping (the SafetensorsFile, the Model) as `keepAlive`.
    public init(config c: NFNetConfig, prefix: String, keepAlive: AnyObject?,
                tensor: (String) throws -> TensorView) throws {
        try c.validate()
        config = c
        self.keepAlive = keepAlive
        act = c.activation == .gelu ? .gelu : .geluTanh
        gamma = Float(c.gamma)
        let shapes = c.weightShapes(prefix: prefix)
        func get(_ s: String) throws -> TensorView { try c.checkedTensor(s, prefix: prefix, shapes: shapes, tensor) }
        func stdConv(_ s: String, in cin: Int, out: Int, k: Int, stride: Int = 1, groups: Int = 1) throws -> Conv2D {
            let winograd = c.winograd
            let (std, bf) = try c.standardizedConv(s, in: cin, out: out, k: k, groups: groups, get)
            return try std.withUnsafeBufferPointer { wp in
                try bf.withUnsafeBufferPointer { bp in
                    guard let wb = wp.baseAddress, let bb = bp.baseAddress else {
                        throw FlamingoError.internal("\(s): empty convolution")
                    }
                    return try Conv2D(weight: wb, bias: bb, inChannels: cin, outChannels: out, kernel: k, stride: stride,
                                  groups: groups, winograd: winograd && k == 3 && stride == 1 && cin / groups >= c.winogradMinChannels,
                                  winogradTile: c.winogradTile)
                }
            }
        }
        stem = try c.stemConvs.map {
            try stdConv($0.name, in: $0.inChannels, out: $0.outChannels, k: $0.kernel, stride: $0.stride)
        }
        // Blocks are standardised and packed in parallel (F6: 84 blocks, seconds of work).
        func makeBlock(_ b: NFNetConfig.Block) throws -> Block {
            let n = b.name
            let se = b.seChannels > 0
            return Block(
                geometry: b,
                downsample: b.transition ? try stdConv("\(n).downsample.conv", in: b.inChannels, out: b.outChannels, k: 1) : nil,
                conv1: try stdConv("\(n).conv1", in: b.inChannels, out: b.midChannels, k: 1),
                conv2: try stdConv("\(n).conv2", in: b.midChannels, out: b.midChannels, k: 3, stride: b.stride, groups: b.groups),
                conv2b: c.extraConv ? try stdConv("\(n).conv2b", in: b.midChannels, out: b.midChannels, k: 3, groups: b.groups) : nil,
                conv3: try stdConv("\(n).conv3", in: b.midChannels, out: b.outChannels, k: 1),
                fc1: se ? Matrix(try get("\(n).attn_last.fc1.weight"), rows: b.seChannels, cols: b.outChannels) : nil,
                fc2: se ? Matrix(try get("\(n).attn_last.fc2.weight"), rows: b.outChannels, cols: b.seChannels) : nil,
                fc1Bias: se ? tensorFloats(try get("\(n).attn_last.fc1.bias")) : [],
                fc2Bias: se ? tensorFloats(try get("\(n).attn_last.fc2.bias")) : [],
                skipGain: c.skipinit ? try get("\(n).skipinit_gain").float(at: 0) : 1)
        }
        let geometries = c.blocks
        var built = [Result<Block, Error>?](repeating: nil, count: geometries.count)
        built.withUnsafeMutableBufferPointer { out in
            DispatchQueue.concurrentPerform(iterations: geometries.count) { i in
                out[i] = Result { try makeBlock(geometries[i]) }
            }
        }
        blocks = try built.map {
            guard let r = $0 else { throw FlamingoError.internal("NFNet: a block was not built") }
            return try r.get()
        }
        // The final conv's tensors are part of the checkpoint either way; it is prepared only when used.
        if c.finalChannels > 0 {
            if c.features == .final {
                finalConv = try stdConv("final_conv", in: c.lastStageChannels, out: c.finalChannels, k: 1)
            } else {
                for s in ["weight", "bias", "gain"] { _ = try get("final_conv.\(s)") }
                finalConv = nil
            }
        } else {
            finalConv = nil
        }
    }

    /// Output tokens per image and their width at `config.imageSize`.
    public var numPatches: Int { config.numPatches }
    public var featureChannels: Int { config.featureChannels }

    /// Tokens of one normalised image laid out [3, imageSize, imageSize]:
    /// [numPatches, featureChannels].
    public func callAsFunction(_ pixels: UnsafePointer<Float>) -> Buffer {
        forward(pixels, height: config.imageSize, width: config.imageSize, tap: nil)
    }

    /// Tokens of a normalised image [3, height, width] of any size:
    /// [outputSize.height · outputSize.width, featureChannels].
    public func features(_ pixels: UnsafePointer<Float>, height: Int, width: Int) throws -> Buffer {
        guard (1...4096).contains(height), (1...4096).contains(width) else {
            throw FlamingoError.invalidArgument("NFNet input size \(height)×\(width) is outside 1…4096")
        }
        return forward(pixels, height: height, width: width, tap: nil)
    }

    /// The forward pass; `tap` sees the stem output, each stage's output
    /// ("stages.i") and the features, all as dense NHWC planes.
    func forward(_ pixels: UnsafePointer<Float>, height h: Int, width w: Int, tap: ((String, Plane) -> Void)?) -> Buffer {
        // Scratch is reused across calls (fresh pages cost ~10% of a forward in page faults):
        // `ws` holds each block's temporaries, `xs` the block outputs.
        let (ws, xs) = scratchPool.take()
        defer { scratchPool.give(ws, xs) }
        // Stem: each conv writes act(conv)·gamma straight into the zero-padded input of the next.
        var geo = stem[0].padding(h: h, w: w)
        var input = ws.takePadded(geo, h: h, w: w, c: 3)
        for ch in 0..<3 {
            for y in 0..<h {
                let src = pixels + (ch * h + y) * w
                let dst = input.p + ((y + geo.top) * geo.paddedW + geo.left) * 3 + ch
                for x in 0..<w { dst[x * 3] = src[x] }
            }
        }
        var x = xs.take(0)
        var size = (h: geo.outH, w: geo.outW)
        for (i, conv) in stem.enumerated() {
            size = (geo.outH, geo.outW)
            if i + 1 < stem.count {
                let next = stem[i + 1].padding(h: geo.outH, w: geo.outW)
                let padded = ws.takePadded(next, h: geo.outH, w: geo.outW, c: conv.outChannels)
                conv(input, into: padded.offset(y: next.top, x: next.left).resized(h: geo.outH, w: geo.outW),
                     activation: act, scale: gamma, scratch: ws)
                input = padded
                geo = next
            } else {
                x = xs.take(geo.outH * geo.outW * conv.outChannels)
                conv(input, into: Plane(x, h: geo.outH, w: geo.outW, c: conv.outChannels), scratch: ws)
            }
        }
        var channels = stem.last?.outChannels ?? 3
        tap?("stem", Plane(x, h: size.h, w: size.w, c: channels))
        for (bi, b) in blocks.enumerated() {
            ws.reset()
            (x, size) = block(b, x, h: size.h, w: size.w, ws: ws, xs: xs)
            channels = b.geometry.outChannels
            if let tap, bi + 1 == blocks.count || blocks[bi + 1].geometry.stage != b.geometry.stage {
                tap("stages.\(b.geometry.stage)", Plane(x, h: size.h, w: size.w, c: channels))
            }
        }
        let plane = Plane(x, h: size.h, w: size.w, c: channels)
        let result: Buffer
        if config.features == .final, let f = finalConv {
            result = Buffer(size.h * size.w * f.outChannels)
            f(plane, into: Plane(result.p, h: size.h, w: size.w, c: f.outChannels), activation: act, scale: gamma,
              scratch: ws)
            channels = f.outChannels
        } else {
            result = Buffer(size.h * size.w * channels)
            let copy = Plane(result.p, h: size.h, w: size.w, c: channels)
            activate(plane, into: copy, config.features == .final ? act : .none, scale: config.features == .final ? gamma : 1)
        }
        tap?("features", Plane(result.p, h: size.h, w: size.w, c: channels))
        return result
    }

    /// One NormFreeBlock (timm): pre-activation ·β, shortcut, conv1 → conv2
    /// (→ conv2b) → conv3 with activations between, squeeze-excite ·attn_gain,
    /// ·skipinit_gain ·α + shortcut.
    private func block(_ b: Block, _ x: UnsafeMutablePointer<Float>, h: Int, w: Int, ws: ConvScratch,
                       xs: ConvScratch) -> (UnsafeMutablePointer<Float>, (h: Int, w: Int)) {
        let g = b.geometry
        let cin = g.inChannels, cout = g.outChannels, mid = g.midChannels
        let xp = Plane(x, h: h, w: w, c: cin)
        let a = Plane(ws.take(h * w * cin), h: h, w: w, c: cin)
        activate(xp, into: a, act, scale: gamma * Float(g.beta))

        let g2 = b.conv2.padding(h: h, w: w)
        let oh = g2.outH, ow = g2.outW, po = oh * ow
        // Shortcut: DownsampleAvg of the pre-activated input on transitions, else the input itself.
        let out: UnsafeMutablePointer<Float>
        if let ds = b.downsample {
            out = xs.take(po * cout)
            var src = a
            if g.stride > 1 {
                let pooled = ws.take(po * cin)
                averagePool2x2(a, into: pooled)
                src = Plane(pooled, h: oh, w: ow, c: cin)
            }
            ds(src, into: Plane(out, h: oh, w: ow, c: cout), scratch: ws)
        } else {
            out = x
        }

        // Residual branch: each conv writes act(conv)·gamma straight into the next conv's (padded) input.
        let pad2 = ws.takePadded(g2, h: h, w: w, c: mid)
        b.conv1(a, into: pad2.offset(y: g2.top, x: g2.left).resized(h: h, w: w), activation: act, scale: gamma,
                scratch: ws)
        let h3in = Plane(ws.take(po * mid), h: oh, w: ow, c: mid)
        if let c2b = b.conv2b {
            let g2b = c2b.padding(h: oh, w: ow)
            let pad2b = ws.takePadded(g2b, h: oh, w: ow, c: mid)
            b.conv2(pad2, into: pad2b.offset(y: g2b.top, x: g2b.left).resized(h: oh, w: ow), activation: act, scale: gamma,
                    scratch: ws)
            c2b(pad2b, into: h3in, activation: act, scale: gamma, scratch: ws)
        } else {
            b.conv2(pad2, into: h3in, activation: act, scale: gamma, scratch: ws)
        }
        let h3 = ws.take(po * cout)
        b.conv3(h3in, into: Plane(h3, h: oh, w: ow, c: cout), scratch: ws)

        // Per-channel factor: attn_gain·sigmoid(SE) · skipinit_gain · α.
        let scale = ws.take(cout)
        let common = b.skipGain * Float(config.alpha)
        if let fc1 = b.fc1, let fc2 = b.fc2 {
            let rd = g.seChannels
            let mean = ws.take(cout), z = ws.take(rd)
            fk_channel_mean(h3, po, cout, mean)
            // Two small matrix-vector products, inline: OpenBLAS would wake (and leave spinning) its own threads.
            // (Their weights, 9 MB per F6 block, are streamed from memory: split over the threads.)
            b.fc1Bias.withUnsafeBufferPointer { bias in
                parallelTasks(rd, work: rd * cout) { rows in
                    for i in rows { z[i] = max(bias[i] + dot(fc1.row(i), mean, count: cout), 0) }
                }
            }
            b.fc2Bias.withUnsafeBufferPointer { bias in
                parallelTasks(cout, work: rd * cout) { rows in
                    for i in rows { scale[i] = bias[i] + dot(fc2.row(i), z, count: rd) }
                }
            }
            let gain = Float(config.attnGain)
            for i in 0..<cout { scale[i] = gain * (1 / (1 + expf(-scale[i]))) * common }
        } else {
            for i in 0..<cout { scale[i] = common }
        }
        parallelTasks(po, work: po * cout * 4) { r in
            fk_scale_add(h3 + r.lowerBound * cout, scale, out + r.lowerBound * cout, out + r.lowerBound * cout,
                         r.count, cout)
        }
        return (out, (oh, ow))
    }
}

/// Scratch pairs kept between forwards; a forward running while another
/// holds them gets a new pair.
final class ScratchPool: @unchecked Sendable {
    private let free = Locked<[(ConvScratch, ConvScratch)]>([])

    func take() -> (ConvScratch, ConvScratch) {
        let p = free.withLock { $0.popLast() } ?? (ConvScratch(), ConvScratch())
        p.0.reset()
        p.1.reset()
        return p
    }

    func give(_ a: ConvScratch, _ b: ConvScratch) {
        free.withLock { if $0.count < 2 { $0.append((a, b)) } }
    }
}

extension Plane {
    /// The same origin and strides with another size.
    func resized(h: Int, w: Int) -> Plane { Plane(p, h: h, w: w, c: c, row: row, pix: pix) }
}

/// A tensor's values as f32 (f32 tensors copied directly).
private func tensorFloats(_ t: TensorView) -> [Float] {
    let n = t.count
    if t.dtype == .f32 {
        return [Float](unsafeUninitializedCapacity: n) { buf, count in
            if let dst = buf.baseAddress, n > 0 {
                UnsafeMutableRawPointer(dst).copyMemory(from: t.data.baseAddress ?? UnsafeRawPointer(dst), byteCount: n * 4)
            }
            count = n
        }
    }
    return (0..<n).map { t.float(at: $0) }
}

extension NFNetConfig {
    /// Each tensor's shape by full name (`weights(prefix:)`).
    func weightShapes(prefix: String) -> [String: [Int]] {
        var shapes: [String: [Int]] = [:]
        for spec in weights(prefix: prefix) { shapes[spec.name] = spec.shape }
        return shapes
    }

    /// Conv `s`'s weights standardised once at load ([out, in/groups·k·k] f32) and its bias: what
    /// the CPU and the device encoders both start from.
    func standardizedConv(_ s: String, in cin: Int, out: Int, k: Int, groups: Int,
                          _ get: (String) throws -> TensorView) throws -> (weight: [Float], bias: [Float]) {
        let wf = tensorFloats(try get("\(s).weight")), gf = tensorFloats(try get("\(s).gain"))
        let std = standardizedWeights(out: out, fanIn: cin / groups * k * k, eps: stdConvEps,
                                      weight: { wf[$0] }, gain: { gf[$0] })
        return (std, tensorFloats(try get("\(s).bias")))
    }

    /// Tensor `s` under `prefix`, checked to be floating point and of the shape the config implies.
    func checkedTensor(_ s: String, prefix: String, shapes: [String: [Int]],
                       _ tensor: (String) throws -> TensorView) throws -> TensorView {
        let full = prefix.isEmpty ? s : "\(prefix).\(s)"
        let t = try tensor(full)
        guard t.dtype.isFloat else {
            throw FlamingoError.unsupported("tensor \(full) has dtype \(t.dtype.rawValue); weights must be F32, F16 or BF16")
        }
        if let want = shapes[full], t.shape != want {
            throw FlamingoError.invalidFormat("tensor \(full) has shape \(t.shape), config implies \(want)")
        }
        return t
    }
}
