/// MosaicGPT (MPT-1B, mosaicml/examples v0.0.4): no biases anywhere,
/// QK-LayerNorm over the full width, ALiBi, tied output head (spec/40 §3).
enum MosaicGPT {
    static func weights(_ c: LanguageModelConfig, prefix p: String) -> [WeightSpec] {
        let d = c.hiddenSize
        var w = [WeightSpec("\(p).transformer.wte.weight", [c.vocabSize, d], quantizable: true)]
        for i in 0..<c.layers {
            let b = "\(p).transformer.blocks.\(i)"
            w.norm("\(b).ln_1", d, bias: false)
            w.linear("\(b).attn.Wqkv", out: 3 * d, in: d, bias: false)
            if c.qkLayerNorm {
                w.norm("\(b).attn.q_ln", d, bias: false)
                w.norm("\(b).attn.k_ln", d, bias: false)
            }
            w.linear("\(b).attn.out_proj", out: d, in: d, bias: false)
            w.norm("\(b).ln_2", d, bias: false)
            w.linear("\(b).mlp.mlp_up", out: c.intermediateSize, in: d, bias: false)
            w.linear("\(b).mlp.mlp_down", out: d, in: c.intermediateSize, bias: false)
        }
        w.norm("\(p).transformer.ln_f", d, bias: false)
        return w
    }
}
