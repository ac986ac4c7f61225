using System.Text.Json;
using EdgeLM.Formats;
using EdgeLM.Tensors;

namespace EdgeLM.Compression;

/// <summary>One tensor of a quantization run. <see cref="RelativeRmsError"/> is ‖decoded − input‖ / ‖input‖ (0 for copies).</summary>
public sealed record TensorReport(string Name, long[] Shape, GgmlType SourceType, GgmlType Type, long BytesIn, long BytesOut,
    double RelativeRmsError, string? Note)
{
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
    public double BitsPerWeight => 8.0 * BytesOut / Math.Max(1, ElementCount);
}

public sealed class QuantizationReport
{
    public required string InputPath { get; init; }
    public required string OutputPath { get; init; }
    public required LlamaFileType FileType { get; init; }
    public required string Method { get; init; }
    public required int Threads { get; init; }
    public required IReadOnlyList<TensorReport> Tensors { get; init; }
    public required long OutputFileBytes { get; init; }
    public required TimeSpan Elapsed { get; init; }

    public long TensorBytesIn => Tensors.Sum(t => t.BytesIn);
    public long TensorBytesOut => Tensors.Sum(t => t.BytesOut);
    public long ElementCount => Tensors.Sum(t => t.ElementCount);
    public double CompressionRatio => TensorBytesOut > 0 ? (double)TensorBytesIn / TensorBytesOut : 0;
    public double BitsPerWeight => 8.0 * TensorBytesOut / Math.Max(1, ElementCount);

    /// <summary>Tensor counts by output type, for the summary line ("132 Q5_0, 13 Q8_0, ...").</summary>
    public IReadOnlyList<(GgmlType Type, int Count)> CountsByType =>
        Tensors.GroupBy(t => t.Type).OrderByDescending(g => g.Count()).ThenBy(g => g.Key).Select(g => (g.Key, g.Count())).ToList();

    public void WriteText(TextWriter o)
    {
        o.WriteLine($"  {"tensor",-34} {"shape",-16} {"type",-12} {"bpw",6} {"rel rms err",12}");
        foreach (var t in Tensors)
        {
            string type = t.SourceType == t.Type ? t.Type.ToString() : $"{t.SourceType}->{t.Type}";
            string err = t.SourceType == t.Type ? "-" : t.RelativeRmsError.ToString("0.000e+00", System.Globalization.CultureInfo.InvariantCulture);
            o.WriteLine($"  {t.Name,-34} {"[" + string.Join(", ", t.Shape) + "]",-16} {type,-12} {t.BitsPerWeight,6:F2} {err,12}");
        }
        o.WriteLine();
        o.WriteLine($"file type:   {LlamaFileTypes.Name(FileType)} ({Method}, {Threads} threads)");
        o.WriteLine($"tensors:     {Tensors.Count} ({string.Join(", ", CountsByType.Select(c => $"{c.Count} {c.Type}"))})");
        o.WriteLine($"size in:     {TensorBytesIn:N0} bytes of tensors ({TensorBytesIn / 1048576.0:F1} MiB)");
        o.WriteLine($"size out:    {TensorBytesOut:N0} bytes of tensors ({TensorBytesOut / 1048576.0:F1} MiB, {BitsPerWeight:F2} bits per weight), file {OutputFileBytes:N0} bytes");
        o.WriteLine($"compression: {CompressionRatio:F2}x");
        o.WriteLine($"time:        {Elapsed.TotalSeconds:F1} s");
    }

    public void WriteJson(Stream stream)
    {
        using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        w.WriteStartObject();
        w.WriteString("input", InputPath);
        w.WriteString("output", OutputPath);
        w.WriteString("file_type", LlamaFileTypes.Name(FileType));
        w.WriteNumber("file_type_id", (uint)FileType);
        w.WriteString("method", Method);
        w.WriteNumber("threads", Threads);
        w.WriteNumber("tensor_bytes_in", TensorBytesIn);
        w.WriteNumber("tensor_bytes_out", TensorBytesOut);
        w.WriteNumber("output_file_bytes", OutputFileBytes);
        w.WriteNumber("parameters", ElementCount);
        w.WriteNumber("bits_per_weight", BitsPerWeight);
        w.WriteNumber("compression_ratio", CompressionRatio);
        w.WriteNumber("seconds", Elapsed.TotalSeconds);
        w.WriteStartObject("type_counts");
        foreach (var (type, count) in CountsByType) w.WriteNumber(type.ToString(), count);
        w.WriteEndObject();
        w.WriteStartArray("tensors");
        foreach (var t in Tensors)
        {
            w.WriteStartObject();
            w.WriteString("name", t.Name);
            w.WriteStartArray("shape");
            foreach (long d in t.Shape) w.WriteNumberValue(d);
            w.WriteEndArray();
            w.WriteString("source_type", t.SourceType.ToString());
            w.WriteString("type", t.Type.ToString());
            w.WriteNumber("bytes_in", t.BytesIn);
            w.WriteNumber("bytes_out", t.BytesOut);
            w.WriteNumber("bits_per_weight", t.BitsPerWeight);
            // JSON has no infinity; a tensor of zeros decoded to non-zeros would be the only case.
            if (double.IsFinite(t.RelativeRmsError)) w.WriteNumber("relative_rms_error", t.RelativeRmsError);
            else w.WriteNull("relative_rms_error");
            if (t.Note != null) w.WriteString("note", t.Note);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }

    /// <summary>Writes the JSON report atomically.</summary>
    public void SaveJson(string path) => AtomicFile.Write(path, WriteJson);
}
