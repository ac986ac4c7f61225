using System.Globalization;
using EdgeLM.Models;
using EdgeLM.Tensors;

namespace EdgeLM.Benchmarking;

/// <summary>What llama-bench prints about a model: its type ("Q4_K - Medium"), size, parameter count.</summary>
public sealed record BenchModelInfo
{
    public required string Path { get; init; }
    public required string Architecture { get; init; }
    /// <summary>The model's file type in llama.cpp's words ("F16", "Q4_K - Medium"), or the dominant tensor type.</summary>
    public required string TypeName { get; init; }
    /// <summary>Bytes of all tensors (llama-bench's model_size).</summary>
    public required long SizeBytes { get; init; }
    /// <summary>Bytes of the model file(s) on disk, metadata included.</summary>
    public required long FileBytes { get; init; }
    public required long ParameterCount { get; init; }

    /// <summary>"qwen2 0.5B F16": architecture, size class, type, like llama-bench's model column.</summary>
    public string Description => $"{Architecture} {SizeLabel(ParameterCount)} {TypeName}";

    public static BenchModelInfo From(LoadedModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        long size = 0, parameters = 0;
        foreach (var t in model.Tensors.Values)
        {
            size += t.ByteLength;
            parameters += t.ElementCount;
        }
        long? fileType = model.Metadata.GetInteger("general.file_type");
        return new BenchModelInfo
        {
            Path = model.SourcePath,
            Architecture = model.Config.Architecture,
            TypeName = (fileType is long ft ? FileTypeName(ft) : null) ?? DominantTypeName(model.Tensors.Values),
            SizeBytes = size,
            FileBytes = model.FileBytes,
            ParameterCount = parameters,
        };
    }

    /// <summary>llama.cpp's llama_model_ftype_name for a general.file_type value; null for values it would not name.</summary>
    public static string? FileTypeName(long fileType)
    {
        const long Guessed = 1024; // LLAMA_FTYPE_GUESSED: the converter inferred the type
        bool guessed = (fileType & Guessed) != 0;
        string? name = (fileType & ~Guessed) switch
        {
            0 => "all F32",
            1 => "F16",
            2 => "Q4_0",
            3 => "Q4_1",
            7 => "Q8_0",
            8 => "Q5_0",
            9 => "Q5_1",
            10 => "Q2_K - Medium",
            11 => "Q3_K - Small",
            12 => "Q3_K - Medium",
            13 => "Q3_K - Large",
            14 => "Q4_K - Small",
            15 => "Q4_K - Medium",
            16 => "Q5_K - Small",
            17 => "Q5_K - Medium",
            18 => "Q6_K",
            21 => "Q2_K - Small",
            32 => "BF16",
            _ => null,
        };
        return name != null && guessed ? name + " (guessed)" : name;
    }

    /// <summary>The type holding most bytes among the matrices (1-D norms and biases are F32 in every file type).</summary>
    public static string DominantTypeName(IEnumerable<Tensor> tensors)
    {
        var bytesByType = new Dictionary<GgmlType, long>();
        foreach (var t in tensors)
            if (t.Shape.Length >= 2)
                bytesByType[t.Type] = bytesByType.GetValueOrDefault(t.Type) + t.ByteLength;
        if (bytesByType.Count == 0) return "unknown";
        return GgmlTypeInfo.Name(bytesByType.OrderByDescending(kv => kv.Value).ThenBy(kv => kv.Key).First().Key);
    }

    /// <summary>"0.5B", "1.5B", "7.6B", "125M": parameters rounded to a readable size class.</summary>
    public static string SizeLabel(long parameters) => parameters switch
    {
        >= 100_000_000 => (parameters / 1e9).ToString("0.#", CultureInfo.InvariantCulture) + "B",
        >= 1_000_000 => (parameters / 1e6).ToString("0", CultureInfo.InvariantCulture) + "M",
        _ => (parameters / 1e3).ToString("0", CultureInfo.InvariantCulture) + "K",
    };
}
