/// The model on an OpenCL device (docs/opencl.md): every weight uploaded
/// once at load; a forward step uploads only the new token ids (and a few
/// per-row integers) and downloads only the logits that are asked for. The
/// KV caches and the media keys/values of each sequence stay on the device.
///
/// One device queue serves all of a model's sessions: steps are serialised
/// by `lock` (the activation scratch is shared).
final class DeviceFlamingo {
    let rt: OpenCLRuntime
    let config: ModelConfig
    let vision: DeviceVisionEncoder           // the CLIP ViT or the NFNet
    let resampler: DevicePerceiverResampler
    let lm: DeviceLanguageModel
    let crossAttention: [DeviceCrossAttention?]
    private let scratch: DeviceScratch
    private let lock = CLLock()

    init(_ model: Model, runtime rt: OpenCLRuntime) throws {
        self.rt = rt
        let c = model.config, w = DeviceWeights(rt: rt, model: model)
        config = c
        switch c.vision {
        case .clipViT(let vc): vision = try DeviceVisionTransformer(w, config: vc, prefix: "vision_encoder")
        case .nfnet(let nc): vision = try DeviceNFNet(w, config: nc, prefix: "vision_encoder")
        }
        resampler = try DevicePerceiverResampler(w, config: c.resampler, prefix: "perceiver")
        lm = try DeviceLanguageModel(w, config: c.languageModel, prefix: "lang_encoder")
        let blocks = Set(c.crossAttentionLayers)
        crossAttention = try (0..<c.languageModel.layers).map { i in
            guard blocks.contains(i) else { return nil }
            return try DeviceCrossAttention(w, config: c.crossAttention,
                                            prefix: "lang_encoder.\(c.languageModel.layersPath).\(i).gated_cross_attn_layer",
                                            latentsPerMedia: c.resampler.numLatents)
        }
        scratch = DeviceScratch(rt)
        try rt.finish()  // uploads done (and out-of-memory reported) before the model is handed out
    }

    /// Feature tokens [frames · numPatches, width] of preprocessed frames
    /// through the device vision encoder (ViT or NFNet).
    func features(_ frames: [UnsafePointer<Float>]) throws -> CLView? {
        let v = config.vision.numPatches, w = config.vision.width
        return try lock.locked {
            let out = CLView(try rt.buffer(bytes: frames.count * v * w * 4, zeroed: false), stride: w)
            for (f, pixels) in frames.enumerated() { try vision(pixels, into: out.rows(from: f * v), scratch: scratch) }
            return out
        }
    }

    /// Visual tokens [latents, dim] of one media item from its resampler
    /// input (time embeddings added; on the host).
    func resample(_ x: Buffer, tokens m: Int) throws -> Buffer {
        let c = config.resampler
        return try lock.locked {
            let media = try rt.buffer(bytes: x.count * 4, zeroed: false)
            try rt.upload(UnsafeRawBufferPointer(start: x.p, count: x.count * 4), to: media)
            let z = try scratch.take("rs.z", c.numLatents * c.dim)
            try resampler(CLView(media), tokens: m, into: z, scratch: scratch)
            return Buffer(try rt.download(z.buffer, count: c.numLatents * c.dim))
        }
    }

    func makeSequence(capacity: Int) throws -> DeviceSequence {
        let lmc = config.languageModel
        return try DeviceSequence(rt, layers: lmc.layers, width: lmc.kvHeads * lmc.headDim, capacity: capacity)
    }

    /// Uploads visual tokens [tokens, dim] and computes each block's media
    /// keys/values for `state` (nil or 0 tokens: no media).
    func setMedia(_ state: DeviceSequence, _ visual: UnsafePointer<Float>?, tokens: Int) throws {
        try lock.locked {
            guard let visual, tokens > 0 else {
                state.mediaKV = crossAttention.map { _ in nil }
                state.mediaTokens = 0
                return
            }
            let media = try rt.buffer(bytes: tokens * config.resampler.dim * 4, zeroed: false)
            try rt.upload(UnsafeRawBufferPointer(start: visual, count: tokens * config.resampler.dim * 4), to: media)
            state.mediaKV = try crossAttention.map { try $0?.mediaKV(CLView(media), tokens: tokens) }
            state.mediaTokens = tokens
        }
    }

    /// One batched forward step: `tokens` of each segment (in row order),
    /// their text_time; returns the logits of the `wanted` rows of each
    /// segment, [Σ wanted, vocab], on the host.
    func forward(tokens: [Int], segments: [DeviceSegment], textTimes: [[Int]], wanted: [Range<Int>]) throws -> Buffer {
        let lmc = config.languageModel, d = lmc.hiddenSize, rows = tokens.count
        return try lock.locked {
            let x = try scratch.take("x", rows * d)
            try rt.embedding(tokens: tokens, table: lm.embedding, into: x)
            let selections = try zip(segments, textTimes).map { seg, t in
                CLView(try rt.temporaryBuffer(DeviceCrossAttention.selections(
                    textTime: t, mediaTokens: seg.state.mediaTokens, latentsPerMedia: config.resampler.numLatents)))
            }
            for (i, layer) in lm.layers.enumerated() {
                if let block = crossAttention[i] {
                    let parts = zip(segments, selections).map {
                        DeviceCrossAttention.Rows(rows: $0.rows, selections: $1, media: $0.state.mediaKV[i],
                                                  mediaTokens: $0.state.mediaTokens)
                    }
                    try block(x, rows: rows, parts: parts, scratch: scratch)
                }
                try layer(x, rows: rows, segments: segments, layer: i, scratch: scratch)
            }
            let count = wanted.reduce(0) { $0 + $1.count }
            let h = CLView(try scratch.take("final", count * d).buffer, stride: d)
            var o = 0
            let xs = CLView(x.buffer, stride: d)
            for r in wanted {
                try rt.copyRows(xs.rows(from: r.lowerBound), into: h.rows(from: o), rows: r.count, cols: d)
                o += r.count
            }
            let logits = try scratch.take("logits", count * lmc.vocabSize)
            try lm.logits(h, rows: count, into: logits)
            return Buffer(try rt.download(logits.buffer, count: count * lmc.vocabSize))
        }
    }
}
