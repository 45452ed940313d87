/// GPT-NeoX (RedPajama-INCITE-3B): per-head interleaved qkv, rotary on a
/// fraction of each head, biases everywhere but the untied output head
/// (spec/40 §5).
enum GPTNeoX {
    static func weights(_ c: LanguageModelConfig, prefix p: String) -> [WeightSpec] {
        let d = c.hiddenSize
        var w = [WeightSpec("\(p).gpt_neox.embed_in.weight", [c.vocabSize, d], quantizable: true)]
        for i in 0..<c.layers {
            let b = "\(p).gpt_neox.layers.\(i)"
            w.norm("\(b).input_layernorm", d)
            w.norm("\(b).post_attention_layernorm", d)
            w.linear("\(b).attention.query_key_value", out: 3 * d, in: d, bias: true)
            w.linear("\(b).attention.dense", out: d, in: d, bias: true)
            w.linear("\(b).mlp.dense_h_to_4h", out: c.intermediateSize, in: d, bias: true)
            w.linear("\(b).mlp.dense_4h_to_h", out: d, in: c.intermediateSize, bias: true)
        }
        w.norm("\(p).gpt_neox.final_layer_norm", d)
        if !c.tieWordEmbeddings { w.append(WeightSpec("\(p).embed_out.weight", [c.vocabSize, d], quantizable: true)) }
        return w
    }
}

extension GPTNeoX {
    /// Sequential: x += attn(LN_in(x)); x += MLP(LN_post(x)).
    /// Parallel:   x += attn(LN_in(x)) + MLP(LN_post(x)).
    struct Layer: DecoderLayer {
        let c: LanguageModelConfig
        let lnIn, lnPost: (weight: Matrix, bias: Matrix?)
        let qkv, dense, up, down: (weight: Weight, bias: Matrix?)

        init(_ model: WeightSource, config: LanguageModelConfig, prefix b: String) throws {
            c = config
            lnIn = try model.layer(b + ".input_layernorm")
            lnPost = try model.layer(b + ".post_attention_layernorm")
            qkv = try model.linearLayer(b + ".attention.query_key_value")
            dense = try model.linearLayer(b + ".attention.dense")
            up = try model.linearLayer(b + ".mlp.dense_h_to_4h")
            down = try model.linearLayer(b + ".mlp.dense_4h_to_h")
        }

        func callAsFunction(_ x: UnsafeMutablePointer<Float>, rows: Int, segments: [BatchSegment], layer: Int, ws: Workspace) {
            let d = c.hiddenSize, hd = c.headDim, eps = c.normEps
            let h = ws.take(rows * d), mixed = ws.take(rows * 3 * d), o = ws.take(rows * d)
            let q = ws.take(rows * d), k = ws.take(rows * d), v = ws.take(rows * d)
            layerNorm(x, rows: rows, dim: d, weight: lnIn.weight, bias: lnIn.bias, eps: eps, into: h)
            linear(h, m: rows, qkv.weight, bias: qkv.bias, into: mixed)
            // Per-head interleaved [heads, (q, k, v), headDim].
            for r in 0..<rows { for head in 0..<c.heads {
                let src = mixed + r * 3 * d + head * 3 * hd, dst = r * d + head * hd
                (q + dst).update(from: src, count: hd)
                (k + dst).update(from: src + hd, count: hd)
                (v + dst).update(from: src + 2 * hd, count: hd)
            } }
            let rot = Int(Float(hd) * c.rotaryPct)
            for s in segments {
                let first = s.rows.lowerBound * d
                applyRotary(q + first, stride: d, segment: s, heads: c.heads, headDim: hd, dims: rot, theta: c.ropeTheta)
                applyRotary(k + first, stride: d, segment: s, heads: c.heads, headDim: hd, dims: rot, theta: c.ropeTheta)
                s.store(k, stride: d, offset: 0, count: d, into: s.cache.keys[layer])
                s.store(v, stride: d, offset: 0, count: d, into: s.cache.values[layer])
                causalSelfAttention(q: q + first, segment: s, layer: layer, heads: c.heads, kvHeads: c.heads, headDim: hd,
                                    ws: ws, into: o + first)
            }
            let attnOut = ws.take(rows * d)
            linear(o, m: rows, dense.weight, bias: dense.bias, into: attnOut)
            if !c.parallelResidual { add(attnOut, into: x, count: rows * d) }
            layerNorm(x, rows: rows, dim: d, weight: lnPost.weight, bias: lnPost.bias, eps: eps, into: h)
            let f = ws.take(rows * c.intermediateSize)
            linear(h, m: rows, up.weight, bias: up.bias, into: f)
            gelu(f, count: rows * c.intermediateSize)
            linear(f, m: rows, down.weight, bias: down.bias, into: h)
            add(h, into: x, count: rows * d)
            if c.parallelResidual { add(attnOut, into: x, count: rows * d) }
        }
    }
}
