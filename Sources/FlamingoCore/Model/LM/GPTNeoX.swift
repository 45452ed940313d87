/// GPT-NeoX (RedPajama-INCITE-3B): per-head interleaved qkv, rotary on a
/// fraction of each head, biases everywhere but the untied output head
/// (spec/40 §5).
enum GPTNeoX {
    static func weights(_ c: LanguageModelConfig, prefix p: String) -> [WeightSpec] {
        let d = c.hiddenSize
        var w = [WeightSpec("\(p).gpt_neox.embed_in.weight", [c.vocabSize, d])]
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
        if !c.tieWordEmbeddings { w.append(WeightSpec("\(p).embed_out.weight", [c.vocabSize, d])) }
        return w
    }
}
