using System.Buffers;
using System.Diagnostics;
using System.Runtime.ExceptionServices;
using EdgeLM.Compression.Methods;
using EdgeLM.Formats.Gguf;
using EdgeLM.Kernels;
using EdgeLM.Models;
using EdgeLM.Tensors;
using EdgeLM.Tensors.Quantization;

namespace EdgeLM.Compression;

public sealed record QuantizeOptions
{
    public required LlamaFileType FileType { get; init; }
    /// <summary>--tensor-type rules, first match wins. Unlike llama.cpp they also apply to f32/f16/bf16 recipes.</summary>
    public IReadOnlyList<TensorTypeOverride> Overrides { get; init; } = [];
    public ITensorQuantizer Quantizer { get; init; } = RtnQuantizer.Instance;
    /// <summary>Worker threads; 0 means one per core.</summary>
    public int Threads { get; init; }
    /// <summary>Quantize tensors that are already quantized (dequantized first, which compounds the error).</summary>
    public bool AllowRequantize { get; init; }
    /// <summary>Per-column importance (imatrix) handed to the quantizer as TensorQuantizationContext.ColumnImportance.</summary>
    public ImportanceMatrix? Importance { get; init; }
    /// <summary>Rescalings applied to tensors before they are written (AWQ's folded scales); such tensors are never copied raw.</summary>
    public IReadOnlyDictionary<string, TensorScaling>? Scalings { get; init; }
}

public readonly record struct QuantizeProgress(int TensorIndex, int TensorCount, string TensorName, double Fraction);

/// <summary>
/// Writes a quantized GGUF of a loaded model (GGUF or Hugging Face), streaming: tensors are produced one at a time
/// during the atomic write, each in windows of row chunks spread over the threads, so memory stays at a few
/// megabytes per thread however large the model. The output is never visible half-written.
/// </summary>
public static class ModelQuantizer
{
    /// <summary>Values converted per work item; small enough to stay in L2, large enough to amortize scheduling.</summary>
    private const int ValuesPerChunk = 1 << 16;
    private const int ChunksPerThreadPerWindow = 4;

    public const uint QuantizationVersion = 2; // GGML_QNT_VERSION

    /// <summary>The type of every tensor of <paramref name="model"/> under <paramref name="options"/>, in output order.</summary>
    public static IReadOnlyList<PlannedTensor> Plan(LoadedModel model, QuantizeOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        bool fromHf = model.Format == "hf";
        // convert_hf_to_gguf.py stores 1-D tensors as F32; planning from that type gives the files llama.cpp would.
        var descriptors = model.Tensors.Values.Select(t =>
            new TensorDescriptor(t.Name, fromHf && t.Shape.Length == 1 ? GgmlType.F32 : t.Type, t.Shape));
        return QuantizationPlanner.Plan(model.Config, descriptors, options.FileType, options.Overrides);
    }

    /// <summary>The output metadata: the input's (or, for Hugging Face input, llama.cpp's keys plus the tokenizer) with the file type set.</summary>
    public static GgufMetadata BuildMetadata(LoadedModel model, LlamaFileType fileType)
    {
        var md = new GgufMetadata();
        foreach (var (key, value) in model.Metadata.Entries) md.Set(key, value);
        if (model.Format == "hf" && !md.Contains("tokenizer.ggml.tokens"))
        {
            var tokenizer = ModelTokenizers.Load(model);
            tokenizer?.WriteToGgufMetadata(md, model.Config.VocabSize);
        }
        // A single output file: split keys of a sharded input would make readers look for other shards.
        md.Remove("split.no");
        md.Remove("split.count");
        md.Remove("split.tensors.count");
        // llama.cpp removes and re-adds these, so they end the key list.
        md.Remove("general.quantization_version");
        md.Set("general.quantization_version", GgufValue.Of(QuantizationVersion));
        md.Remove("general.file_type");
        md.Set("general.file_type", GgufValue.Of((uint)fileType));
        return md;
    }

    public static QuantizationReport Quantize(LoadedModel model, string outputPath, QuantizeOptions options,
        IProgress<QuantizeProgress>? progress = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentException.ThrowIfNullOrEmpty(outputPath);
        ArgumentNullException.ThrowIfNull(options);
        var stopwatch = Stopwatch.StartNew();
        var plan = Plan(model, options);
        CheckSources(model, plan, options);
        int threads = options.Threads > 0 ? options.Threads : Environment.ProcessorCount;

        var writer = new GgufWriter();
        foreach (var (key, value) in BuildMetadata(model, options.FileType).Entries) writer.Metadata.Set(key, value);

        var results = new TensorReport[plan.Count];
        long totalElements = plan.Sum(p => p.ElementCount), doneElements = 0;
        for (int i = 0; i < plan.Count; i++)
        {
            int index = i;
            var entry = plan[i];
            var source = model.Tensors[entry.Name];
            writer.AddTensor(entry.Name, entry.Type, entry.Shape, stream =>
            {
                cancel.ThrowIfCancellationRequested();
                void Report(long elements) =>
                    progress?.Report(new QuantizeProgress(index, plan.Count, entry.Name, (double)(doneElements + elements) / Math.Max(1, totalElements)));
                var scaling = options.Scalings?.GetValueOrDefault(entry.Name);
                double error = entry.Type == source.Type && scaling == null
                    ? CopyTensor(source, stream)
                    : ConvertTensor(source, entry, options.Quantizer, threads, stream, Report, cancel, scaling, Importance(options, entry.Name, scaling));
                doneElements += entry.ElementCount;
                Report(0);
                results[index] = new TensorReport(entry.Name, entry.Shape, source.Type, entry.Type, source.ByteLength, entry.Bytes, error, entry.Note);
            });
        }
        writer.Write(outputPath);
        stopwatch.Stop();
        return new QuantizationReport
        {
            InputPath = model.SourcePath,
            OutputPath = Path.GetFullPath(outputPath),
            FileType = options.FileType,
            Method = options.Quantizer.Name,
            Threads = threads,
            Tensors = results,
            OutputFileBytes = new FileInfo(outputPath).Length,
            Elapsed = stopwatch.Elapsed,
        };
    }

    /// <summary>The imatrix of a tensor as its quantizer sees it: a column scaled by s has inputs scaled by 1/s.</summary>
    private static float[]? Importance(QuantizeOptions options, string name, TensorScaling? scaling)
    {
        var importance = options.Importance?.Get(name);
        if (importance != null && scaling?.Columns is { } columns && columns.Length == importance.Length)
            for (int c = 0; c < importance.Length; c++) importance[c] /= columns[c] * columns[c];
        return importance;
    }

    private static void CheckSources(LoadedModel model, IReadOnlyList<PlannedTensor> plan, QuantizeOptions options)
    {
        foreach (var entry in plan)
        {
            var source = model.Tensors[entry.Name];
            if (entry.Type == source.Type && options.Scalings?.ContainsKey(entry.Name) != true) continue;
            if (LlamaFileTypes.IsQuantized(source.Type) && !options.AllowRequantize)
                throw new InvalidDataException($"{model.SourcePath} is already quantized ('{entry.Name}' is {source.Type}); quantizing again compounds the error, pass --allow-requantize to do it anyway");
            if (!Dequantize.IsSupported(source.Type))
                throw new NotSupportedException($"tensor '{entry.Name}': cannot convert from {source.Type}");
        }
    }

    private static unsafe double CopyTensor(Tensor source, Stream output)
    {
        const int Slice = 1 << 24;
        for (long offset = 0; offset < source.ByteLength; offset += Slice)
            output.Write(new ReadOnlySpan<byte>(source.Data + offset, (int)Math.Min(Slice, source.ByteLength - offset)));
        return 0;
    }

    /// <summary>Quantizes one tensor window by window; returns the relative RMS error of the written values.</summary>
    private static double ConvertTensor(Tensor source, PlannedTensor entry, ITensorQuantizer quantizer, int threads,
        Stream output, Action<long> reportElements, CancellationToken cancel, TensorScaling? scaling = null, float[]? importance = null)
    {
        int rowLength = source.RowLength;
        long rowCount = source.RowCount;
        int rowBytes = checked((int)GgmlTypeInfo.RowBytes(entry.Type, rowLength));
        if (importance != null && importance.Length != rowLength)
            throw new InvalidDataException($"imatrix entry of '{entry.Name}' has {importance.Length} columns, the tensor {rowLength}");
        var context = new TensorQuantizationContext(entry.Name, entry.Type, rowLength, rowCount, importance,
            quantizer.RowsAreIndependent ? 1 : threads);

        long rowsPerChunk, chunksPerWindow;
        if (quantizer.RowsAreIndependent)
        {
            rowsPerChunk = Math.Max(1, ValuesPerChunk / rowLength);
            chunksPerWindow = (long)threads * ChunksPerThreadPerWindow;
        }
        else
        {
            if ((long)rowLength * rowCount > Array.MaxLength || rowCount * rowBytes > Array.MaxLength)
                throw new NotSupportedException($"tensor '{entry.Name}' is too large for method '{quantizer.Name}', which needs the whole tensor at once");
            rowsPerChunk = rowCount;
            chunksPerWindow = 1;
        }
        long rowsPerWindow = Math.Min(rowCount, rowsPerChunk * chunksPerWindow);
        byte[] window = ArrayPool<byte>.Shared.Rent(checked((int)(rowsPerWindow * rowBytes)));
        double errorSquares = 0, signalSquares = 0;
        try
        {
            for (long windowStart = 0; windowStart < rowCount; windowStart += rowsPerWindow)
            {
                cancel.ThrowIfCancellationRequested();
                long windowRows = Math.Min(rowsPerWindow, rowCount - windowStart);
                int chunks = checked((int)((windowRows + rowsPerChunk - 1) / rowsPerChunk));
                var sums = new (double Error, double Signal)[chunks];
                RunParallel(chunks, threads, cancel, c =>
                {
                    long first = windowStart + c * rowsPerChunk;
                    int rows = (int)Math.Min(rowsPerChunk, windowStart + windowRows - first);
                    var dst = window.AsSpan(checked((int)((first - windowStart) * rowBytes)), rows * rowBytes);
                    sums[c] = QuantizeChunk(source, quantizer, context, first, rows, dst, scaling);
                });
                foreach (var (e, s) in sums) { errorSquares += e; signalSquares += s; }
                output.Write(window, 0, checked((int)(windowRows * rowBytes)));
                reportElements((windowStart + windowRows) * rowLength);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(window);
        }
        if (!double.IsFinite(signalSquares) || !double.IsFinite(errorSquares))
            throw new InvalidDataException($"tensor '{entry.Name}' contains NaN or infinite values");
        return signalSquares > 0 ? Math.Sqrt(errorSquares / signalSquares) : errorSquares > 0 ? double.PositiveInfinity : 0;
    }

    private static (double Error, double Signal) QuantizeChunk(Tensor source, ITensorQuantizer quantizer,
        TensorQuantizationContext context, long firstRow, int rows, Span<byte> dst, TensorScaling? scaling)
    {
        int n = context.RowLength;
        int rowBytes = dst.Length / rows;
        float[] values = ArrayPool<float>.Shared.Rent(checked(rows * n));
        float[] decoded = ArrayPool<float>.Shared.Rent(n);
        try
        {
            var x = values.AsSpan(0, rows * n);
            for (int r = 0; r < rows; r++)
            {
                RowConvert.Row(source, firstRow + r, x.Slice(r * n, n));
                scaling?.Apply(x.Slice(r * n, n), firstRow + r);
            }
            quantizer.QuantizeRows(context, firstRow, x, dst);

            // Measured against what a reader will decode, so the report covers scale rounding to f16 too.
            double error = 0, signal = 0;
            var y = decoded.AsSpan(0, n);
            for (int r = 0; r < rows; r++)
            {
                Dequantize.Row(context.TargetType, dst.Slice(r * rowBytes, rowBytes), y);
                var xr = x.Slice(r * n, n);
                for (int j = 0; j < n; j++)
                {
                    double d = (double)y[j] - xr[j];
                    error += d * d;
                    signal += (double)xr[j] * xr[j];
                }
            }
            return (error, signal);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(values);
            ArrayPool<float>.Shared.Return(decoded);
        }
    }

    private static void RunParallel(int count, int threads, CancellationToken cancel, Action<int> body)
    {
        if (count == 1 || threads == 1)
        {
            for (int i = 0; i < count; i++) { cancel.ThrowIfCancellationRequested(); body(i); }
            return;
        }
        try
        {
            Parallel.For(0, count, new ParallelOptions { MaxDegreeOfParallelism = threads, CancellationToken = cancel }, body);
        }
        catch (AggregateException e) when (e.InnerExceptions.Count > 0)
        {
            // Callers expect the one-line exception of the failing chunk, not a wrapper.
            ExceptionDispatchInfo.Capture(e.InnerExceptions[0]).Throw();
            throw;
        }
    }
}
