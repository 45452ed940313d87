/// The NFNet's convolution, pooling and squeeze-excite ops on the device
/// (kernels/opencl/conv.cl; the 1×1 convolutions through `linear`).

/// An activation plane in a device buffer: element (y, x, c) is f32 element
/// `offset + y·row + x·pix + c·channel`. NHWC planes have `channel` 1 (the
/// only layout the outputs and the non-convolution ops take); the first
/// convolution can read the [3, H, W] pixels with `pix` 1 and `channel` H·W.
public struct CLPlane {
    public var buffer: CLBuffer
    public var offset: Int
    public var h: Int
    public var w: Int
    public var c: Int
    public var row: Int
    public var pix: Int
    public var channel: Int

    /// A dense NHWC plane (`pix = c`, `row = w·c`).
    public init(_ buffer: CLBuffer, offset: Int = 0, h: Int, w: Int, c: Int) {
        self.init(buffer, offset: offset, h: h, w: w, c: c, row: w * c, pix: c, channel: 1)
    }

    public init(_ buffer: CLBuffer, offset: Int = 0, h: Int, w: Int, c: Int, row: Int, pix: Int, channel: Int = 1) {
        self.buffer = buffer; self.offset = offset; self.h = h; self.w = w; self.c = c
        self.row = row; self.pix = pix; self.channel = channel
    }

    /// Planar [c, h, w] (an image as the preprocessors produce it).
    public static func chw(_ buffer: CLBuffer, offset: Int = 0, h: Int, w: Int, c: Int) -> CLPlane {
        CLPlane(buffer, offset: offset, h: h, w: w, c: c, row: w, pix: 1, channel: h * w)
    }

    /// The rows × cols view of the pixels when they are evenly spaced
    /// (row = w·pix) with contiguous channels, for `linear`.
    var pixelRows: CLView? {
        guard channel == 1, h <= 1 || row == w * pix else { return nil }
        return CLView(buffer, offset: offset, stride: pix)
    }

    /// Throws unless every element lies inside the buffer.
    func check(_ what: String, _ op: String, nhwc: Bool = true) throws {
        guard h >= 0, w >= 0, c >= 0, offset >= 0, row >= 0, pix >= 0, channel >= 0 else {
            throw FlamingoError.invalidArgument("OpenCL \(op): \(what) has a negative size or stride")
        }
        if nhwc && channel != 1 {
            throw FlamingoError.invalidArgument("OpenCL \(op): \(what) must have contiguous channels (NHWC)")
        }
        if h == 0 || w == 0 || c == 0 { return }
        let parts = [(h - 1).multipliedReportingOverflow(by: row), (w - 1).multipliedReportingOverflow(by: pix),
                     (c - 1).multipliedReportingOverflow(by: channel)]
        var last = offset, overflow = parts.contains { $0.overflow }
        for p in parts {
            let (s, o) = last.addingReportingOverflow(p.partialValue)
            last = s
            overflow = overflow || o
        }
        guard !overflow, last < buffer.byteCount / 4 else {
            throw FlamingoError.invalidArgument(
                "OpenCL \(op): \(what) (\(h)×\(w)×\(c) from element \(offset), strides \(row)/\(pix)/\(channel)) overruns its buffer of \(buffer.byteCount) bytes")
        }
    }
}

/// A convolution with bias on the device, prepared once (f32 weights, e.g.
/// the NFNet's standardised ones). A 1×1 stride-1 single-group conv keeps
/// PyTorch's [out, in] layout and runs as `linear` over the pixels; every
/// other conv is stored [k·k][in/groups][out] for the direct kernel, so
/// neighbouring work-items (output channels) read neighbouring weights.
public struct CLConv {
    public enum Layout: Sendable { case oihw, hwio }
    public let inChannels, outChannels, kernel, stride, groups: Int
    public let layout: Layout
    /// The weights: [out, in·k·k/groups] (oihw) or [k·k·in/groups, out] (hwio).
    public let weight: CLWeight
    public let bias: CLView?

    /// Runs as a matrix product over the pixels (when both planes allow it).
    public var usesLinear: Bool { layout == .oihw && kernel == 1 && stride == 1 && groups == 1 }

    /// Element strides of (output channel, input channel, kernel position).
    var strides: (oc: Int, ic: Int, kk: Int) {
        let cinG = inChannels / groups, kk = kernel * kernel
        return layout == .oihw ? (cinG * kk, kk, 1) : (1, outChannels, cinG * outChannels)
    }

    /// Output geometry and TF-SAME padding for an input of h×w.
    public func padding(h: Int, w: Int) -> SamePadding { SamePadding(h: h, w: w, kernel: kernel, stride: stride) }
}

extension OpenCLRuntime {
    /// Uploads a convolution: `weight` in PyTorch layout [out, in/groups, k, k],
    /// `bias` [out] or nil. `direct` keeps even a 1×1 conv on the direct
    /// kernel (for tests).
    public func conv(weight: [Float], bias: [Float]?, inChannels cin: Int, outChannels cout: Int, kernel k: Int,
                     stride: Int = 1, groups: Int = 1, direct: Bool = false) throws -> CLConv {
        guard cin > 0, cout > 0, groups > 0, cin % groups == 0, cout % groups == 0, (1...15).contains(k),
              (1...16).contains(stride), cin <= 1 << 20, cout <= 1 << 20 else {
            throw FlamingoError.invalidArgument("OpenCL conv: \(cin) → \(cout) channels, kernel \(k), stride \(stride), groups \(groups) is not a valid convolution")
        }
        let cinG = cin / groups, fan = cinG * k * k
        guard weight.count == cout * fan, bias == nil || bias?.count == cout else {
            throw FlamingoError.invalidArgument("OpenCL conv: \(weight.count) weights and \(bias?.count ?? 0) biases for \(cout)×\(fan)")
        }
        let linear = !direct && k == 1 && groups == 1
        let w: CLWeight
        if linear {
            w = try self.weight(weight, rows: cout, cols: fan)
        } else {
            var t = [Float](repeating: 0, count: weight.count)
            for oc in 0..<cout {
                for ic in 0..<cinG {
                    for kk in 0..<(k * k) { t[(kk * cinG + ic) * cout + oc] = weight[(oc * cinG + ic) * k * k + kk] }
                }
            }
            w = try self.weight(t, rows: k * k * cinG, cols: cout)
        }
        return CLConv(inChannels: cin, outChannels: cout, kernel: k, stride: stride, groups: groups,
                      layout: linear ? .oihw : .hwio, weight: w, bias: try bias.map { CLView(try buffer($0)) })
    }

    /// y = act(conv(x) + bias)·scale with TF-SAME padding (computed in the
    /// kernel: `x` is the unpadded input). y is outH × outW × out channels
    /// (`conv.padding(h: x.h, w: x.w)`), NHWC; x may be any plane (NHWC or
    /// planar). y must not overlap x.
    public func conv2d(_ x: CLPlane, _ conv: CLConv, into y: CLPlane, activation: ConvActivation = .none,
                       scale: Float = 1) throws {
        let op = "conv2d"
        try x.check("x", op, nhwc: false)
        try y.check("y", op)
        try conv.weight.check(op)
        if let b = conv.bias { try b.check(rows: 1, cols: conv.outChannels, "bias", op) }
        let g = conv.padding(h: x.h, w: x.w)
        guard x.c == conv.inChannels, y.c == conv.outChannels, y.h == g.outH, y.w == g.outW else {
            throw FlamingoError.invalidArgument(
                "OpenCL conv2d: \(x.h)×\(x.w)×\(x.c) → \(y.h)×\(y.w)×\(y.c) does not fit a \(conv.inChannels) → \(conv.outChannels) conv with kernel \(conv.kernel), stride \(conv.stride) (output \(g.outH)×\(g.outW))")
        }
        guard x.h > 0, x.w > 0 else { return }
        if conv.usesLinear, let xr = x.pixelRows, let yr = y.pixelRows {
            try linear(xr, rows: x.h * x.w, conv.weight, bias: conv.bias, into: yr)
            if activation != .none || scale != 1 { try nfActivation(y, into: y, activation, scale: scale) }
            return
        }
        let s = conv.strides, n = y.h * y.w * y.c
        try launch("conv2d", family: "conv", global: [clRoundUp(n, 64)], local: [64]) { a in
            try a.buffer(x.buffer); try a.offset(x.offset); try a.int(x.row); try a.int(x.pix); try a.int(x.channel)
            try a.int(x.h); try a.int(x.w)
            try a.buffer(conv.weight.buffer); try a.offset(conv.weight.offset); try a.int(s.oc); try a.int(s.ic); try a.int(s.kk)
            try a.buffer(conv.bias?.buffer); try a.offset(conv.bias?.offset ?? 0); try a.flag(conv.bias != nil)
            try a.buffer(y.buffer); try a.offset(y.offset); try a.int(y.row); try a.int(y.pix)
            try a.int(y.h); try a.int(y.w); try a.int(y.c); try a.int(conv.kernel); try a.int(conv.stride)
            try a.int(g.top); try a.int(g.left)
            try a.int(conv.inChannels / conv.groups); try a.int(conv.outChannels / conv.groups)
            try a.int(Int(activation.rawValue)); try a.float(scale)
        }
    }

    /// y = act(x)·scale over a plane (in place when y is x); same sizes.
    public func nfActivation(_ x: CLPlane, into y: CLPlane, _ activation: ConvActivation, scale: Float = 1) throws {
        try nfAct(x, into: y, code: Int(activation.rawValue), scale: scale)
    }

    /// x = max(x, 0) over `count` floats.
    public func relu(_ x: CLView, count: Int) throws {
        let p = CLPlane(x.buffer, offset: x.offset, h: 1, w: 1, c: count)
        try nfAct(p, into: p, code: 3, scale: 1)
    }

    private func nfAct(_ x: CLPlane, into y: CLPlane, code: Int, scale: Float) throws {
        let op = "nfActivation"
        try x.check("x", op)
        try y.check("y", op)
        guard x.h == y.h, x.w == y.w, x.c == y.c else {
            throw FlamingoError.invalidArgument("OpenCL \(op): \(x.h)×\(x.w)×\(x.c) into \(y.h)×\(y.w)×\(y.c)")
        }
        try launch("nf_act", family: "conv", global: [clRoundUp(x.c, 64), x.w, x.h], local: [64, 1, 1]) { a in
            try a.buffer(x.buffer); try a.offset(x.offset); try a.int(x.row); try a.int(x.pix)
            try a.buffer(y.buffer); try a.offset(y.offset); try a.int(y.row); try a.int(y.pix)
            try a.int(x.c); try a.int(code); try a.float(scale)
        }
    }

    /// 2×2 average pooling, stride 2, ceil mode, padding not counted (timm's
    /// DownsampleAvg): x h×w×c → y ⌈h/2⌉×⌈w/2⌉×c.
    public func averagePool2x2(_ x: CLPlane, into y: CLPlane) throws {
        let op = "averagePool2x2"
        try x.check("x", op)
        try y.check("y", op)
        guard y.h == (x.h + 1) / 2, y.w == (x.w + 1) / 2, y.c == x.c else {
            throw FlamingoError.invalidArgument("OpenCL \(op): \(x.h)×\(x.w)×\(x.c) into \(y.h)×\(y.w)×\(y.c)")
        }
        try launch("nf_avgpool2x2", family: "conv", global: [clRoundUp(x.c, 64), y.w, y.h], local: [64, 1, 1]) { a in
            try a.buffer(x.buffer); try a.offset(x.offset); try a.int(x.row); try a.int(x.pix); try a.int(x.h); try a.int(x.w)
            try a.buffer(y.buffer); try a.offset(y.offset); try a.int(y.row); try a.int(y.pix)
            try a.int(x.c)
        }
    }

    /// mean[c] = the mean of channel c over the plane's pixels (squeeze-excite).
    public func channelMean(_ x: CLPlane, into mean: CLView) throws {
        let op = "channelMean"
        try x.check("x", op)
        try mean.check(rows: 1, cols: x.c, "mean", op)
        guard x.h * x.w <= Int(Int32.max) else { throw FlamingoError.invalidArgument("OpenCL \(op): too many pixels") }
        try launch("nf_channel_mean", family: "conv", global: [clRoundUp(x.c, 16), 16], local: [16, 16]) { a in
            try a.buffer(x.buffer); try a.offset(x.offset); try a.int(x.row); try a.int(x.pix); try a.int(x.h); try a.int(x.w)
            try a.buffer(mean.buffer); try a.offset(mean.offset); try a.int(x.c)
        }
    }

    /// out = h·g + shortcut per channel, g = attnGain·σ(se)·common with the
    /// squeeze-excite logits `se` [c], else `common` (NormFreeBlock's
    /// skipinit·α residual). out may be the shortcut plane (in place).
    public func scaleAdd(_ h: CLPlane, se: CLView?, attnGain: Float, common: Float, shortcut: CLPlane,
                         into out: CLPlane) throws {
        let op = "scaleAdd"
        try h.check("h", op)
        try shortcut.check("shortcut", op)
        try out.check("out", op)
        if let se { try se.check(rows: 1, cols: h.c, "se", op) }
        guard [shortcut, out].allSatisfy({ $0.h == h.h && $0.w == h.w && $0.c == h.c }) else {
            throw FlamingoError.invalidArgument("OpenCL \(op): planes of different sizes")
        }
        try launch("nf_scale_add", family: "conv", global: [clRoundUp(h.c, 64), h.w, h.h], local: [64, 1, 1]) { a in
            try a.buffer(h.buffer); try a.offset(h.offset); try a.int(h.row); try a.int(h.pix)
            try a.buffer(se?.buffer); try a.offset(se?.offset ?? 0); try a.flag(se != nil)
            try a.float(attnGain); try a.float(common)
            try a.buffer(shortcut.buffer); try a.offset(shortcut.offset); try a.int(shortcut.row); try a.int(shortcut.pix)
            try a.buffer(out.buffer); try a.offset(out.offset); try a.int(out.row); try a.int(out.pix)
            try a.int(h.c)
        }
    }
}
