using System.Globalization;
using System.Text.Json;
using EdgeLM.Models;

namespace EdgeLM.Formats.HuggingFace;

/// <summary>
/// The fields of a transformers config.json the engine needs, with transformers' per-model defaults
/// (Qwen2Config / LlamaConfig) for the optional ones.
/// </summary>
public sealed record HfConfig
{
    public static readonly string[] SupportedModelTypes = ["qwen2", "llama"];

    public required string ModelType { get; init; }
    public string[] Architectures { get; init; } = [];
    public string NameOrPath { get; init; } = "";
    public required int HiddenSize { get; init; }
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
            NumKeyValueHeads = OptInt("num_key_value_heads") ?? heads,
            HeadDim = OptInt("head_dim") ?? hidden / heads,
            // Qwen2Config defaults to 32768, LlamaConfig to 2048.
            MaxPositionEmbeddings = OptInt("max_position_embeddings") ?? (modelType == "qwen2" ? 32768 : 2048),
            RopeTheta = OptDouble("rope_theta") ?? 10000.0,
            RmsNormEps = OptDouble("rms_norm_eps") ?? 1e-6,
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
        IntermediateSize = IntermediateSize,
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
