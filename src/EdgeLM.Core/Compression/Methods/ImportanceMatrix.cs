using System.Runtime.InteropServices;
using EdgeLM.Formats.Gguf;
using EdgeLM.Kernels;
using EdgeLM.Models;
using EdgeLM.Tensors;

namespace EdgeLM.Compression.Methods;

/// <summary>
/// Per linear weight, the sum of x² of each input column over the calibration rows and the row count: llama.cpp's
/// importance matrix. Stored in llama.cpp's GGUF imatrix layout (tools/imatrix): general.type = "imatrix",
/// imatrix.datasets / chunk_count / chunk_size, and per weight the F32 tensors "NAME.in_sum2" {columns, 1} and
/// "NAME.counts" {1, 1}, so llama-quantize --imatrix reads EdgeLM's files and the other way round.
/// </summary>
public sealed class ImportanceMatrix
{
    public sealed record Entry(double[] SumSquares, long Count)
    {
        /// <summary>Mean of x² per column (what quantizers weigh errors with).</summary>
        public float[] Mean() => SumSquares.Select(s => Count > 0 ? (float)(s / Count) : 0f).ToArray();
    }

    private readonly Dictionary<string, Entry> _entries = new(StringComparer.Ordinal);

    public IReadOnlyDictionary<string, Entry> Entries => _entries;
    public List<string> Datasets { get; } = [];
    public int ChunkCount { get; set; }
    public int ChunkSize { get; set; }

    public void Set(string weightName, double[] sumSquares, long count) => _entries[weightName] = new Entry(sumSquares, count);

    /// <summary>Mean x² per column of a weight, or null when the matrix has no entry for it.</summary>
    public float[]? Get(string weightName) => _entries.TryGetValue(weightName, out var e) ? e.Mean() : null;

    /// <summary>One entry per linear weight of <paramref name="model"/> whose input site was observed.</summary>
    public static ImportanceMatrix FromCalibration(LoadedModel model, CalibrationSet calibration, string? dataset = null)
    {
        var m = new ImportanceMatrix { ChunkCount = calibration.ChunkCount, ChunkSize = calibration.ChunkSize };
        if (dataset != null) m.Datasets.Add(dataset);
        foreach (var name in model.Tensors.Keys.Order(StringComparer.Ordinal))
        {
            var stats = calibration.ForWeight(name);
            if (stats == null || stats.Width != model.Tensors[name].RowLength) continue;
            m.Set(name, (double[])stats.SumSquares.Clone(), stats.Count);
        }
        return m;
    }

    public void Save(string path)
    {
        var writer = new GgufWriter();
        writer.Metadata.Set("general.type", GgufValue.Of("imatrix"));
        writer.Metadata.Set("imatrix.datasets", GgufValue.Of(Datasets.ToArray()));
        writer.Metadata.Set("imatrix.chunk_count", GgufValue.Of((uint)ChunkCount));
        writer.Metadata.Set("imatrix.chunk_size", GgufValue.Of((uint)ChunkSize));
        foreach (var (name, e) in _entries.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            var sums = e.SumSquares.Select(v => (float)v).ToArray();
            writer.AddTensor(name + ".in_sum2", GgmlType.F32, [sums.Length, 1], MemoryMarshal.AsBytes(sums.AsSpan()).ToArray());
            writer.AddTensor(name + ".counts", GgmlType.F32, [1, 1], BitConverter.GetBytes((float)e.Count));
        }
        writer.Write(path);
    }

    public static ImportanceMatrix Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"imatrix file not found: {path}", path);
        using var file = GgufFile.Open(path);
        var m = new ImportanceMatrix
        {
            ChunkCount = (int)(file.Metadata.GetInteger("imatrix.chunk_count") ?? 0),
            ChunkSize = (int)(file.Metadata.GetInteger("imatrix.chunk_size") ?? 0),
        };
        if (file.Metadata.TryGet("imatrix.datasets", out var ds) && ds.Value is string[] names) m.Datasets.AddRange(names);
        const string SumSuffix = ".in_sum2", CountSuffix = ".counts";
        foreach (var (tensorName, sums) in file.Tensors)
        {
            if (!tensorName.EndsWith(SumSuffix, StringComparison.Ordinal)) continue;
            string name = tensorName[..^SumSuffix.Length];
            if (!file.Tensors.TryGetValue(name + CountSuffix, out var counts))
                throw new InvalidDataException($"{path}: '{tensorName}' has no matching '{name}{CountSuffix}'");
            if (sums.Type != GgmlType.F32 || counts.Type != GgmlType.F32)
                throw new InvalidDataException($"{path}: imatrix tensors of '{name}' must be F32");
            // Mixture-of-experts weights have one row per expert; dense models have one. Experts are summed.
            var total = new double[sums.RowLength];
            var row = new float[sums.RowLength];
            var countRow = new float[counts.RowLength];
            if (counts.RowCount != sums.RowCount || counts.RowLength != 1)
                throw new InvalidDataException($"{path}: '{name}{CountSuffix}' has shape {{{counts.RowLength}, {counts.RowCount}}}, expected {{1, {sums.RowCount}}}");
            long count = 0;
            for (long r = 0; r < sums.RowCount; r++)
            {
                RowConvert.Row(sums, r, row);
                RowConvert.Row(counts, r, countRow);
                for (int c = 0; c < row.Length; c++) total[c] += row[c];
                if (!(countRow[0] >= 0) || countRow[0] > 1e15f) throw new InvalidDataException($"{path}: '{name}' has an invalid count {countRow[0]}");
                count += (long)countRow[0];
            }
            m.Set(name, total, count);
        }
        if (m._entries.Count == 0) throw new InvalidDataException($"{path} holds no importance matrix entries (NAME.in_sum2 tensors)");
        return m;
    }
}
