/// The NFNet encoder (NFNet.swift, docs/nfnet.md) on the device: the same
/// forward as `NFNet.forward` (stem, NormFreeBlocks with their transitions
/// and squeeze-excite, final conv + activation or the last stage's output)
/// with the ops of OpsConv.swift. Weights are standardised on the host at
/// load exactly as the CPU encoder does it (`standardizedWeights`, in double,
/// stored f32) and uploaded once; activations are NHWC f32 planes that stay
/// on the device. The host only uploads the [3, H, W] pixels.
final class DeviceNFNet {
    let config: NFNetConfig
    let rt: OpenCLRuntime
    let stem: [CLConv]
    let blocks: [Block]
    let finalConv: CLConv?
    let act: ConvActivation
    let gamma: Float

    struct Block {
        let geometry: NFNetConfig.Block
        let downsample: CLConv?
        let conv1, conv2: CLConv
        let conv2b: CLConv?
        let conv3: CLConv
        let fc1, fc2: CLWeight?
        let fc1Bias, fc2Bias: CLView?
        let skipGain: Float
    }

    /// From a model directory's tensors under `prefix`.
    convenience init(_ w: DeviceWeights, config: NFNetConfig, prefix: String) throws {
        try self.init(rt: w.rt, config: config, prefix: prefix) { try w.model.tensor($0) }
    }

    /// From any tensor source (names and shapes as `config.weights(prefix:)`).
    init(rt: OpenCLRuntime, config c: NFNetConfig, prefix: String, tensor: (String) throws -> TensorView) throws {
        try c.validate()
        config = c
        self.rt = rt
        act = c.activation == .gelu ? .gelu : .geluTanh
        gamma = Float(c.gamma)
        let shapes = c.weightShapes(prefix: prefix)
        func get(_ s: String) throws -> TensorView { try c.checkedTensor(s, prefix: prefix, shapes: shapes, tensor) }
        // The CPU encoder's load-time standardisation, then uploaded.
        func stdConv(_ s: String, in cin: Int, out: Int, k: Int, stride: Int = 1, groups: Int = 1) throws -> CLConv {
            let (std, bf) = try c.standardizedConv(s, in: cin, out: out, k: k, groups: groups, get)
            return try rt.conv(weight: std, bias: bf, inChannels: cin, outChannels: out, kernel: k, stride: stride, groups: groups)
        }
        func vector(_ s: String) throws -> CLView { CLView(try rt.buffer(try get(s).floats())) }
        stem = try c.stemConvs.map { try stdConv($0.name, in: $0.inChannels, out: $0.outChannels, k: $0.kernel, stride: $0.stride) }
        blocks = try c.blocks.map { b in
            let n = b.name, se = b.seChannels > 0
            return Block(
                geometry: b,
                downsample: b.transition ? try stdConv("\(n).downsample.conv", in: b.inChannels, out: b.outChannels, k: 1) : nil,
                conv1: try stdConv("\(n).conv1", in: b.inChannels, out: b.midChannels, k: 1),
                conv2: try stdConv("\(n).conv2", in: b.midChannels, out: b.midChannels, k: 3, stride: b.stride, groups: b.groups),
                conv2b: c.extraConv ? try stdConv("\(n).conv2b", in: b.midChannels, out: b.midChannels, k: 3, groups: b.groups) : nil,
                conv3: try stdConv("\(n).conv3", in: b.midChannels, out: b.outChannels, k: 1),
                fc1: se ? try rt.weight(try get("\(n).attn_last.fc1.weight"), rows: b.seChannels, cols: b.outChannels) : nil,
                fc2: se ? try rt.weight(try get("\(n).attn_last.fc2.weight"), rows: b.outChannels, cols: b.seChannels) : nil,
                fc1Bias: se ? try vector("\(n).attn_last.fc1.bias") : nil,
                fc2Bias: se ? try vector("\(n).attn_last.fc2.bias") : nil,
                skipGain: c.skipinit ? try get("\(n).skipinit_gain").float(at: 0) : 1)
        }
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

    var numPatches: Int { config.numPatches }
    var featureChannels: Int { config.featureChannels }

    /// Tokens [numPatches, featureChannels] of one normalised image
    /// [3, imageSize, imageSize] into `out` (row stride featureChannels).
    func callAsFunction(_ pixels: UnsafePointer<Float>, into out: CLView, scratch: DeviceScratch) throws {
        try forward(pixels, height: config.imageSize, width: config.imageSize, into: out, scratch: scratch)
    }

    /// The forward pass for an image [3, h, w] of any size (1…4096): tokens
    /// [outputSize.height · outputSize.width, featureChannels] into `out`.
    /// `tap` sees the stem output, each stage's output ("stages.i") and the
    /// features as device planes (valid until the next forward).
    func forward(_ pixels: UnsafePointer<Float>, height h: Int, width w: Int, into out: CLView, scratch: DeviceScratch,
                 tap: ((String, CLPlane) throws -> Void)? = nil) throws {
        guard (1...4096).contains(h), (1...4096).contains(w) else {
            throw FlamingoError.invalidArgument("NFNet input size \(h)×\(w) is outside 1…4096")
        }
        let grid = config.outputSize(height: h, width: w), fc = featureChannels
        let outStride = out.stride == 0 ? fc : out.stride
        guard outStride == fc else {
            throw FlamingoError.invalidArgument("NFNet tokens need packed rows of \(fc) channels (stride \(outStride))")
        }
        try out.check(rows: grid.height * grid.width, cols: fc, "tokens", "NFNet")
        let px = try scratch.take("nf.pixels", 3 * h * w)
        try rt.upload(UnsafeRawBufferPointer(start: pixels, count: 3 * h * w * 4), to: px.buffer)

        // Stem: act(conv)·gamma between the convs, none after the last one.
        var x = CLPlane.chw(px.buffer, h: h, w: w, c: 3)
        // Block outputs alternate between nf.x0 and nf.x1 (a block without a transition updates x in
        // place); the stem's last conv writes nf.x0.
        for (i, conv) in stem.enumerated() {
            let g = conv.padding(h: x.h, w: x.w)
            let last = i + 1 == stem.count
            let y = CLPlane(try scratch.take(last ? "nf.x0" : "nf.stem\(i % 2)", g.outH * g.outW * conv.outChannels).buffer,
                            h: g.outH, w: g.outW, c: conv.outChannels)
            try rt.conv2d(x, conv, into: y, activation: last ? .none : act, scale: last ? 1 : gamma)
            x = y
        }
        var slot = 0
        try tap?("stem", x)
        for (bi, b) in blocks.enumerated() {
            (x, slot) = try block(b, x, slot: slot, scratch: scratch)
            if let tap, bi + 1 == blocks.count || blocks[bi + 1].geometry.stage != b.geometry.stage {
                try tap("stages.\(b.geometry.stage)", x)
            }
        }
        let tokens = CLPlane(out.buffer, offset: out.offset, h: x.h, w: x.w, c: fc)
        if config.features == .final, let f = finalConv {
            try rt.conv2d(x, f, into: tokens, activation: act, scale: gamma)
        } else if config.features == .final {
            try rt.nfActivation(x, into: tokens, act, scale: gamma)
        } else {
            try rt.copyRows(CLView(x.buffer, offset: x.offset, stride: x.c), into: CLView(out.buffer, offset: out.offset, stride: fc),
                            rows: x.h * x.w, cols: fc)
        }
        try tap?("features", tokens)
    }

    /// One NormFreeBlock (as NFNet.block): a = act(x)·gamma·β; shortcut x, or
    /// conv1x1(avgpool(a)) on transitions; conv1 → conv2 (→ conv2b) → conv3
    /// with act·gamma between; squeeze-excite; out = h·attn_gain·σ(se)·skipinit·α + shortcut.
    private func block(_ b: Block, _ x: CLPlane, slot: Int, scratch: DeviceScratch) throws -> (CLPlane, Int) {
        let g = b.geometry
        let cin = g.inChannels, cout = g.outChannels, mid = g.midChannels
        func plane(_ name: String, _ h: Int, _ w: Int, _ c: Int) throws -> CLPlane {
            CLPlane(try scratch.take(name, h * w * c).buffer, h: h, w: w, c: c)
        }
        let a = try plane("nf.a", x.h, x.w, cin)
        try rt.nfActivation(x, into: a, act, scale: gamma * Float(g.beta))
        let g2 = b.conv2.padding(h: x.h, w: x.w)
        let oh = g2.outH, ow = g2.outW

        var out = x, outSlot = slot
        if let ds = b.downsample {
            outSlot = 1 - slot
            out = try plane("nf.x\(outSlot)", oh, ow, cout)
            var src = a
            if g.stride > 1 {
                src = try plane("nf.pool", oh, ow, cin)
                try rt.averagePool2x2(a, into: src)
            }
            try rt.conv2d(src, ds, into: out)
        }

        let t1 = try plane("nf.t1", x.h, x.w, mid)
        try rt.conv2d(a, b.conv1, into: t1, activation: act, scale: gamma)
        let t2 = try plane("nf.t2", oh, ow, mid)
        try rt.conv2d(t1, b.conv2, into: t2, activation: act, scale: gamma)
        var h3in = t2
        if let c2b = b.conv2b {
            h3in = try plane("nf.t3", oh, ow, mid)
            try rt.conv2d(t2, c2b, into: h3in, activation: act, scale: gamma)
        }
        let h3 = try plane("nf.h3", oh, ow, cout)
        try rt.conv2d(h3in, b.conv3, into: h3)

        var se: CLView?
        if let fc1 = b.fc1, let fc2 = b.fc2 {
            let mean = try scratch.take("nf.mean", cout), z = try scratch.take("nf.z", g.seChannels)
            let s = try scratch.take("nf.se", cout)
            try rt.channelMean(h3, into: mean)
            try rt.linear(mean, rows: 1, fc1, bias: b.fc1Bias, into: z)
            try rt.relu(z, count: g.seChannels)
            try rt.linear(z, rows: 1, fc2, bias: b.fc2Bias, into: s)
            se = s
        }
        try rt.scaleAdd(h3, se: se, attnGain: Float(config.attnGain), common: b.skipGain * Float(config.alpha),
                        shortcut: out, into: out)
        return (out, outSlot)
    }
}

/// A vision encoder on the device: one normalised image [3, S, S] →
/// tokens [numPatches, width] into a device view.
protocol DeviceVisionEncoder: AnyObject {
    func callAsFunction(_ pixels: UnsafePointer<Float>, into out: CLView, scratch: DeviceScratch) throws
}

extension DeviceVisionTransformer: DeviceVisionEncoder {}
extension DeviceNFNet: DeviceVisionEncoder {}
