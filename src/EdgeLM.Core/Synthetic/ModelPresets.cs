using EdgeLM.Models;

namespace EdgeLM.Synthetic;

/// <summary>The exact architectures of released models (from their config.json), for random-weight stand-ins.</summary>
public static class ModelPresets
{
    public static IReadOnlyList<string> Names { get; } = ["qwen2.5-0.5b", "qwen2.5-1.5b", "qwen2.5-7b", "qwen-1.8b", "qwen-7b", "qwen3-0.6b", "qwen3-1.7b", "tiny", "tiny-qwen", "tiny-qwen2", "tiny-qwen3"];

    public static ModelConfig Get(string name) => name.ToLowerInvariant() switch
    {
        // Qwen/Qwen2.5-0.5B config.json
        "qwen2.5-0.5b" => Qwen2("Qwen2.5-0.5B (synthetic)", vocab: 151936, hidden: 896, ff: 4864, layers: 24, heads: 14, kvHeads: 2, ctx: 32768, tied: true),
        // Qwen/Qwen2.5-1.5B config.json
        "qwen2.5-1.5b" => Qwen2("Qwen2.5-1.5B (synthetic)", vocab: 151936, hidden: 1536, ff: 8960, layers: 28, heads: 12, kvHeads: 2, ctx: 131072, tied: true),
        // Qwen/Qwen2.5-7B config.json
        "qwen2.5-7b" => Qwen2("Qwen2.5-7B (synthetic)", vocab: 152064, hidden: 3584, ff: 18944, layers: 28, heads: 28, kvHeads: 4, ctx: 131072, tied: false),
        // Qwen/Qwen-1_8B config.json: intermediate_size 11008 is twice the MLP width (w1 and w2 are 5504 wide).
        "qwen-1.8b" => Qwen1("Qwen-1.8B (synthetic)", hidden: 2048, mlp: 5504, layers: 24, heads: 16, ctx: 8192),
        // Qwen/Qwen-7B config.json: intermediate_size 22016, max_position_embeddings = seq_length = 8192.
        "qwen-7b" => Qwen1("Qwen-7B (synthetic)", hidden: 4096, mlp: 11008, layers: 32, heads: 32, ctx: 8192),
        // Qwen/Qwen3-0.6B config.json: head_dim 128 although hidden / heads is 64; 40960 positions, rope_theta 1e6, tied.
        "qwen3-0.6b" => Qwen3("Qwen3-0.6B (synthetic)", hidden: 1024, ff: 3072, layers: 28, heads: 16, kvHeads: 8),
        // Qwen/Qwen3-1.7B config.json.
        "qwen3-1.7b" => Qwen3("Qwen3-1.7B (synthetic)", hidden: 2048, ff: 6144, layers: 28, heads: 16, kvHeads: 8),
        // Small enough for unit tests and CI, with the real vocabulary so the real tokenizer fits.
        "tiny" => Qwen2("tiny Qwen2 (synthetic)", vocab: 151936, hidden: 64, ff: 192, layers: 2, heads: 4, kvHeads: 2, ctx: 4096, tied: false),
        // One per family, 256 wide so that Q4_K/Q5_K/Q6_K (256-element super-blocks) apply to every matrix: the
        // llama.cpp agreement tests (tests/EdgeLM.Tests/Reference) quantize these to every file type.
        "tiny-qwen" => Qwen1("tiny Qwen (synthetic)", hidden: 256, mlp: 512, layers: 2, heads: 4, ctx: 8192),
        "tiny-qwen2" => Qwen2("tiny Qwen2 256 (synthetic)", vocab: 151936, hidden: 256, ff: 512, layers: 2, heads: 4, kvHeads: 2, ctx: 32768, tied: true),
        "tiny-qwen3" => Qwen3("tiny Qwen3 (synthetic)", hidden: 256, ff: 512, layers: 2, heads: 4, kvHeads: 2),
        _ => throw new ArgumentException($"unknown preset '{name}' (known: {string.Join(", ", Names)})"),
    };

    private static ModelConfig Qwen1(string name, int hidden, int mlp, int layers, int heads, int ctx) => new()
    {
        Architecture = "qwen",
        Name = name,
        VocabSize = 151936,
        HiddenSize = hidden,
        IntermediateSize = mlp,
        LayerCount = layers,
        HeadCount = heads,
        KvHeadCount = heads,
        HeadDim = hidden / heads, // kv_channels 128
        ContextLength = ctx,
        RopeTheta = 10000.0,
        RmsNormEps = 1e-6,
        RopeStyle = RopeStyle.Neox,
        TiedEmbeddings = false,
    };

    private static ModelConfig Qwen3(string name, int hidden, int ff, int layers, int heads, int kvHeads) => new()
    {
        Architecture = "qwen3",
        Name = name,
        VocabSize = 151936,
        HiddenSize = hidden,
        IntermediateSize = ff,
        LayerCount = layers,
        HeadCount = heads,
        KvHeadCount = kvHeads,
        HeadDim = 128,
        ContextLength = 40960,
        RopeTheta = 1_000_000.0,
        RmsNormEps = 1e-6,
        RopeStyle = RopeStyle.Neox,
        TiedEmbeddings = true,
        BosTokenId = 151643,
        EosTokenId = 151645,
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
