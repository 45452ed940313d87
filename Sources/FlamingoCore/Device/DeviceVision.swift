/// The CLIP ViT (VisionTransformer.swift, spec/10) and the Perceiver
/// Resampler (PerceiverResampler.swift, spec/20) on the device. The host
/// only reorders pixels into patches and adds the frame/media-time
/// embeddings; everything else runs on the device.
final class DeviceVisionTransformer {
    let config: VisionTransformerConfig
    let rt: OpenCLRuntime
    let patchEmbedding: CLWeight          // conv1 as [width, 3·p·p]
    let classEmbedding: CLView
    let positionalEmbedding: CLView       // [numPatches + 1, width]
    let lnPre, lnPost: (weight: CLView, bias: CLView?)
    let blocks: [Block]
    /// Every query row sees every token (selections for the attention kernel).
    let fullSelection: CLView

    struct Block {
        let ln1, ln2: (weight: CLView, bias: CLView?)
        let inProj, outProj, fc, proj: CLWeight
        let inBias, outBias, fcBias, projBias: CLView
    }

    init(_ w: DeviceWeights, config c: VisionTransformerConfig, prefix p: String) throws {
        config = c
        rt = w.rt
        let conv = try w.model.tensor("\(p).conv1.weight")
        patchEmbedding = try w.rt.weight(conv, rows: c.width, cols: 3 * c.patchSize * c.patchSize)
        classEmbedding = try w.vector("\(p).class_embedding")
        positionalEmbedding = try w.vector("\(p).positional_embedding")
        lnPre = try w.norm("\(p).ln_pre")
        lnPost = try w.norm("\(p).ln_post")
        blocks = try (0..<c.layers).map { i in
            let b = "\(p).transformer.resblocks.\(i)"
            return Block(ln1: try w.norm("\(b).ln_1"), ln2: try w.norm("\(b).ln_2"),
                         inProj: try w.matrix("\(b).attn.in_proj_weight"), outProj: try w.matrix("\(b).attn.out_proj.weight"),
                         fc: try w.matrix("\(b).mlp.c_fc.weight"), proj: try w.matrix("\(b).mlp.c_proj.weight"),
                         inBias: try w.vector("\(b).attn.in_proj_bias"), outBias: try w.vector("\(b).attn.out_proj.bias"),
                         fcBias: try w.vector("\(b).mlp.c_fc.bias"), projBias: try w.vector("\(b).mlp.c_proj.bias"))
        }
        let n = c.numPatches + 1
        fullSelection = CLView(try w.rt.buffer(OpenCLRuntime.encodeSelections(Array(repeating: .range(0..<n), count: n))))
    }

    /// Patch tokens [numPatches, width] of one normalised image into `out`
    /// (a device view with row stride `width`).
    func callAsFunction(_ pixels: UnsafePointer<Float>, into out: CLView, scratch: DeviceScratch) throws {
        let c = config, w = c.width, n = c.numPatches + 1, hd = w / c.heads, eps = c.layerNormEps
        let patches = VisionTransformer.patches(pixels, config: c)
        let pt = try scratch.take("vit.patches", patches.count)
        try rt.upload(UnsafeRawBufferPointer(start: patches.p, count: patches.count * 4), to: pt.buffer)
        let x = CLView(try scratch.take("vit.x", n * w).buffer, stride: w)
        let h = try scratch.take("vit.h", n * w), a = try scratch.take("vit.a", n * w)
        let qkv = CLView(try scratch.take("vit.qkv", n * 3 * w).buffer, stride: 3 * w)
        let mlp = try scratch.take("vit.mlp", n * c.mlpDim)
        try rt.copyRows(classEmbedding, into: x, rows: 1, cols: w)
        try rt.linear(pt, rows: c.numPatches, patchEmbedding, into: x.rows(from: 1))
        try rt.add(positionalEmbedding, into: x, rows: n, cols: w)
        try rt.layerNorm(x, rows: n, dim: w, weight: lnPre.weight, bias: lnPre.bias, eps: eps, into: x)
        for b in blocks {
            try rt.layerNorm(x, rows: n, dim: w, weight: b.ln1.weight, bias: b.ln1.bias, eps: eps, into: h)
            try rt.linear(h, rows: n, b.inProj, bias: b.inBias, into: qkv)
            try rt.attention(q: qkv, k: qkv.columns(from: w), v: qkv.columns(from: 2 * w), out: a, queries: n, keys: n,
                             heads: c.heads, kvHeads: c.heads, headDim: hd, scale: 1 / Float(hd).squareRoot(),
                             mask: .selections(fullSelection, positionBase: 0))
            try rt.linear(a, rows: n, b.outProj, bias: b.outBias, into: x, accumulate: true)
            try rt.layerNorm(x, rows: n, dim: w, weight: b.ln2.weight, bias: b.ln2.bias, eps: eps, into: h)
            try rt.linear(h, rows: n, b.fc, bias: b.fcBias, into: mlp,
                          activation: c.activation == .quickGELU ? .quickGELU : .gelu)
            try rt.linear(mlp, rows: n, b.proj, bias: b.projBias, into: x, accumulate: true)
        }
        let tokens = x.rows(from: 1)
        if c.lnPostOnTokens {
            try rt.layerNorm(tokens, rows: c.numPatches, dim: w, weight: lnPost.weight, bias: lnPost.bias, eps: eps, into: out)
        } else {
            try rt.copyRows(tokens, into: out, rows: c.numPatches, cols: w)
        }
    }
}

final class DevicePerceiverResampler {
    let config: PerceiverResamplerConfig
    let rt: OpenCLRuntime
    let latents: CLView
    let norm: (weight: CLView, bias: CLView?)
    let layers: [Layer]

    struct Layer {
        let normMedia, normLatents, ffNorm: (weight: CLView, bias: CLView?)
        let toQ, toKV, toOut, ff1, ff2: CLWeight
    }

    init(_ w: DeviceWeights, config c: PerceiverResamplerConfig, prefix p: String) throws {
        config = c
        rt = w.rt
        latents = try w.vector("\(p).latents")
        norm = try w.norm("\(p).norm")
        layers = try (0..<c.depth).map { l in
            let a = "\(p).layers.\(l).0", f = "\(p).layers.\(l).1"
            return Layer(normMedia: try w.norm("\(a).norm_media"), normLatents: try w.norm("\(a).norm_latents"),
                         ffNorm: try w.norm("\(f).0"), toQ: try w.matrix("\(a).to_q.weight"),
                         toKV: try w.matrix("\(a).to_kv.weight"), toOut: try w.matrix("\(a).to_out.weight"),
                         ff1: try w.matrix("\(f).1.weight"), ff2: try w.matrix("\(f).3.weight"))
        }
    }

    /// Resamples `m` media tokens [m, dim] (time embeddings already added)
    /// into [numLatents, dim] at `out`: keys and values are media ∥ latents.
    func callAsFunction(_ media: CLView, tokens m: Int, into z: CLView, scratch: DeviceScratch) throws {
        let c = config, d = c.dim, n = c.numLatents, inner = c.heads * c.dimHead, eps = PerceiverResampler.eps
        let kvIn = CLView(try scratch.take("rs.kvin", (m + n) * d).buffer, stride: d)
        let q = try scratch.take("rs.q", n * inner), o = try scratch.take("rs.o", n * inner)
        let kv = CLView(try scratch.take("rs.kv", (m + n) * 2 * inner).buffer, stride: 2 * inner)
        let t = try scratch.take("rs.t", n * d), ff = try scratch.take("rs.ff", n * d * c.ffMult)
        let all = CLView(try rt.temporaryBuffer(OpenCLRuntime.encodeSelections(Array(repeating: .range(0..<(m + n)), count: n))))
        try rt.copyRows(latents, into: z, rows: n, cols: d)
        for L in layers {
            try rt.layerNorm(media, rows: m, dim: d, weight: L.normMedia.weight, bias: L.normMedia.bias, eps: eps, into: kvIn)
            let lat = kvIn.rows(from: m)
            try rt.layerNorm(z, rows: n, dim: d, weight: L.normLatents.weight, bias: L.normLatents.bias, eps: eps, into: lat)
            try rt.linear(lat, rows: n, L.toQ, into: q)
            try rt.linear(kvIn, rows: m + n, L.toKV, into: kv)
            try rt.attention(q: q, k: kv, v: kv.columns(from: inner), out: o, queries: n, keys: m + n, heads: c.heads,
                             kvHeads: c.heads, headDim: c.dimHead, scale: 1 / Float(c.dimHead).squareRoot(),
                             mask: .selections(all, positionBase: 0))
            try rt.linear(o, rows: n, L.toOut, into: z, accumulate: true)
            try rt.layerNorm(z, rows: n, dim: d, weight: L.ffNorm.weight, bias: L.ffNorm.bias, eps: eps, into: t)
            try rt.linear(t, rows: n, L.ff1, into: ff, activation: .gelu)
            try rt.linear(ff, rows: n, L.ff2, into: z, accumulate: true)
        }
        try rt.layerNorm(z, rows: n, dim: d, weight: norm.weight, bias: norm.bias, eps: eps, into: z)
    }
}
