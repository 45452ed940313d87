/// MPT-7B (llm-foundry / transformers MptForCausalLM): ALiBi, fused Wqkv,
/// GELU MLP, tied output head (spec/40 §4).
enum MPT {
    static func weights(_ c: LanguageModelConfig, prefix p: String) -> [WeightSpec] {
        let d = c.hiddenSize
        var w = [WeightSpec("\(p).transformer.wte.weight", [c.vocabSize, d], quantizable: true)]
        for i in 0..<c.layers {
            let b = "\(p).transformer.blocks.\(i)"
            w.norm("\(b).norm_1", d, bias: c.normBias)
            w.linear("\(b).attn.Wqkv", out: 3 * d, in: d, bias: false)
            if c.qkLayerNorm {
                w.norm("\(b).attn.q_ln", d, bias: c.normBias)
                w.norm("\(b).attn.k_ln", d, bias: c.normBias)
            }
            w.linear("\(b).attn.out_proj", out: d, in: d, bias: false)
            w.norm("\(b).norm_2", d, bias: c.normBias)
            w.linear("\(b).ffn.up_proj", out: c.intermediateSize, in: d, bias: false)
            w.linear("\(b).ffn.down_proj", out: d, in: c.intermediateSize, bias: false)
        }
        w.norm("\(p).transformer.norm_f", d, bias: c.normBias)
        return w
    }
}

extension MPT {
    /// ALiBi slopes. MPT-7B (llm-foundry, transformers): 2^(−k·max/H') for
    /// H' = next power of two, odd-then-even interleave when H' ≠ H.
    /// MosaicGPT (MPT-1B): 2^(−h·max/H) with no adjustment (spec/40 §2).
    static func alibiSlopes(heads: Int, biasMax: Float, family: LanguageModelConfig.Family) -> [Float] {
        if family == .mosaicGPT {
            return (1...heads).map { powf(2, -Float($0) * biasMax / Float(heads)) }
        }
        var p2 = 1
        while p2 < heads { p2 *= 2 }
        let all = (1...p2).map { powf(2, -Float($0) * biasMax / Float(p2)) }
        if p2 == heads { return all }
        let odd = stride(from: 1, to: p2, by: 2).map { all[$0] }, even = stride(from: 0, to: p2, by: 2).map { all[$0] }
        return Array((odd + even).prefix(heads))
    }

    /// One block, for both MPT-7B and MosaicGPT (which differ only in names,
    /// slopes and QK-LayerNorm): x += attn(LN₁(x)); x += FFN(LN₂(x)).
    struct Layer: DecoderLayer {
        let c: LanguageModelConfig
        let norm1, norm2: (weight: Matrix, bias: Matrix?)
        let qLN, kLN: (weight: Matrix, bias: Matrix?)?
        let wqkv, outProj, up, down: Weight
        let slopes: [Float]

        init(_ model: WeightSource, config: LanguageModelConfig, prefix b: String) throws {
            c = config
            let mosaic = config.family == .mosaicGPT
            norm1 = try model.layer(b + (mosaic ? ".ln_1" : ".norm_1"))
            norm2 = try model.layer(b + (mosaic ? ".ln_2" : ".norm_2"))
            qLN = config.qkLayerNorm ? try model.layer(b + ".attn.q_ln") : nil
            kLN = config.qkLayerNorm ? try model.layer(b + ".attn.k_ln") : nil
            wqkv = try model.weight(b + ".attn.Wqkv.weight")
            outProj = try model.weight(b + ".attn.out_proj.weight")
            up = try model.weight(b + (mosaic ? ".mlp.mlp_up.weight" : ".ffn.up_proj.weight"))
            down = try model.weight(b + (mosaic ? ".mlp.mlp_down.weight" : ".ffn.down_proj.weight"))
            slopes = alibiSlopes(heads: config.heads, biasMax: config.alibiBiasMax, family: config.family)
        }

        func callAsFunction(_ x: UnsafeMutablePointer<Float>, rows: Int, segments: [BatchSegment], layer: Int, ws: Workspace) {
            let d = c.hiddenSize, eps = c.normEps
            let h = ws.take(rows * d), qkv = ws.take(rows * 3 * d), o = ws.take(rows * d)
            layerNorm(x, rows: rows, dim: d, weight: norm1.weight, bias: norm1.bias, eps: eps, into: h)
            linear(h, m: rows, wqkv, into: qkv)
            // [Q_all | K_all | V_all]; QK-LayerNorm over the full width.
            if let qLN, let kLN {
                for r in 0..<rows {
                    layerNorm(qkv + r * 3 * d, rows: 1, dim: d, weight: qLN.weight, bias: qLN.bias, eps: eps, into: qkv + r * 3 * d)
                    layerNorm(qkv + r * 3 * d + d, rows: 1, dim: d, weight: kLN.weight, bias: kLN.bias, eps: eps, into: qkv + r * 3 * d + d)
                }
            }
            for s in segments {
                s.store(qkv, stride: 3 * d, offset: d, count: d, into: s.cache.keys[layer])
                s.store(qkv, stride: 3 * d, offset: 2 * d, count: d, into: s.cache.values[layer])
                let q = ws.take(s.rows.count * d)
                for (i, r) in s.rows.enumerated() { (q + i * d).update(from: qkv + r * 3 * d, count: d) }
                causalSelfAttention(q: q, segment: s, layer: layer, heads: c.heads, kvHeads: c.heads, headDim: c.headDim,
                                    alibiSlopes: slopes, ws: ws, into: o + s.rows.lowerBound * d)
            }
            linear(o, m: rows, outProj, into: h)
            add(h, into: x, count: rows * d)
            layerNorm(x, rows: rows, dim: d, weight: norm2.weight, bias: norm2.bias, eps: eps, into: h)
            let f = ws.take(rows * c.intermediateSize)
            linear(h, m: rows, up, into: f)
            gelu(f, count: rows * c.intermediateSize)
            linear(f, m: rows, down, into: h)
            add(h, into: x, count: rows * d)
        }
    }
}

import Glibc
