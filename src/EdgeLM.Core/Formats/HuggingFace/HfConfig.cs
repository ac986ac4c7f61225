using System.Globalization;
using System.Text.Json;
using EdgeLM.Models;

namespace EdgeLM.Formats.HuggingFace;

/// <summary>
/// The fields of a transformers config.json the engine needs, with transformers' per-model defaults
/// (Qwen2Config / Qwen3Config / LlamaConfig, and the remote-code QWenConfig of Qwen v1) for the optional ones.
/// </summary>
/// <remarks>
/// Qwen v1 ("qwen") names its fields differently: kv_channels is the head size, layer_norm_epsilon the RMSNorm
/// epsilon, rotary_emb_base the RoPE base, and intermediate_size is TWICE the MLP width (w1 and w2 are each half of
/// it). They are read into the common properties here; <see cref="IntermediateSize"/> keeps the file's value.
/// use_dynamic_ntk and use_logn_attn (long-context tricks of QWen's own modeling code) are ignored, as llama.cpp does:
/// within the trained sequence length they change nothing.
/// </remarks>
public sealed record HfConfig
{
    public static readonly string[] SupportedModelTypes = ["qwen2", "llama", "qwen", "qwen3"];

    public required string ModelType { get; init; }
    public string[] Architectures { get; init; } = [];
    public string NameOrPath { get; init; } = "";
    public required int HiddenSize { get; init; }
    /// <summary>As in config.json: for Qwen v1 twice the MLP width.</summary>
    public required int IntermediateSize { get; init; }
    public required int NumHiddenLayers { get; init; }
    public required int NumAttentionHeads { get; init; }
    public required int NumKeyValueHeads { get; init; }
    public required int HeadDim { get; init; }
    public required int MaxPositionEmbeddings { get; init; }
    public double RopeTheta { get; init; } = 10000.0;
    public double RmsNormEps { get; init; } = 1e-6;
    public required int VocabSize { get; init; }
    public bool TieWordEmbeddings { get; init; }
    public int? BosTokenId { get; init; }
    public int? EosTokenId { get; init; }
    public string? TorchDtype { get; init; }

    public static HfConfig Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"config.json not found: {path}", path);
        var bytes = File.ReadAllBytes(path);
        try
        {
            using var doc = JsonDocument.Parse(bytes, new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
            return Parse(doc.RootElement, path);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid JSON ({e.Message.Split('\n')[0]})");
        }
    }

    public static HfConfig Parse(JsonElement root, string source)
    {
        InvalidDataException Bad(string m) => new($"{source}: {m}");
        if (root.ValueKind != JsonValueKind.Object) throw Bad("config is not a JSON object");

        string modelType = OptString("model_type") ?? throw Bad("missing 'model_type'");
        if (!SupportedModelTypes.Contains(modelType))
            throw Bad($"unsupported model_type '{modelType}' (supported: {string.Join(", ", SupportedModelTypes)})");

        int hidden = ReqInt("hidden_size");
        int heads = ReqInt("num_attention_heads");
        if (heads <= 0) throw Bad($"num_attention_heads {heads} must be positive");
        // Newer transformers write "dtype"; older ones "torch_dtype".
        string? dtype = OptString("torch_dtype") ?? OptString("dtype");
        bool qwen1 = modelType == "qwen";
        if (qwen1)
        {
            if (OptDouble("rotary_pct") is double pct && pct != 1.0) throw Bad($"rotary_pct {pct} is not supported (only full-width RoPE)");
            if (OptBool("no_bias") == false) throw Bad("no_bias false is not supported (released Qwen checkpoints have no_bias true)");
            int raw = ReqInt("intermediate_size");
            if (raw <= 0 || raw % 2 != 0) throw Bad($"intermediate_size {raw} should be positive and even (Qwen's MLP is half of it wide)");
        }

        return new HfConfig
        {
            ModelType = modelType,
            Architectures = root.TryGetProperty("architectures", out var a) && a.ValueKind == JsonValueKind.Array
                ? a.EnumerateArray().Where(x => x.ValueKind == JsonValueKind.String).Select(x => x.GetString()!).ToArray()
                : [],
            NameOrPath = OptString("_name_or_path") ?? "",
            HiddenSize = hidden,
            IntermediateSize = ReqInt("intermediate_size"),
            NumHiddenLayers = ReqInt("num_hidden_layers"),
            NumAttentionHeads = heads,
            NumKeyValueHeads = qwen1 ? heads : OptInt("num_key_value_heads") ?? heads,
            // Qwen3Config defaults head_dim to 128 rather than deriving it.
            HeadDim = qwen1 ? OptInt("kv_channels") ?? hidden / heads : OptInt("head_dim") ?? (modelType == "qwen3" ? 128 : hidden / heads),
            // Qwen2Config and Qwen3Config default to 32768, LlamaConfig to 2048, QWenConfig to 8192.
            MaxPositionEmbeddings = qwen1
                ? OptInt("max_position_embeddings") ?? OptInt("seq_length") ?? 8192
                : OptInt("max_position_embeddings") ?? (modelType is "qwen2" or "qwen3" ? 32768 : 2048),
            RopeTheta = (qwen1 ? OptDouble("rotary_emb_base") : OptDouble("rope_theta")) ?? 10000.0,
            RmsNormEps = (qwen1 ? OptDouble("layer_norm_epsilon") : OptDouble("rms_norm_eps")) ?? 1e-6,
            VocabSize = ReqInt("vocab_size"),
            // Both Qwen2Config and LlamaConfig default to untied (PretrainedConfig's own default is True).
            TieWordEmbeddings = OptBool("tie_word_embeddings") ?? false,
            BosTokenId = TokenId("bos_token_id"),
            EosTokenId = TokenId("eos_token_id"),
            TorchDtype = dtype,
        };

        JsonElement? Get(string name) =>
            root.TryGetProperty(name, out var e) && e.ValueKind != JsonValueKind.Null ? e : null;

        string? OptString(string name) => Get(name) is { } e
            ? (e.ValueKind == JsonValueKind.String ? e.GetString() : throw Bad($"'{name}' should be a string"))
            : null;

        int? OptInt(string name)
        {
            if (Get(name) is not { } e) return null;
            if (e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out int v)) return v;
            throw Bad($"'{name}' should be an integer, found {e.GetRawText()}");
        }

        int ReqInt(string name) => OptInt(name) ?? throw Bad($"missing '{name}'");

        double? OptDouble(string name)
        {
            if (Get(name) is not { } e) return null;
            if (e.ValueKind == JsonValueKind.Number && e.TryGetDouble(out double v)) return v;
            throw Bad($"'{name}' should be a number, found {e.GetRawText()}");
        }

        bool? OptBool(string name) => Get(name) is { } e
            ? e.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw Bad($"'{name}' should be true or false"),
            }
            : null;

        // eos_token_id may be a list (generation stops on any); the first is the canonical one.
        int? TokenId(string name)
        {
            if (Get(name) is not { } e) return null;
            if (e.ValueKind == JsonValueKind.Array)
            {
                foreach (var item in e.EnumerateArray())
                    return item.ValueKind == JsonValueKind.Number && item.TryGetInt32(out int first) ? first : throw Bad($"'{name}' has a non-integer entry");
                return null;
            }
            return OptInt(name);
        }
    }

    /// <summary>
    /// The engine's config. Hugging Face checkpoints keep q/k in rotate_half layout, so RoPE is NeoX-style for
    /// every model type (llama.cpp's converter permutes Llama q/k into interleaved order instead).
    /// </summary>
    public ModelConfig ToModelConfig(string name) => new()
    {
        Architecture = ModelType,
        Name = name,
        VocabSize = VocabSize,
        HiddenSize = HiddenSize,
        IntermediateSize = ModelType == "qwen" ? IntermediateSize / 2 : IntermediateSize,
        LayerCount = NumHiddenLayers,
        HeadCount = NumAttentionHeads,
        KvHeadCount = NumKeyValueHeads,
        HeadDim = HeadDim,
        ContextLength = MaxPositionEmbeddings,
        RopeTheta = RopeTheta,
        RmsNormEps = RmsNormEps,
        RopeStyle = RopeStyle.Neox,
        TiedEmbeddings = TieWordEmbeddings,
        BosTokenId = BosTokenId,
        EosTokenId = EosTokenId,
    };

    internal static string FormatFloat(double v) => v.ToString("R", CultureInfo.InvariantCulture);
}
