using EdgeLM.Tensors;

namespace EdgeLM.Compression;

/// <summary>
/// The file types ("ftypes") of llama.cpp's llama-quantize that EdgeLM can produce, with llama.h's LLAMA_FTYPE
/// values, which GGUF files record in general.file_type. A file type is a recipe: a default tensor type plus
/// per-tensor exceptions (<see cref="QuantizationPlanner"/>).
/// </summary>
public enum LlamaFileType : uint
{
    AllF32 = 0,
    MostlyF16 = 1,
    MostlyQ4_0 = 2,
    MostlyQ4_1 = 3,
    MostlyQ8_0 = 7,
    MostlyQ5_0 = 8,
    MostlyQ5_1 = 9,
    MostlyQ2_K = 10,
    MostlyQ3_K_S = 11,
    MostlyQ3_K_M = 12,
    MostlyQ3_K_L = 13,
    MostlyQ4_K_S = 14,
    MostlyQ4_K_M = 15,
    MostlyQ5_K_S = 16,
    MostlyQ5_K_M = 17,
    MostlyQ6_K = 18,
    MostlyBF16 = 32,
}

public static class LlamaFileTypes
{
    private static readonly (string Name, LlamaFileType Type)[] Known =
    [
        ("f32", LlamaFileType.AllF32), ("f16", LlamaFileType.MostlyF16), ("bf16", LlamaFileType.MostlyBF16),
        ("q8_0", LlamaFileType.MostlyQ8_0), ("q4_0", LlamaFileType.MostlyQ4_0), ("q4_1", LlamaFileType.MostlyQ4_1),
        ("q5_0", LlamaFileType.MostlyQ5_0), ("q5_1", LlamaFileType.MostlyQ5_1), ("q2_k", LlamaFileType.MostlyQ2_K),
        ("q3_k_s", LlamaFileType.MostlyQ3_K_S), ("q3_k_m", LlamaFileType.MostlyQ3_K_M), ("q3_k_l", LlamaFileType.MostlyQ3_K_L),
        ("q4_k_s", LlamaFileType.MostlyQ4_K_S), ("q4_k_m", LlamaFileType.MostlyQ4_K_M),
        ("q5_k_s", LlamaFileType.MostlyQ5_K_S), ("q5_k_m", LlamaFileType.MostlyQ5_K_M), ("q6_k", LlamaFileType.MostlyQ6_K),
    ];

    // llama-quantize accepts the bare k-quant names as the _M recipes.
    private static readonly (string Name, LlamaFileType Type)[] Aliases =
    [
        ("q3_k", LlamaFileType.MostlyQ3_K_M), ("q4_k", LlamaFileType.MostlyQ4_K_M), ("q5_k", LlamaFileType.MostlyQ5_K_M),
    ];

    public static IEnumerable<string> Names => Known.Select(k => k.Name);

    /// <summary>Parses a name such as "q4_k_m" or "Q4_K_M" (also "q4-k-m"); throws ArgumentException listing the known names.</summary>
    public static LlamaFileType Parse(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        string key = name.Trim().Replace('-', '_').ToLowerInvariant();
        foreach (var (n, t) in Known.Concat(Aliases))
            if (n == key) return t;
        throw new ArgumentException($"unknown quantization type '{name}' (known: {string.Join(", ", Names)})");
    }

    public static string Name(LlamaFileType type)
    {
        foreach (var (n, t) in Known)
            if (t == type) return n;
        throw new ArgumentOutOfRangeException(nameof(type), type, "not a file type EdgeLM produces");
    }

    /// <summary>llama_ftype_get_default_type: the tensor type of every weight matrix no rule singles out.</summary>
    public static GgmlType DefaultTensorType(LlamaFileType type) => type switch
    {
        LlamaFileType.AllF32 => GgmlType.F32,
        LlamaFileType.MostlyF16 => GgmlType.F16,
        LlamaFileType.MostlyBF16 => GgmlType.BF16,
        LlamaFileType.MostlyQ4_0 => GgmlType.Q4_0,
        LlamaFileType.MostlyQ4_1 => GgmlType.Q4_1,
        LlamaFileType.MostlyQ5_0 => GgmlType.Q5_0,
        LlamaFileType.MostlyQ5_1 => GgmlType.Q5_1,
        LlamaFileType.MostlyQ8_0 => GgmlType.Q8_0,
        LlamaFileType.MostlyQ2_K => GgmlType.Q2_K,
        LlamaFileType.MostlyQ3_K_S or LlamaFileType.MostlyQ3_K_M or LlamaFileType.MostlyQ3_K_L => GgmlType.Q3_K,
        LlamaFileType.MostlyQ4_K_S or LlamaFileType.MostlyQ4_K_M => GgmlType.Q4_K,
        LlamaFileType.MostlyQ5_K_S or LlamaFileType.MostlyQ5_K_M => GgmlType.Q5_K,
        LlamaFileType.MostlyQ6_K => GgmlType.Q6_K,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "not a file type EdgeLM produces"),
    };

    /// <summary>ggml_is_quantized: block formats, as opposed to the float types F32/F16/BF16.</summary>
    public static bool IsQuantized(GgmlType type) => type is not (GgmlType.F32 or GgmlType.F16 or GgmlType.BF16
        or GgmlType.F64 or GgmlType.I8 or GgmlType.I16 or GgmlType.I32 or GgmlType.I64);

    /// <summary>
    /// Tensor types a GGUF tensor may be quantized to by name (ggml_type_name, case-insensitive: "q8_0", "q4_K", "f16").
    /// Q8_1 and Q8_K are activation formats, never stored, so they are rejected.
    /// </summary>
    public static GgmlType ParseTensorType(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        string key = name.Trim();
        // Enum parsing would also accept numbers ("8" is Q8_0); only names are meant.
        if (key.Length > 0 && char.IsAsciiLetter(key[0]) && GgmlTypeInfo.TryParse(key, out var t) && t is not (GgmlType.Q8_1 or GgmlType.Q8_K)
            && Tensors.Quantization.Quantize.IsSupported(t))
            return t;
        throw new ArgumentException($"unknown tensor type '{name}' (known: f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_k, q3_k, q4_k, q5_k, q6_k)");
    }
}
