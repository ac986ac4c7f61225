using System.Buffers.Binary;
using System.Text.Json;
using EdgeLM.Tensors;

namespace EdgeLM.Formats.Safetensors;

/// <summary>One safetensors entry. TorchShape is in PyTorch order (outermost first); Offset is absolute in the file.</summary>
public sealed record SafetensorsTensorInfo(string Name, string DType, GgmlType Type, long[] TorchShape, long Offset, long ByteLength)
{
    /// <summary>The shape in ggml order (reversed; a scalar becomes [1]).</summary>
    public long[] GgmlShape => TorchShape.Length == 0 ? [1] : TorchShape.Reverse().ToArray();
}

/// <summary>
/// A .safetensors file mapped read-only: u64 little-endian header length, a JSON header, then the data section.
/// Tensors point into the mapping with ggml-order shapes. The header is validated completely before use.
/// </summary>
public sealed unsafe class SafetensorsFile : IDisposable
{
    /// <summary>Same bound as the reference implementation: headers are small, a huge length is hostile.</summary>
    public const long MaxHeaderBytes = 100_000_000;
    public const int MaxDims = 4;

    private readonly MappedFile _file;
    private readonly Dictionary<string, Tensor> _tensors;

    public string Path => _file.Path;
    public long FileLength => _file.Length;
    public long DataOffset { get; }
    public IReadOnlyList<SafetensorsTensorInfo> TensorInfos { get; }
    public IReadOnlyDictionary<string, Tensor> Tensors => _tensors;
    /// <summary>The "__metadata__" string map (empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    public static SafetensorsFile Open(string path)
    {
        var file = new MappedFile(path);
        try { return new SafetensorsFile(file); }
        catch { file.Dispose(); throw; }
    }

    public static bool TryMapDType(string dtype, out GgmlType type)
    {
        switch (dtype)
        {
            case "F32": type = GgmlType.F32; return true;
            case "F16": type = GgmlType.F16; return true;
            case "BF16": type = GgmlType.BF16; return true;
            default: type = default; return false;
        }
    }

    public static string DTypeName(GgmlType type) => type switch
    {
        GgmlType.F32 => "F32",
        GgmlType.F16 => "F16",
        GgmlType.BF16 => "BF16",
        _ => throw new ArgumentException($"safetensors cannot hold {type} tensors (F32, F16, BF16 only)"),
    };

    private SafetensorsFile(MappedFile file)
    {
        _file = file;
        string path = file.Path;
        InvalidDataException Bad(string message) => new($"{path}: {message}");

        if (file.Length < 8) throw Bad("file is too short to be safetensors");
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(new ReadOnlySpan<byte>(file.Base, 8));
        if (headerLength > MaxHeaderBytes) throw Bad($"header length {headerLength} exceeds the {MaxHeaderBytes}-byte limit");
        if (headerLength > (ulong)(file.Length - 8)) throw Bad($"header length {headerLength} is larger than the file");
        if (headerLength < 2) throw Bad("header is empty");
        DataOffset = 8 + (long)headerLength;
        long dataLength = file.Length - DataOffset;

        var infos = new List<SafetensorsTensorInfo>();
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        try
        {
            var headerBytes = new ReadOnlyMemory<byte>(new ReadOnlySpan<byte>(file.Base + 8, (int)headerLength).ToArray());
            using var doc = JsonDocument.Parse(headerBytes, new JsonDocumentOptions { MaxDepth = 8 });
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw Bad("header is not a JSON object");
            var names = new HashSet<string>(StringComparer.Ordinal);
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (!names.Add(prop.Name)) throw Bad($"duplicate header entry '{prop.Name}'");
                if (prop.Name == "__metadata__")
                {
                    if (prop.Value.ValueKind != JsonValueKind.Object) throw Bad("__metadata__ is not an object");
                    foreach (var m in prop.Value.EnumerateObject())
                    {
                        if (m.Value.ValueKind != JsonValueKind.String) throw Bad($"__metadata__ value '{m.Name}' is not a string");
                        metadata[m.Name] = m.Value.GetString()!;
                    }
                    continue;
                }
                infos.Add(ParseEntry(prop.Name, prop.Value, dataLength, Bad));
            }
        }
        catch (JsonException e)
        {
            throw Bad($"header is not valid JSON ({e.Message.Split('\n')[0]})");
        }

        TensorInfos = infos;
        Metadata = metadata;
        _tensors = new Dictionary<string, Tensor>(infos.Count, StringComparer.Ordinal);
        foreach (var ti in infos)
            _tensors.Add(ti.Name, new Tensor(ti.Name, ti.Type, ti.GgmlShape, file.Base + ti.Offset, ti.ByteLength));
    }

    private SafetensorsTensorInfo ParseEntry(string name, JsonElement entry, long dataLength, Func<string, InvalidDataException> bad)
    {
        if (entry.ValueKind != JsonValueKind.Object) throw bad($"entry '{name}' is not an object");
        if (!entry.TryGetProperty("dtype", out var dtypeEl) || dtypeEl.ValueKind != JsonValueKind.String)
            throw bad($"tensor '{name}' has no dtype");
        string dtype = dtypeEl.GetString()!;
        if (!TryMapDType(dtype, out var type)) throw bad($"tensor '{name}' has unsupported dtype {dtype} (F32, F16, BF16 supported)");

        if (!entry.TryGetProperty("shape", out var shapeEl) || shapeEl.ValueKind != JsonValueKind.Array)
            throw bad($"tensor '{name}' has no shape");
        int rank = shapeEl.GetArrayLength();
        if (rank > MaxDims) throw bad($"tensor '{name}' has {rank} dimensions (at most {MaxDims} supported)");
        var shape = new long[rank];
        int i = 0;
        long elements = 1;
        foreach (var d in shapeEl.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long dim) || dim <= 0)
                throw bad($"tensor '{name}' has invalid dimension {d.GetRawText()}");
            if (elements > long.MaxValue / 8 / dim) throw bad($"tensor '{name}' shape is too large");
            elements *= dim;
            shape[i++] = dim;
        }

        if (!entry.TryGetProperty("data_offsets", out var offEl) || offEl.ValueKind != JsonValueKind.Array || offEl.GetArrayLength() != 2)
            throw bad($"tensor '{name}' needs data_offsets [begin, end]");
        long begin = ReadOffset(offEl[0]), end = ReadOffset(offEl[1]);
        long ReadOffset(JsonElement e) =>
            e.ValueKind == JsonValueKind.Number && e.TryGetInt64(out long v) && v >= 0 ? v : throw bad($"tensor '{name}' has an invalid data offset {e.GetRawText()}");
        if (begin > end) throw bad($"tensor '{name}' data_offsets [{begin}, {end}] end before they begin");
        if (end > dataLength) throw bad($"tensor '{name}' data_offsets [{begin}, {end}] are outside the {dataLength}-byte data section");
        long bytes = elements * GgmlTypeInfo.BlockBytes(type);
        if (end - begin != bytes)
            throw bad($"tensor '{name}' occupies {end - begin} bytes, but {dtype} [{string.Join(", ", shape)}] needs {bytes}");
        return new SafetensorsTensorInfo(name, dtype, type, shape, DataOffset + begin, bytes);
    }

    public Tensor GetTensor(string name) =>
        _tensors.TryGetValue(name, out var t) ? t : throw new KeyNotFoundException($"{Path}: no tensor named '{name}'");

    public void Dispose() => _file.Dispose();
}
