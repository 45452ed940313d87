/// LLaMA: RMSNorm, rotary (rotate-half), SwiGLU MLP, no biases, optional
/// grouped-query attention (spec/40 §6).
enum LLaMA {
    static func weights(_ c: LanguageModelConfig, prefix p: String) -> [WeightSpec] {
        let d = c.hiddenSize
        let kv = c.kvHeads * c.headDim
        var w = [WeightSpec("\(p).model.embed_tokens.weight", [c.vocabSize, d], quantizable: true)]
        for i in 0..<c.layers {
            let b = "\(p).model.layers.\(i)"
            w.norm("\(b).input_layernorm", d, bias: false)
            w.linear("\(b).self_attn.q_proj", out: d, in: d, bias: false)
            w.linear("\(b).self_attn.k_proj", out: kv, in: d, bias: false)
            w.linear("\(b).self_attn.v_proj", out: kv, in: d, bias: false)
            w.linear("\(b).self_attn.o_proj", out: d, in: d, bias: false)
            w.norm("\(b).post_attention_layernorm", d, bias: false)
            w.linear("\(b).mlp.gate_proj", out: c.intermediateSize, in: d, bias: false)
            w.linear("\(b).mlp.up_proj", out: c.intermediateSize, in: d, bias: false)
            w.linear("\(b).mlp.down_proj", out: d, in: c.intermediateSize, bias: false)
        }
        w.norm("\(p).model.norm", d, bias: false)
        if !c.tieWordEmbeddings { w.append(WeightSpec("\(p).lm_head.weight", [c.vocabSize, d], quantizable: true)) }
        return w
    }
}

extension LLaMA {
    /// x += attn(RMS₁(x)) with rotary on q and k; x += down(silu(gate)·up)(RMS₂(x)).
    struct Layer: DecoderLayer {
        let c: LanguageModelConfig
        let norm1, norm2: Matrix
        let wq, wk, wv, wo, gate, up, down: Weight

        init(_ model: WeightSource, config: LanguageModelConfig, prefix b: String) throws {
            c = config
            norm1 = try model.matrix(b + ".input_layernorm.weight")
            norm2 = try model.matrix(b + ".post_attention_layernorm.weight")
            wq = try model.weight(b + ".self_attn.q_proj.weight")
            wk = try model.weight(b + ".self_attn.k_proj.weight")
            wv = try model.weight(b + ".self_attn.v_proj.weight")
            wo = try model.weight(b + ".self_attn.o_proj.weight")
            gate = try model.weight(b + ".mlp.gate_proj.weight")
            up = try model.weight(b + ".mlp.up_proj.weight")
            down = try model.weight(b + ".mlp.down_proj.weight")
        }

        func callAsFunction(_ x: UnsafeMutablePointer<Float>, rows: Int, segments: [BatchSegment], layer: Int, ws: Workspace) {
            let d = c.hiddenSize, hd = c.headDim, kw = c.kvHeads * hd
            let h = ws.take(rows * d), q = ws.take(rows * d), o = ws.take(rows * d)
            let k = ws.take(rows * kw), v = ws.take(rows * kw)
            rmsNorm(x, rows: rows, dim: d, weight: norm1, eps: c.normEps, into: h)
            linear(h, m: rows, wq, into: q)
            linear(h, m: rows, wk, into: k)
            linear(h, m: rows, wv, into: v)
            for s in segments {
                let first = s.rows.lowerBound
                applyRotary(q + first * d, stride: d, segment: s, heads: c.heads, headDim: hd, dims: hd, theta: c.ropeTheta)
                applyRotary(k + first * kw, stride: kw, segment: s, heads: c.kvHeads, headDim: hd, dims: hd, theta: c.ropeTheta)
                s.store(k, stride: kw, offset: 0, count: kw, into: s.cache.keys[layer])
                s.store(v, stride: kw, offset: 0, count: kw, into: s.cache.values[layer])
                causalSelfAttention(q: q + first * d, segment: s, layer: layer, heads: c.heads, kvHeads: c.kvHeads,
                                    headDim: hd, ws: ws, into: o + first * d)
            }
            linear(o, m: rows, wo, into: h)
            add(h, into: x, count: rows * d)
            rmsNorm(x, rows: rows, dim: d, weight: norm2, eps: c.normEps, into: h)
            let g = ws.take(rows * c.intermediateSize), u = ws.take(rows * c.intermediateSize)
            linear(h, m: rows, gate, into: g)
            linear(h, m: rows, up, into: u)
            swiGLU(g, u, count: rows * c.intermediateSize)
            linear(g, m: rows, down, into: h)
            add(h, into: x, count: rows * d)
        }
    }
}
