using EdgeLM.Inference;
using EdgeLM.Models;

namespace EdgeLM.Benchmarking;

/// <summary>
/// Bytes one decoded token reads from memory: every weight of every layer and the output head once (the weights are
/// far larger than the caches, so none is still cached from the previous token), one row of the token embedding,
/// and the KV cache up to its position.
/// </summary>
public static class DecodeTraffic
{
    public static long WeightBytesPerToken(ModelWeights weights)
    {
        ArgumentNullException.ThrowIfNull(weights);
        long bytes = weights.OutputNorm.ByteLength + weights.Output.ByteLength;
        // A tied head is the embedding itself: the token's row is read again with it, not in addition.
        if (!ReferenceEquals(weights.Output, weights.TokenEmbedding)) bytes += weights.TokenEmbedding.RowStride;
        foreach (var l in weights.Layers)
        {
            foreach (var t in new[] { l.AttnNorm, l.Wq, l.Wk, l.Wv, l.Wo, l.Bq, l.Bk, l.Bv, l.FfnNorm, l.Gate, l.Up, l.Down, l.QNorm, l.KNorm })
                if (t is not null) bytes += t.ByteLength;
        }
        return bytes;
    }

    /// <summary>KV cache bytes per token, averaged over a tg run of <paramref name="tokens"/> tokens from an empty
    /// context: token i reads the keys and values of positions 0..i.</summary>
    public static long KvBytesPerToken(ModelConfig config, KvCacheType type, int tokens)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (tokens <= 0) return 0;
        long perPosition = 2L * config.LayerCount * config.KvDim * (type == KvCacheType.F16 ? 2 : 4);
        return perPosition * (tokens + 1) / 2;
    }
}
