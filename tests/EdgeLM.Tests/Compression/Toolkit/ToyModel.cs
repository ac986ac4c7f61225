using EdgeLM.Formats.Gguf;
using EdgeLM.Inference;
using EdgeLM.Models;
using EdgeLM.Tensors;
using EdgeLM.Tensors.Quantization;
using EdgeLM.Tokenization;

namespace EdgeLM.Tests.Compression.Toolkit;

/// <summary>
/// A tiny Qwen2 whose every block's values depend only on (seed, original block number), so a model made of a subset
/// of the blocks is exactly what removing the others must give. Blocks in <c>NearIdentity</c> have their attention
/// output and down projections scaled by 1e-4: they barely change the residual stream. Carries a byte-level tokenizer.
/// </summary>
public sealed class ToyModel
{
    public const float NearIdentityScale = 1e-4f;

    public int Layers { get; init; } = 6;
    public int Hidden { get; init; } = 64;
    public int Ff { get; init; } = 128;
    public int Vocab { get; init; } = 320;
    public int Seed { get; init; } = 5;
    public GgmlType WeightType { get; init; } = GgmlType.F32;
    public IReadOnlySet<int> NearIdentity { get; init; } = new HashSet<int>();

    public ModelConfig Config(int layerCount) => new()
    {
        Architecture = "qwen2", Name = "toy", VocabSize = Vocab, HiddenSize = Hidden, IntermediateSize = Ff,
        LayerCount = layerCount, HeadCount = 4, KvHeadCount = 2, HeadDim = Hidden / 4, ContextLength = 256,
        RopeTheta = 10000, RmsNormEps = 1e-6, BosTokenId = 256, EosTokenId = 258,
    };

    /// <summary>Float values of every tensor of the model made of the given original blocks (renumbered 0..).</summary>
    public Dictionary<string, (long[] Shape, float[] Values)> Values(IReadOnlyList<int> blocks)
    {
        var result = new Dictionary<string, (long[], float[])>();
        int d = Hidden, q = Hidden, kv = Hidden / 2, ff = Ff;
        void Add(Random rng, string name, float scale, float offset, params long[] shape)
        {
            var v = new float[shape.Aggregate(1L, (a, b) => a * b)];
            for (int i = 0; i < v.Length; i++) v[i] = offset + scale * (float)(rng.NextDouble() * 2 - 1);
            result[name] = (shape, v);
        }
        var global = new Random(Seed);
        Add(global, "token_embd.weight", 1f, 0, d, Vocab);
        Add(global, "output_norm.weight", 0.2f, 1, d);
        Add(global, "output.weight", 4f / MathF.Sqrt(d), 0, d, Vocab);
        for (int i = 0; i < blocks.Count; i++)
        {
            int original = blocks[i];
            var rng = new Random(Seed * 1000 + original + 1);
            float outScale = NearIdentity.Contains(original) ? NearIdentityScale : 1f;
            string p = $"blk.{i}.";
            Add(rng, p + "attn_norm.weight", 0.2f, 1, d);
            Add(rng, p + "attn_q.weight", 2f / MathF.Sqrt(d), 0, d, q);
            Add(rng, p + "attn_k.weight", 2f / MathF.Sqrt(d), 0, d, kv);
            Add(rng, p + "attn_v.weight", 1f / MathF.Sqrt(d), 0, d, kv);
            Add(rng, p + "attn_q.bias", 0.5f, 0, q);
            Add(rng, p + "attn_k.bias", 0.5f, 0, kv);
            Add(rng, p + "attn_v.bias", 0.2f, 0, kv);
            Add(rng, p + "attn_output.weight", outScale / MathF.Sqrt(q), 0, q, d);
            Add(rng, p + "ffn_norm.weight", 0.2f, 1, d);
            Add(rng, p + "ffn_gate.weight", 2f / MathF.Sqrt(d), 0, d, ff);
            Add(rng, p + "ffn_up.weight", 1f / MathF.Sqrt(d), 0, d, ff);
            Add(rng, p + "ffn_down.weight", outScale / MathF.Sqrt(ff), 0, ff, d);
        }
        return result;
    }

    public string WriteGguf(string path, IReadOnlyList<int>? blocks = null)
    {
        blocks ??= Enumerable.Range(0, Layers).ToArray();
        var cfg = Config(blocks.Count);
        var w = new GgufWriter();
        var m = w.Metadata;
        m.Set("general.architecture", GgufValue.Of("qwen2"));
        m.Set("general.name", GgufValue.Of("toy"));
        m.Set("qwen2.block_count", GgufValue.Of((uint)cfg.LayerCount));
        m.Set("qwen2.context_length", GgufValue.Of((uint)cfg.ContextLength));
        m.Set("qwen2.embedding_length", GgufValue.Of((uint)cfg.HiddenSize));
        m.Set("qwen2.feed_forward_length", GgufValue.Of((uint)cfg.IntermediateSize));
        m.Set("qwen2.attention.head_count", GgufValue.Of((uint)cfg.HeadCount));
        m.Set("qwen2.attention.head_count_kv", GgufValue.Of((uint)cfg.KvHeadCount));
        m.Set("qwen2.rope.freq_base", GgufValue.Of((float)cfg.RopeTheta));
        m.Set("qwen2.attention.layer_norm_rms_epsilon", GgufValue.Of((float)cfg.RmsNormEps));
        BpeTokenizer.CreateByteLevel(Vocab).WriteToGgufMetadata(m, Vocab);
        foreach (var (name, (shape, values)) in Values(blocks))
        {
            var type = shape.Length == 1 ? GgmlType.F32 : WeightType;
            w.AddTensor(name, type, shape, Quantize.Rows(type, values, (int)shape[0]));
        }
        w.Write(path);
        return path;
    }

    /// <summary>Tokens sampled from the model itself at temperature 1: the text it predicts best, so any real change costs perplexity.</summary>
    public static int[] Sample(LoadedModel model, int count, int seed)
    {
        var rng = new Random(seed);
        using var session = new InferenceSession(model.Config, model.Weights, count, threads: 1);
        var tokens = new int[count];
        tokens[0] = rng.Next(256);
        for (int i = 1; i < count; i++)
        {
            var logits = session.Forward(tokens.AsSpan(i - 1, 1));
            float max = float.NegativeInfinity;
            foreach (float l in logits) max = Math.Max(max, l);
            double sum = 0;
            foreach (float l in logits) sum += Math.Exp(l - max);
            double u = rng.NextDouble() * sum, acc = 0;
            int pick = logits.Length - 1;
            for (int t = 0; t < logits.Length; t++)
            {
                acc += Math.Exp(logits[t] - max);
                if (acc >= u) { pick = t; break; }
            }
            tokens[i] = pick;
        }
        return tokens;
    }

    public static float[] Logits(ModelConfig config, ModelWeights weights, int[] tokens)
    {
        using var session = new InferenceSession(config, weights, tokens.Length, threads: 1);
        var logits = new float[tokens.Length * config.VocabSize];
        session.ForwardAll(tokens, logits);
        return logits;
    }

    public static float[] Logits(string path, int[] tokens)
    {
        using var model = ModelLoader.Load(path);
        return Logits(model.Config, model.Weights, tokens);
    }
}
