/// LLaMA: RMSNorm, rotary (rotate-half), SwiGLU MLP, no biases, optional
/// grouped-query attention (spec/40 §6).
enum LLaMA {
    static func weights(_ c: LanguageModelConfig, prefix p: String) -> [WeightSpec] {
        let d = c.hiddenSize
        let kv = c.kvHeads * c.headDim
        var w = [WeightSpec("\(p).model.embed_tokens.weight", [c.vocabSize, d])]
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
        if !c.tieWordEmbeddings { w.append(WeightSpec("\(p).lm_head.weight", [c.vocabSize, d])) }
        return w
    }
}
