using EdgeLM.Models;

namespace EdgeLM.Synthetic;

/// <summary>The exact architectures of released models (from their config.json), for random-weight stand-ins.</summary>
public static class ModelPresets
{
    public static IReadOnlyList<string> Names { get; } = ["qwen2.5-0.5b", "qwen2.5-1.5b", "qwen2.5-7b", "tiny"];

    public static ModelConfig Get(string name) => name.ToLowerInvariant() switch
    {
        // Qwen/Qwen2.5-0.5B config.json
        "qwen2.5-0.5b" => Qwen2("Qwen2.5-0.5B (synthetic)", vocab: 151936, hidden: 896, ff: 4864, layers: 24, heads: 14, kvHeads: 2, ctx: 32768, tied: true),
        // Qwen/Qwen2.5-1.5B config.json
        "qwen2.5-1.5b" => Qwen2("Qwen2.5-1.5B (synthetic)", vocab: 151936, hidden: 1536, ff: 8960, layers: 28, heads: 12, kvHeads: 2, ctx: 131072, tied: true),
        // Qwen/Qwen2.5-7B config.json
        "qwen2.5-7b" => Qwen2("Qwen2.5-7B (synthetic)", vocab: 152064, hidden: 3584, ff: 18944, layers: 28, heads: 28, kvHeads: 4, ctx: 131072, tied: false),
        // Small enough for unit tests and CI, with the real vocabulary so the real tokenizer fits.
        "tiny" => Qwen2("tiny Qwen2 (synthetic)", vocab: 151936, hidden: 64, ff: 192, layers: 2, heads: 4, kvHeads: 2, ctx: 4096, tied: false),
        _ => throw new ArgumentException($"unknown preset '{name}' (known: {string.Join(", ", Names)})"),
    };

    private static ModelConfig Qwen2(string name, int vocab, int hidden, int ff, int layers, int heads, int kvHeads, int ctx, bool tied) => new()
    {
        Architecture = "qwen2",
        Name = name,
        VocabSize = vocab,
        HiddenSize = hidden,
        IntermediateSize = ff,
        LayerCount = layers,
        HeadCount = heads,
        KvHeadCount = kvHeads,
        HeadDim = hidden / heads,
        ContextLength = ctx,
        RopeTheta = 1_000_000.0,
        RmsNormEps = 1e-6,
        RopeStyle = RopeStyle.Neox,
        TiedEmbeddings = tied,
        BosTokenId = 151643,
        EosTokenId = 151643,
    };
}
