using System.Buffers.Binary;
using System.Text.Json;
using EdgeLM.Formats.Gguf;
using EdgeLM.Tensors;

namespace EdgeLM.Formats.Safetensors;

/// <summary>
/// Writes one .safetensors file atomically. Tensors are stored back to back in the order added (the reference
/// reader requires the data section to be covered exactly); the JSON header is padded with spaces to a
/// multiple of 8 bytes as the reference writer does, so the data stays 8-byte aligned.
/// </summary>
public sealed class SafetensorsWriter
{
    private readonly List<PendingTensor> _tensors = new();
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);

    internal sealed record PendingTensor(string Name, GgmlType Type, long[] TorchShape, long ByteLength, Action<Stream> WriteData);

    /// <summary>The "__metadata__" map; "format": "pt" is what transformers expects.</summary>
    public Dictionary<string, string> Metadata { get; } = new(StringComparer.Ordinal) { ["format"] = "pt" };

    public int Count => _tensors.Count;
    public long TotalBytes => _tensors.Sum(t => t.ByteLength);

    /// <summary>Adds a tensor; <paramref name="torchShape"/> is in PyTorch order (outermost first).</summary>
    public void Add(string name, GgmlType type, long[] torchShape, Action<Stream> writeData)
    {
        var t = Create(name, type, torchShape, writeData);
        if (!_names.Add(name)) throw new ArgumentException($"duplicate tensor name '{name}'");
        _tensors.Add(t);
    }

    public void Add(string name, GgmlType type, long[] torchShape, ReadOnlyMemory<byte> data) =>
        Add(name, type, torchShape, s => s.Write(data.Span));

    internal void Add(PendingTensor t)
    {
        if (!_names.Add(t.Name)) throw new ArgumentException($"duplicate tensor name '{t.Name}'");
        _tensors.Add(t);
    }

    internal static PendingTensor Create(string name, GgmlType type, long[] torchShape, Action<Stream> writeData)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(torchShape);
        ArgumentNullException.ThrowIfNull(writeData);
        if (name == "__metadata__") throw new ArgumentException("'__metadata__' is reserved");
        SafetensorsFile.DTypeName(type);
        if (torchShape.Length > SafetensorsFile.MaxDims)
            throw new ArgumentException($"tensor '{name}' has {torchShape.Length} dimensions (at most {SafetensorsFile.MaxDims})");
        long elements = 1;
        foreach (long d in torchShape)
        {
            if (d <= 0) throw new ArgumentException($"tensor '{name}' has invalid dimension {d}");
            elements = checked(elements * d);
        }
        return new PendingTensor(name, type, (long[])torchShape.Clone(), checked(elements * GgmlTypeInfo.BlockBytes(type)), writeData);
    }

    public void Write(string path) => AtomicFile.Write(path, WriteTo);

    private void WriteTo(Stream output)
    {
        byte[] header = BuildHeader();
        Span<byte> len = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)header.Length);
        output.Write(len);
        output.Write(header);
        foreach (var t in _tensors)
        {
            var exact = new ExactLengthStream(output, t.ByteLength, t.Name);
            t.WriteData(exact);
            exact.CheckComplete();
        }
    }

    private byte[] BuildHeader()
    {
        var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteStartObject("__metadata__");
            foreach (var kv in Metadata) json.WriteString(kv.Key, kv.Value);
            json.WriteEndObject();
            long offset = 0;
            foreach (var t in _tensors)
            {
                json.WriteStartObject(t.Name);
                json.WriteString("dtype", SafetensorsFile.DTypeName(t.Type));
                json.WriteStartArray("shape");
                foreach (long d in t.TorchShape) json.WriteNumberValue(d);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + t.ByteLength);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += t.ByteLength;
            }
            json.WriteEndObject();
        }
        while (buffer.Length % 8 != 0) buffer.WriteByte((byte)' ');
        return buffer.ToArray();
    }
}

/// <summary>
/// Splits tensors over shards like transformers' save_pretrained: greedily in the order added, a new shard when
/// the next tensor would exceed <see cref="MaxShardBytes"/> (an oversized tensor gets a shard of its own).
/// Several shards are named model-0000N-of-0000M.safetensors with model.safetensors.index.json beside them;
/// a single shard is written as model.safetensors without an index, as transformers does.
/// </summary>
public sealed class ShardedSafetensorsWriter(long maxShardBytes)
{
    public const string SingleFileName = "model.safetensors";
    public const string IndexFileName = "model.safetensors.index.json";

    private readonly List<SafetensorsWriter.PendingTensor> _tensors = new();
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);

    public long MaxShardBytes { get; } = maxShardBytes > 0 ? maxShardBytes : throw new ArgumentOutOfRangeException(nameof(maxShardBytes));

    public void Add(string name, GgmlType type, long[] torchShape, Action<Stream> writeData)
    {
        var t = SafetensorsWriter.Create(name, type, torchShape, writeData);
        if (!_names.Add(name)) throw new ArgumentException($"duplicate tensor name '{name}'");
        _tensors.Add(t);
    }

    public void Add(string name, GgmlType type, long[] torchShape, ReadOnlyMemory<byte> data) =>
        Add(name, type, torchShape, s => s.Write(data.Span));

    /// <summary>Writes the shards (and index) into <paramref name="dir"/>; returns the file names written.</summary>
    public IReadOnlyList<string> Write(string dir)
    {
        Directory.CreateDirectory(dir);
        var shards = new List<List<SafetensorsWriter.PendingTensor>>();
        long current = 0;
        foreach (var t in _tensors)
        {
            if (shards.Count == 0 || (current + t.ByteLength > MaxShardBytes && current > 0))
            {
                shards.Add(new());
                current = 0;
            }
            shards[^1].Add(t);
            current += t.ByteLength;
        }
        if (shards.Count <= 1)
        {
            var single = new SafetensorsWriter();
            foreach (var t in shards.SelectMany(s => s)) single.Add(t);
            single.Write(System.IO.Path.Combine(dir, SingleFileName));
            return [SingleFileName];
        }

        var names = new List<string>();
        var weightMap = new List<(string Tensor, string File)>();
        for (int i = 0; i < shards.Count; i++)
        {
            string file = $"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors";
            var writer = new SafetensorsWriter();
            foreach (var t in shards[i]) { writer.Add(t); weightMap.Add((t.Name, file)); }
            writer.Write(System.IO.Path.Combine(dir, file));
            names.Add(file);
        }

        // The index goes last: a reader that finds it can rely on every shard being complete.
        AtomicFile.Write(System.IO.Path.Combine(dir, IndexFileName), fs =>
        {
            using var json = new Utf8JsonWriter(fs, new JsonWriterOptions { Indented = true });
            json.WriteStartObject();
            json.WriteStartObject("metadata");
            json.WriteNumber("total_size", _tensors.Sum(t => t.ByteLength));
            json.WriteEndObject();
            json.WriteStartObject("weight_map");
            foreach (var (tensor, file) in weightMap.OrderBy(w => w.Tensor, StringComparer.Ordinal)) json.WriteString(tensor, file);
            json.WriteEndObject();
            json.WriteEndObject();
        });
        names.Add(IndexFileName);
        return names;
    }
}
