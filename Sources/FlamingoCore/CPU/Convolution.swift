import CFlamingoKernels
import COpenBLAS
import Dispatch

// 2-D convolutions over NHWC activations for the NFNet encoder (docs/nfnet.md):
// the register-blocked AVX2 kernel of kernels/cpu/conv.c on a zero-padded
// input (3×3, grouped, strided, the stems, 1×1), or one OpenBLAS sgemm over
// the pixels for a 1×1 conv.

/// An NHWC activation plane: pixel (y, x) starts at `p + y·row + x·pix`
/// and holds `c` channels contiguously.
public struct Plane {
    public var p: UnsafeMutablePointer<Float>
    public var h: Int
    public var w: Int
    public var c: Int
    public var row: Int
    public var pix: Int

    /// A dense plane (`pix = c`, `row = w·c`).
    public init(_ p: UnsafeMutablePointer<Float>, h: Int, w: Int, c: Int) {
        self.init(p, h: h, w: w, c: c, row: w * c, pix: c)
    }

    public init(_ p: UnsafeMutablePointer<Float>, h: Int, w: Int, c: Int, row: Int, pix: Int) {
        self.p = p; self.h = h; self.w = w; self.c = c; self.row = row; self.pix = pix
    }

    public var pixels: Int { h * w }
    var isDense: Bool { pix == c && row == w * c }
    /// The sub-plane starting at pixel (y, x).
    func offset(y: Int, x: Int) -> Plane { Plane(p + y * row + x * pix, h: h - y, w: w - x, c: c, row: row, pix: pix) }
}

/// Element-wise activation applied by the convolution epilogue and `activate`.
public enum ConvActivation: Int32, Sendable {
    case none = 0, gelu = 1, geluTanh = 2
}

/// TensorFlow "SAME" padding as timm's `pad_same` / static same padding:
/// total `max((⌈n/s⌉ − 1)·s + k − n, 0)`, `total/2` before, the rest after.
public struct SamePadding: Equatable, Sendable {
    public let outH, outW, top, left, paddedH, paddedW: Int

    public init(h: Int, w: Int, kernel k: Int, stride s: Int) {
        func one(_ n: Int) -> (out: Int, before: Int, total: Int) {
            let out = (n + s - 1) / s
            let total = max((out - 1) * s + k - n, 0)
            return (out, total / 2, total)
        }
        let y = one(h), x = one(w)
        outH = y.out; outW = x.out; top = y.before; left = x.before
        paddedH = h + y.total; paddedW = w + x.total
    }
}

/// A convolution with bias, prepared once at load: packed for the direct
/// kernel, transformed for Winograd F(m×m, 3×3) (`winograd: true`, 3×3
/// stride 1 only), or (`gemm: true`, 1×1 stride 1 one group only) kept as an
/// [out, in] matrix for OpenBLAS sgemm. NFNet runs every conv, 1×1 included,
/// through the direct kernel: it matches sgemm's single-thread rate and
/// shares the thread pool with the 3×3 convs, where OpenBLAS's own spinning
/// worker threads cost ~20% of the forward on 2 cores (docs/nfnet.md).
public final class Conv2D: @unchecked Sendable {
    public let inChannels, outChannels, kernel, stride, groups: Int
    public let usesGEMM: Bool
    /// Winograd F(m×m, 3×3) (3×3 stride 1 only, on request).
    public let usesWinograd: Bool
    /// m of the Winograd tiles: 2 or 4.
    public let winogradTile: Int
    let weights: UnsafeMutablePointer<Float>
    let weightCount: Int
    let bias: UnsafeMutablePointer<Float>

    /// `weight` in PyTorch layout [out, in/groups, k, k] (its length is the
    /// caller's contract); `bias` [out] or nil.
    public init(weight: UnsafePointer<Float>, bias b: UnsafePointer<Float>?, inChannels: Int, outChannels: Int,
                kernel: Int, stride: Int = 1, groups: Int = 1, gemm: Bool = false,
                winograd: Bool = false, winogradTile: Int = 4) throws {
        guard inChannels > 0, outChannels > 0, groups > 0, inChannels % groups == 0, outChannels % groups == 0,
              (1...15).contains(kernel), (1...16).contains(stride), inChannels <= 1 << 20, outChannels <= 1 << 20 else {
            throw FlamingoError.invalidArgument("Conv2D: \(inChannels) → \(outChannels) channels, kernel \(kernel), stride \(stride), groups \(groups) is not a valid convolution")
        }
        self.inChannels = inChannels; self.outChannels = outChannels
        self.kernel = kernel; self.stride = stride; self.groups = groups
        usesGEMM = gemm && kernel == 1 && stride == 1 && groups == 1
        usesWinograd = winograd && kernel == 3 && stride == 1
        self.winogradTile = winogradTile == 2 ? 2 : 4
        let cinG = inChannels / groups, coutG = outChannels / groups
        weightCount = usesGEMM ? outChannels * inChannels
            : usesWinograd ? fk_wino_packed_size(Int32(self.winogradTile), Int32(groups), Int32(cinG), Int32(coutG))
            : fk_conv2d_packed_size(Int32(kernel), Int32(kernel), Int32(groups), Int32(cinG), Int32(coutG))
        weights = Self.allocate(weightCount)
        if usesGEMM {
            weights.update(from: weight, count: weightCount)
        } else if usesWinograd {
            let tmp = Self.allocate((self.winogradTile + 2) * (self.winogradTile + 2) * outChannels * cinG)
            fk_wino_pack(weight, Int32(self.winogradTile), Int32(groups), Int32(cinG), Int32(coutG), weights, tmp)
            UnsafeMutableRawPointer(tmp).deallocate()
        } else {
            fk_conv2d_pack(weight, Int32(kernel), Int32(kernel), Int32(groups), Int32(cinG), Int32(coutG), weights)
        }
        bias = Self.allocate(outChannels)
        if let b { bias.update(from: b, count: outChannels) }
    }

    deinit {
        UnsafeMutableRawPointer(weights).deallocate()
        UnsafeMutableRawPointer(bias).deallocate()
    }

    private static func allocate(_ n: Int) -> UnsafeMutablePointer<Float> {
        let p = UnsafeMutableRawPointer.allocate(byteCount: max(n, 1) * 4, alignment: 64)
            .bindMemory(to: Float.self, capacity: max(n, 1))
        p.initialize(repeating: 0, count: max(n, 1))
        return p
    }

    /// Output geometry and padding for an input of h×w.
    public func padding(h: Int, w: Int) -> SamePadding { SamePadding(h: h, w: w, kernel: kernel, stride: stride) }

    /// out = act(conv(input) + bias)·scale. For the direct and Winograd
    /// kernels `input` is the zero-padded plane (`padding(h:w:)` of the
    /// unpadded size: its `paddedH × paddedW` pixels); for sgemm it is the
    /// plane itself and both planes must be dense. `out` is `outH × outW`
    /// pixels of `outChannels`. Winograd takes its temporaries from `scratch`.
    public func callAsFunction(_ input: Plane, into out: Plane, activation: ConvActivation = .none, scale: Float = 1,
                               scratch: ConvScratch? = nil) {
        if usesWinograd {
            winograd(input, into: out, activation: activation, scale: scale, scratch: scratch ?? ConvScratch())
            return
        }
        if usesGEMM {
            gemm(input, into: out)
            if activation != .none || scale != 1 { activate(out, into: out, activation, scale: scale) }
            return
        }
        var c = fk_conv2d(in: input.p, in_row: input.row, in_pix: input.pix, weight: weights, bias: bias,
                          out: out.p, out_row: out.row, out_pix: out.pix, out_h: Int32(out.h), out_w: Int32(out.w),
                          kh: Int32(kernel), kw: Int32(kernel), stride: Int32(stride), groups: Int32(groups),
                          cin_g: Int32(inChannels / groups), cout_g: Int32(outChannels / groups),
                          act: activation.rawValue, act_scale: scale)
        let tasks = fk_conv2d_tasks(&c)
        let flops = out.pixels * outChannels * kernel * kernel * (inChannels / groups)
        withUnsafePointer(to: &c) { cp in
            // Equal tasks, one contiguous run per thread: each thread keeps its pixels in its own
            // L2 while the channel blocks pass (F6: 1–2% faster than 4 dynamic runs per thread).
            parallelTasks(tasks, work: flops, chunks: min(tasks, Threads.count), even: true) { _, r in
                fk_conv2d_run(cp, r.lowerBound, r.upperBound)
            }
        }
    }

    private func winograd(_ input: Plane, into out: Plane, activation: ConvActivation, scale: Float, scratch: ConvScratch) {
        var c = fk_wino(in: input.p, in_row: input.row, in_pix: input.pix, in_h: Int32(input.h), in_w: Int32(input.w),
                        weight: weights, bias: bias, out: out.p, out_row: out.row, out_pix: out.pix,
                        out_h: Int32(out.h), out_w: Int32(out.w), groups: Int32(groups), cin_g: Int32(inChannels / groups),
                        cout_g: Int32(outChannels / groups), act: activation.rawValue, act_scale: scale,
                        tile: Int32(winogradTile), chunk: 0)
        // Tiles per task: up to 48, split evenly (no 1-tile remainder re-reading every transformed
        // filter), at least two tasks per thread and a multiple of the thread count where the map allows.
        let m = winogradTile, tiles = ((out.h + m - 1) / m) * ((out.w + m - 1) / m)
        var chunks = max(1, (tiles + 47) / 48)
        while (groups * chunks < 2 * Threads.count || (groups * chunks) % Threads.count != 0) && chunks < tiles { chunks += 1 }
        c.chunk = Int32((tiles + chunks - 1) / chunks)
        let tasks = fk_wino_tasks(&c), per = fk_wino_scratch_size(&c)
        // One run of tasks (and one scratch) per thread: the pool's caller and worker claim
        // runs 0 and 1 in practice, so each thread's V and M stay in its own L2 from one
        // convolution to the next (8 runs meant scratch last written by the other core: 4% of F6).
        let slots = min(tasks, Threads.count)
        let space = scratch.take(slots * per)
        let work = out.pixels * outChannels * (inChannels / groups) * 4
        withUnsafePointer(to: &c) { cp in
            parallelTasks(tasks, work: work, chunks: slots, even: true) { slot, r in
                fk_wino_run(cp, r.lowerBound, r.upperBound, space + slot * per)
            }
        }
    }

    private func gemm(_ input: Plane, into out: Plane) {
        let m = input.pixels, n = outChannels, k = inChannels
        guard m > 0, n > 0 else { return }
        // Bias first, then C += A·Wᵀ: rows are pixels (lda = input.pix, ldc = out.pix).
        for r in 0..<m { (out.p + r * out.pix).update(from: bias, count: n) }
        if m == 1 {
            cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(n), Int32(k), 1, weights, Int32(k), input.p, 1, 1, out.p, 1)
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k),
                        1, input.p, Int32(input.pix), weights, Int32(k), 1, out.p, Int32(out.pix))
        }
    }
}

/// out = act(input)·scale pixel by pixel over the `c` channels (planes may
/// differ in strides, e.g. writing into the interior of a padded plane;
/// input == out is allowed).
public func activate(_ input: Plane, into out: Plane, _ activation: ConvActivation, scale: Float) {
    let act = activation.rawValue
    if input.isDense && out.isDense {
        let n = input.pixels * input.c
        parallelTasks(n, work: n * 8) { r in fk_nf_act(input.p + r.lowerBound, out.p + r.lowerBound, r.count, act, scale) }
        return
    }
    let rowPix = input.pix == input.c && out.pix == out.c
    parallelTasks(input.h, work: input.pixels * input.c * 8) { rows in
        for y in rows {
            if rowPix {
                fk_nf_act(input.p + y * input.row, out.p + y * out.row, input.w * input.c, act, scale)
            } else {
                for x in 0..<input.w {
                    fk_nf_act(input.p + y * input.row + x * input.pix, out.p + y * out.row + x * out.pix, input.c, act, scale)
                }
            }
        }
    }
}

/// 2×2 average pooling, stride 2, ceil mode, padding not counted (timm's
/// DownsampleAvg pool): dense [h, w, c] → dense [⌈h/2⌉, ⌈w/2⌉, c].
public func averagePool2x2(_ input: Plane, into out: UnsafeMutablePointer<Float>) {
    let oh = (input.h + 1) / 2
    parallelTasks(oh, work: input.pixels * input.c) { rows in
        fk_avgpool2x2(input.p, Int32(input.h), Int32(input.w), Int32(input.c), out, Int32(rows.lowerBound), Int32(rows.upperBound))
    }
}

/// Scaled weight standardisation of timm's ScaledStdConv2d, done once at
/// load: per output channel o over its fan-in N = in/groups·k·k,
/// Ŵ = (W − mean) / √(var + eps) · gain[o] · gamma · N^(-1/2) (biased var).
/// `weight` [out, N] and `gain` [out] are read through `at`; the result is
/// [out, N] f32.
public func standardizedWeights(out: Int, fanIn n: Int, eps: Double, gamma: Double = 1,
                                weight: (Int) -> Float, gain: (Int) -> Float) -> [Float] {
    var result = [Float](repeating: 0, count: out * n)
    guard n > 0 else { return result }
    // timm multiplies gain by the float32 scale gamma·N^(-1/2) before the batch norm.
    let scale = Float(gamma * 1 / Double(n).squareRoot())
    for o in 0..<out {
        var mean = 0.0
        for i in 0..<n { mean += Double(weight(o * n + i)) }
        mean /= Double(n)
        var v = 0.0
        for i in 0..<n { let d = Double(weight(o * n + i)) - mean; v += d * d }
        v /= Double(n)
        let mult = Double(gain(o) * scale) / (v + eps).squareRoot()
        for i in 0..<n { result[o * n + i] = Float((Double(weight(o * n + i)) - mean) * mult) }
    }
    return result
}

/// Per-forward scratch: like Workspace, but nothing is cleared except the
/// borders of padded conv inputs (`takePadded`); everything else is overwritten.
public final class ConvScratch {
    private var chunks: [(p: UnsafeMutablePointer<Float>, count: Int)] = []
    private var chunk = 0, offset = 0

    deinit { for c in chunks { UnsafeMutableRawPointer(c.p).deallocate() } }

    public init() {}

    public func reset() { chunk = 0; offset = 0 }

    /// A zero-padded plane laid out as `geo` (the padding of an h×w input) whose h×w interior the
    /// caller then overwrites completely: only the border is cleared (clearing whole planes was
    /// ~240 MB of serial stores per NFNet-F6 forward).
    public func takePadded(_ geo: SamePadding, h: Int, w: Int, c: Int) -> Plane {
        let rowFloats = geo.paddedW * c, bottom = geo.top + h, right = geo.left + w
        let plane = Plane(take(geo.paddedH * rowFloats), h: geo.paddedH, w: geo.paddedW, c: c)
        plane.p.initialize(repeating: 0, count: geo.top * rowFloats)
        (plane.p + bottom * rowFloats).initialize(repeating: 0, count: (geo.paddedH - bottom) * rowFloats)
        for y in geo.top..<bottom {
            let r = plane.p + y * rowFloats
            r.initialize(repeating: 0, count: geo.left * c)
            (r + right * c).initialize(repeating: 0, count: (geo.paddedW - right) * c)
        }
        return plane
    }

    public func take(_ count: Int) -> UnsafeMutablePointer<Float> {
        let n = (max(count, 1) + 15) & ~15
        while chunk < chunks.count, offset + n > chunks[chunk].count { chunk += 1; offset = 0 }
        if chunk == chunks.count {
            let size = max(n, 1 << 20, (chunks.last?.count ?? 0) * 2)
            let p = UnsafeMutableRawPointer.allocate(byteCount: size * 4, alignment: 64).bindMemory(to: Float.self, capacity: size)
            chunks.append((p, size))
            offset = 0
        }
        let p = chunks[chunk].p + offset
        offset += n
        return p
    }
}

/// Splits [0, n) into contiguous ranges run on the thread pool when `work`
/// (roughly, flops or bytes) pays for waking threads; else inline.
func parallelTasks(_ n: Int, work: Int, _ body: (Range<Int>) -> Void) {
    parallelTasks(n, work: work, chunks: parallelSlots(n)) { _, r in body(r) }
}

/// How many ranges `parallelTasks` splits n tasks into (at most): 4 per thread.
func parallelSlots(_ n: Int) -> Int { max(1, min(n, Threads.count * 4)) }

/// As above, with the index (< chunks) of each range, e.g. to give it its own scratch. `even`
/// splits into exactly `chunks` ranges whose sizes differ by at most one (for few, equal, heavy
/// tasks); otherwise ranges are ⌈n/chunks⌉ long.
func parallelTasks(_ n: Int, work: Int, chunks: Int, even: Bool = false, _ body: (Int, Range<Int>) -> Void) {
    guard n > 0 else { return }
    if Threads.count <= 1 || n == 1 || chunks <= 1 || work < 1 << 17 { body(0, 0..<n); return }
    if even {
        let k = min(chunks, n)
        Threads.run(k) { i in body(i, (i * n / k)..<((i + 1) * n / k)) }
        return
    }
    let per = (n + chunks - 1) / chunks
    let used = (n + per - 1) / per
    Threads.run(used) { i in
        let lo = i * per
        body(i, lo..<min(n, lo + per))
    }
}
