import Glibc

/// The frozen LM on an OpenCL device (spec/40): the same computation as
/// LanguageModel and the LM/ family files, expressed in the device op layer
/// (OpenCL/Ops*.swift) so that activations, the KV cache and the media
/// keys/values never leave the device; only the requested logits come back.
final class DeviceLanguageModel {
    let config: LanguageModelConfig
    let rt: OpenCLRuntime
    let embedding: CLWeight
    let head: CLWeight
    let finalNorm: (weight: CLView, bias: CLView?)
    let layers: [DeviceDecoderLayer]

    init(_ w: DeviceWeights, config c: LanguageModelConfig, prefix p: String) throws {
        config = c
        rt = w.rt
        let base: String
        switch c.family {
        case .mpt, .mosaicGPT:
            embedding = try w.table("\(p).transformer.wte.weight")
            finalNorm = try w.norm("\(p).transformer.\(c.family == .mpt ? "norm_f" : "ln_f")")
            base = "\(p).transformer.blocks"
        case .gptNeoX:
            embedding = try w.table("\(p).gpt_neox.embed_in.weight")
            finalNorm = try w.norm("\(p).gpt_neox.final_layer_norm")
            base = "\(p).gpt_neox.layers"
        case .llama:
            embedding = try w.table("\(p).model.embed_tokens.weight")
            finalNorm = (try w.vector("\(p).model.norm.weight"), nil)
            base = "\(p).model.layers"
        }
        layers = try (0..<c.layers).map { i -> DeviceDecoderLayer in
            switch c.family {
            case .mpt, .mosaicGPT: return try DeviceMPTLayer(w, config: c, prefix: "\(base).\(i)")
            case .gptNeoX: return try DeviceGPTNeoXLayer(w, config: c, prefix: "\(base).\(i)")
            case .llama: return try DeviceLLaMALayer(w, config: c, prefix: "\(base).\(i)")
            }
        }
        if c.tieWordEmbeddings {
            // A quantized tied table is gathered as f32 but read as the head in its packed form.
            let name = c.family == .gptNeoX ? "\(p).gpt_neox.embed_in.weight"
                : c.family == .llama ? "\(p).model.embed_tokens.weight" : "\(p).transformer.wte.weight"
            head = w.isQuantized(name) ? try w.matrix(name) : embedding
        } else {
            head = try w.matrix(c.family == .gptNeoX ? "\(p).embed_out.weight" : "\(p).lm_head.weight")
        }
    }

    /// Final norm of `rows` rows of x in place, then logits [rows, vocab] into `out`.
    func logits(_ x: CLView, rows: Int, into out: CLView) throws {
        let d = config.hiddenSize
        if config.family == .llama {
            try rt.rmsNorm(x, rows: rows, dim: d, weight: finalNorm.weight, eps: config.normEps, into: x)
        } else {
            try rt.layerNorm(x, rows: rows, dim: d, weight: finalNorm.weight, bias: finalNorm.bias, eps: config.normEps, into: x)
        }
        try rt.linear(x, rows: rows, head, into: out)
    }
}

/// One decoder layer on the device: appends each segment's keys and values
/// to its cache and updates x [rows, D] in place.
protocol DeviceDecoderLayer {
    func callAsFunction(_ x: CLView, rows: Int, segments: [DeviceSegment], layer: Int, scratch: DeviceScratch) throws
}

/// Causal self-attention of each segment's query rows over its cache, after
/// storing the segment's new keys and values there. q, k, v: views of the
/// step's rows (any row strides); out: [rows, heads·headDim].
func deviceCausalAttention(_ rt: OpenCLRuntime, q: CLView, k: CLView, v: CLView, segments: [DeviceSegment],
                           layer: Int, heads: Int, kvHeads: Int, headDim hd: Int, alibiSlopes: CLView? = nil,
                           into out: CLView) throws {
    let kw = kvHeads * hd, qw = heads * hd, scale = 1 / Float(hd).squareRoot()
    for s in segments {
        let first = s.rows.lowerBound, n = s.rows.count, cache = s.state
        let kCache = CLView(cache.keys[layer], stride: kw), vCache = CLView(cache.values[layer], stride: kw)
        try rt.copyRows(k.rows(from: first), into: kCache.rows(from: s.start), and: v.rows(from: first),
                        into: vCache.rows(from: s.start), rows: n, cols: kw)
        let keys = s.start + n, o = CLView(out.buffer, offset: out.offset + first * qw, stride: qw)
        if n == 1 {
            try rt.decodeAttention(q: q.rows(from: first), k: kCache, v: vCache, out: o, keys: keys, heads: heads,
                                   kvHeads: kvHeads, headDim: hd, scale: scale, alibiSlopes: alibiSlopes,
                                   keyValid: CLView(cache.valid), position: s.start)
        } else {
            try rt.attention(q: q.rows(from: first), k: kCache, v: vCache, out: o, queries: n, keys: keys,
                             heads: heads, kvHeads: kvHeads, headDim: hd, scale: scale, alibiSlopes: alibiSlopes,
                             keyValid: CLView(cache.valid), mask: .causal(start: s.start))
        }
    }
}

/// Rotary embedding of each segment's rows of x (head h at column h·headDim)
/// at the positions uploaded for the step.
func deviceRotary(_ rt: OpenCLRuntime, _ x: CLView, segments: [DeviceSegment], heads: Int, headDim: Int,
                  dims: Int, theta: Float) throws {
    for s in segments {
        try rt.rotary(x.rows(from: s.rows.lowerBound), rows: s.rows.count, heads: heads, headDim: headDim, dims: dims,
                      theta: theta, positions: s.positions)
    }
}

/// MPT-7B and MosaicGPT block (LM/MPT.swift): x += attn(LN₁(x)); x += FFN(LN₂(x)).
struct DeviceMPTLayer: DeviceDecoderLayer {
    let c: LanguageModelConfig
    let rt: OpenCLRuntime
    let norm1, norm2: (weight: CLView, bias: CLView?)
    let qLN, kLN: (weight: CLView, bias: CLView?)?
    let wqkv, outProj, up, down: CLWeight
    let slopes: CLView

    init(_ w: DeviceWeights, config: LanguageModelConfig, prefix b: String) throws {
        c = config
        rt = w.rt
        let mosaic = config.family == .mosaicGPT
        norm1 = try w.norm(b + (mosaic ? ".ln_1" : ".norm_1"))
        norm2 = try w.norm(b + (mosaic ? ".ln_2" : ".norm_2"))
        qLN = config.qkLayerNorm ? try w.norm(b + ".attn.q_ln") : nil
        kLN = config.qkLayerNorm ? try w.norm(b + ".attn.k_ln") : nil
        wqkv = try w.matrix(b + ".attn.Wqkv.weight")
        outProj = try w.matrix(b + ".attn.out_proj.weight")
        up = try w.matrix(b + (mosaic ? ".mlp.mlp_up.weight" : ".ffn.up_proj.weight"))
        down = try w.matrix(b + (mosaic ? ".mlp.mlp_down.weight" : ".ffn.down_proj.weight"))
        slopes = CLView(try w.rt.buffer(MPT.alibiSlopes(heads: config.heads, biasMax: config.alibiBiasMax,
                                                        family: config.family)))
    }

    func callAsFunction(_ x: CLView, rows: Int, segments: [DeviceSegment], layer: Int, scratch: DeviceScratch) throws {
        let d = c.hiddenSize, eps = c.normEps
        let h = try scratch.take("h", rows * d), o = try scratch.take("o", rows * d)
        let qkv = CLView(try scratch.take("qkv", rows * 3 * d).buffer, stride: 3 * d)
        try rt.layerNorm(x, rows: rows, dim: d, weight: norm1.weight, bias: norm1.bias, eps: eps, into: h)
        try rt.linear(h, rows: rows, wqkv, into: qkv)
        if let qLN, let kLN {  // over the full width of Q and of K
            try rt.layerNorm(qkv, rows: rows, dim: d, weight: qLN.weight, bias: qLN.bias, eps: eps, into: qkv)
            let k = qkv.columns(from: d)
            try rt.layerNorm(k, rows: rows, dim: d, weight: kLN.weight, bias: kLN.bias, eps: eps, into: k)
        }
        try deviceCausalAttention(rt, q: qkv, k: qkv.columns(from: d), v: qkv.columns(from: 2 * d), segments: segments,
                                  layer: layer, heads: c.heads, kvHeads: c.heads, headDim: c.headDim,
                                  alibiSlopes: slopes, into: o)
        try rt.linear(o, rows: rows, outProj, into: x, accumulate: true)
        try rt.layerNorm(x, rows: rows, dim: d, weight: norm2.weight, bias: norm2.bias, eps: eps, into: h)
        let f = try scratch.take("ffn", rows * c.intermediateSize)
        try rt.linear(h, rows: rows, up, into: f, activation: .gelu)
        try rt.linear(f, rows: rows, down, into: x, accumulate: true)
    }
}

/// GPT-NeoX block (LM/GPTNeoX.swift). The fused qkv weight's rows are
/// reordered at load from per-head (q, k, v) to [Q | K | V].
struct DeviceGPTNeoXLayer: DeviceDecoderLayer {
    let c: LanguageModelConfig
    let rt: OpenCLRuntime
    let lnIn, lnPost: (weight: CLView, bias: CLView?)
    let qkv, dense, up, down: CLWeight
    let qkvBias, denseBias, upBias, downBias: CLView

    init(_ w: DeviceWeights, config: LanguageModelConfig, prefix b: String) throws {
        c = config
        rt = w.rt
        let hd = config.headDim
        // stored row head·3·hd + part·hd + i  →  part·D + head·hd + i
        let order = (0..<3).flatMap { part in
            (0..<config.heads).flatMap { head in (0..<hd).map { head * 3 * hd + part * hd + $0 } }
        }
        lnIn = try w.norm(b + ".input_layernorm")
        lnPost = try w.norm(b + ".post_attention_layernorm")
        qkv = try w.matrix(b + ".attention.query_key_value.weight", rowOrder: order)
        qkvBias = try w.vector(b + ".attention.query_key_value.bias", rowOrder: order)
        dense = try w.matrix(b + ".attention.dense.weight")
        denseBias = try w.vector(b + ".attention.dense.bias")
        up = try w.matrix(b + ".mlp.dense_h_to_4h.weight")
        upBias = try w.vector(b + ".mlp.dense_h_to_4h.bias")
        down = try w.matrix(b + ".mlp.dense_4h_to_h.weight")
        downBias = try w.vector(b + ".mlp.dense_4h_to_h.bias")
    }

    func callAsFunction(_ x: CLView, rows: Int, segments: [DeviceSegment], layer: Int, scratch: DeviceScratch) throws {
        let d = c.hiddenSize, hd = c.headDim, eps = c.normEps
        let h = try scratch.take("h", rows * d), o = try scratch.take("o", rows * d)
        let mixed = CLView(try scratch.take("qkv", rows * 3 * d).buffer, stride: 3 * d)
        try rt.layerNorm(x, rows: rows, dim: d, weight: lnIn.weight, bias: lnIn.bias, eps: eps, into: h)
        try rt.linear(h, rows: rows, qkv, bias: qkvBias, into: mixed)
        let rot = Int(Float(hd) * c.rotaryPct)
        let q = mixed, k = mixed.columns(from: d)
        try deviceRotary(rt, q, segments: segments, heads: c.heads, headDim: hd, dims: rot, theta: c.ropeTheta)
        try deviceRotary(rt, k, segments: segments, heads: c.heads, headDim: hd, dims: rot, theta: c.ropeTheta)
        try deviceCausalAttention(rt, q: q, k: k, v: mixed.columns(from: 2 * d), segments: segments, layer: layer,
                                  heads: c.heads, kvHeads: c.heads, headDim: hd, into: o)
        // Parallel residual: both norms read the layer's input x.
        if c.parallelResidual {
            try rt.layerNorm(x, rows: rows, dim: d, weight: lnPost.weight, bias: lnPost.bias, eps: eps, into: h)
            try rt.linear(o, rows: rows, dense, bias: denseBias, into: x, accumulate: true)
        } else {
            try rt.linear(o, rows: rows, dense, bias: denseBias, into: x, accumulate: true)
            try rt.layerNorm(x, rows: rows, dim: d, weight: lnPost.weight, bias: lnPost.bias, eps: eps, into: h)
        }
        let f = try scratch.take("ffn", rows * c.intermediateSize)
        try rt.linear(h, rows: rows, up, bias: upBias, into: f, activation: .gelu)
        try rt.linear(f, rows: rows, down, bias: downBias, into: x, accumulate: true)
    }
}

/// LLaMA block (LM/LLaMA.swift): RMSNorm, rotary, grouped-query attention, SwiGLU.
struct DeviceLLaMALayer: DeviceDecoderLayer {
    let c: LanguageModelConfig
    let rt: OpenCLRuntime
    let norm1, norm2: CLView
    let wq, wk, wv, wo, gate, up, down: CLWeight

    init(_ w: DeviceWeights, config: LanguageModelConfig, prefix b: String) throws {
        c = config
        rt = w.rt
        norm1 = try w.vector(b + ".input_layernorm.weight")
        norm2 = try w.vector(b + ".post_attention_layernorm.weight")
        wq = try w.matrix(b + ".self_attn.q_proj.weight")
        wk = try w.matrix(b + ".self_attn.k_proj.weight")
        wv = try w.matrix(b + ".self_attn.v_proj.weight")
        wo = try w.matrix(b + ".self_attn.o_proj.weight")
        gate = try w.matrix(b + ".mlp.gate_proj.weight")
        up = try w.matrix(b + ".mlp.up_proj.weight")
        down = try w.matrix(b + ".mlp.down_proj.weight")
    }

    func callAsFunction(_ x: CLView, rows: Int, segments: [DeviceSegment], layer: Int, scratch: DeviceScratch) throws {
        let d = c.hiddenSize, hd = c.headDim, kw = c.kvHeads * hd, inter = c.intermediateSize
        let h = try scratch.take("h", rows * d), q = try scratch.take("q", rows * d), o = try scratch.take("o", rows * d)
        let k = try scratch.take("k", rows * kw), v = try scratch.take("v", rows * kw)
        try rt.rmsNorm(x, rows: rows, dim: d, weight: norm1, eps: c.normEps, into: h)
        try rt.linear(h, rows: rows, wq, into: q)
        try rt.linear(h, rows: rows, wk, into: k)
        try rt.linear(h, rows: rows, wv, into: v)
        try deviceRotary(rt, CLView(q.buffer, stride: d), segments: segments, heads: c.heads, headDim: hd, dims: hd,
                         theta: c.ropeTheta)
        try deviceRotary(rt, CLView(k.buffer, stride: kw), segments: segments, heads: c.kvHeads, headDim: hd, dims: hd,
                         theta: c.ropeTheta)
        try deviceCausalAttention(rt, q: CLView(q.buffer, stride: d), k: CLView(k.buffer, stride: kw),
                                  v: CLView(v.buffer, stride: kw), segments: segments, layer: layer, heads: c.heads,
                                  kvHeads: c.kvHeads, headDim: hd, into: o)
        try rt.linear(o, rows: rows, wo, into: x, accumulate: true)
        try rt.rmsNorm(x, rows: rows, dim: d, weight: norm2, eps: c.normEps, into: h)
        let g = try scratch.take("gate", rows * inter), u = try scratch.take("up", rows * inter)
        try rt.linear(h, rows: rows, gate, into: g)
        try rt.linear(h, rows: rows, up, into: u)
        try rt.swiGLU(gate: g, up: u, rows: rows, cols: inter)
        try rt.linear(g, rows: rows, down, into: x, accumulate: true)
    }
}
