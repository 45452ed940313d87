/// MPT-7B (llm-foundry / transformers MptForCausalLM): ALiBi, fused Wqkv,
/// GELU MLP, tied output head (spec/40 §4).
enum MPT {
    static func weights(_ c: LanguageModelConfig, prefix p: String) -> [WeightSpec] {
        let d = c.hiddenSize
        var w = [WeightSpec("\(p).transformer.wte.weight", [c.vocabSize, d])]
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
