using System.Text.RegularExpressions;
using EdgeLM.Inference;
using EdgeLM.Models;

namespace EdgeLM.Compression.Methods;

/// <summary>Statistics of the inputs of the linear layers at one site of one block.</summary>
public sealed class ActivationStats
{
    public ActivationStats(int width, int maxSamples)
    {
        Width = width;
        SumSquares = new double[width];
        SumAbs = new double[width];
        _samples = new float[(long)Math.Max(0, maxSamples) * width];
        MaxSamples = Math.Max(0, maxSamples);
    }

    public int Width { get; }
    /// <summary>Rows seen.</summary>
    public long Count { get; private set; }
    public double[] SumSquares { get; }
    public double[] SumAbs { get; }
    public int MaxSamples { get; }
    /// <summary>Rows kept (the first MaxSamples seen).</summary>
    public int SampleCount { get; private set; }

    private readonly float[] _samples;

    /// <summary>The kept rows, SampleCount x Width, row-major.</summary>
    public ReadOnlySpan<float> Samples => _samples.AsSpan(0, SampleCount * Width);

    public void Add(ReadOnlySpan<float> rows, int n)
    {
        for (int r = 0; r < n; r++)
        {
            var x = rows.Slice(r * Width, Width);
            for (int c = 0; c < Width; c++)
            {
                double v = x[c];
                SumSquares[c] += v * v;
                SumAbs[c] += Math.Abs(v);
            }
            if (SampleCount < MaxSamples) x.CopyTo(_samples.AsSpan(SampleCount++ * Width, Width));
        }
        Count += n;
    }

    /// <summary>Mean of x² per column: llama.cpp's importance matrix.</summary>
    public float[] MeanSquares() => SumSquares.Select(s => Count > 0 ? (float)(s / Count) : 0f).ToArray();

    public float[] MeanAbs() => SumAbs.Select(s => Count > 0 ? (float)(s / Count) : 0f).ToArray();

    /// <summary>H = 2/n · XᵀX over the kept rows (GPTQ's Hessian of the layer's squared output error), Width x Width.</summary>
    public double[] Hessian(int threads = 1) => Gram(Samples, SampleCount, Width, 2.0 / Math.Max(1, SampleCount), threads);

    /// <summary>Columns of X whose products are formed together: each column read is reused this many times from cache.</summary>
    private const int GramGroup = 16;

    /// <summary>
    /// factor · XᵀX (d x d, symmetric) of the rows X (n x d): entry (i, j) is the dot product of columns i and j over
    /// the n samples in double precision. Columns are transposed to contiguous rows and the lower triangle is
    /// filled in groups of rows that share every column they read; groups run in parallel and each entry is one
    /// fixed dot product, so the result does not depend on the thread count.
    /// </summary>
    internal static double[] Gram(ReadOnlySpan<float> x, int n, int d, double factor, int threads = 1)
    {
        var columns = new double[(long)d * n];
        for (int s = 0; s < n; s++)
        {
            var xs = x.Slice(s * d, d);
            for (int i = 0; i < d; i++) columns[(long)i * n + s] = xs[i];
        }
        var h = new double[(long)d * d];
        LinearAlgebra.For((d + GramGroup - 1) / GramGroup, threads, g =>
        {
            int i0 = g * GramGroup, i1 = Math.Min(d, i0 + GramGroup);
            for (int j = 0; j < i1; j++)
            {
                var cj = columns.AsSpan(j * n, n);
                for (int i = Math.Max(i0, j); i < i1; i++)
                    h[(long)i * d + j] = factor * LinearAlgebra.Dot(columns.AsSpan(i * n, n), cj);
            }
        });
        for (int i = 0; i < d; i++)
            for (int j = 0; j < i; j++) h[(long)j * d + i] = h[(long)i * d + j];
        return h;
    }
}

/// <summary>
/// Activations of a float model over calibration text, collected through <see cref="IActivationObserver"/>: per
/// block and site the mean x², the mean |x| and up to MaxSamples input rows (Hessians are built from those rows on
/// demand, one layer at a time, rather than keeping a d x d matrix per layer for the whole run).
/// </summary>
public sealed class CalibrationSet : IActivationObserver
{
    private readonly Dictionary<(int Layer, ActivationSite Site), ActivationStats> _stats = [];

    public CalibrationSet(int maxSamples) => MaxSamples = maxSamples;

    public int MaxSamples { get; }
    public int ChunkCount { get; private set; }
    public int ChunkSize { get; private set; }
    public long TokenCount { get; private set; }
    public List<string> Datasets { get; } = [];

    public void Observe(int layer, ActivationSite site, ReadOnlySpan<float> rows, int n, int width)
    {
        if (site is ActivationSite.BlockInput or ActivationSite.BlockOutput) return;
        if (!_stats.TryGetValue((layer, site), out var s)) _stats[(layer, site)] = s = new ActivationStats(width, MaxSamples);
        if (s.Width != width) throw new InvalidOperationException($"layer {layer} {site}: width {width}, earlier {s.Width}");
        s.Add(rows, n);
    }

    public ActivationStats? Get(int layer, ActivationSite site) => _stats.GetValueOrDefault((layer, site));

    /// <summary>The statistics of the inputs of a weight given by GGUF name (blk.N.attn_q.weight ...), or null.</summary>
    public ActivationStats? ForWeight(string tensorName) =>
        InputSite(tensorName) is { } s ? Get(s.Layer, s.Site) : null;

    /// <summary>
    /// The statistics a calibrated method (gptq, autoround) can use for this tensor, or null: no statistics, a width
    /// that does not match, no samples, or a target type without a block grid. Null means: fall back to rtn.
    /// </summary>
    public ActivationStats? ForCalibratedQuantization(TensorQuantizationContext tensor) =>
        ForWeight(tensor.TensorName) is { } stats && stats.Width == tensor.RowLength && stats.SampleCount > 0 && BlockGrid.IsSupported(tensor.TargetType)
            ? stats : null;

    private static readonly Regex WeightName = new(@"^blk\.(\d+)\.(attn_q|attn_k|attn_v|attn_qkv|attn_output|ffn_gate|ffn_up|ffn_down)\.weight$", RegexOptions.CultureInvariant);

    /// <summary>Which observer site feeds a linear weight (llama.cpp's imatrix assignment), or null for other tensors.</summary>
    public static (int Layer, ActivationSite Site)? InputSite(string tensorName)
    {
        var m = WeightName.Match(tensorName);
        if (!m.Success) return null;
        int layer = int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        var site = m.Groups[2].Value switch
        {
            "attn_output" => ActivationSite.AttentionOutput,
            "ffn_gate" or "ffn_up" => ActivationSite.FfnInput,
            "ffn_down" => ActivationSite.FfnHidden,
            _ => ActivationSite.AttentionInput,
        };
        return (layer, site);
    }

    /// <summary>
    /// Runs the model over <paramref name="tokens"/> in chunks of <paramref name="chunkSize"/> (each chunk from an
    /// empty cache, starting with BOS when given, as llama-imatrix does) and collects the statistics.
    /// </summary>
    public static CalibrationSet Collect(LoadedModel model, IReadOnlyList<int> tokens, int chunkSize, int maxChunks,
        int maxSamples, int? bos, int threads, IProgress<double>? progress = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokens);
        if (chunkSize < 2) throw new ArgumentException($"calibration chunk size {chunkSize} is too small");
        chunkSize = Math.Min(chunkSize, model.Config.ContextLength);
        int chunks = tokens.Count / chunkSize;
        if (chunks == 0 && tokens.Count >= 2) { chunks = 1; chunkSize = tokens.Count; }
        if (maxChunks > 0) chunks = Math.Min(chunks, maxChunks);
        if (chunks == 0) throw new InvalidDataException($"the calibration text has {tokens.Count} token(s); at least 2 are needed");
        var set = new CalibrationSet(maxSamples) { ChunkSize = chunkSize };
        using var session = new InferenceSession(model.Config, model.Weights, chunkSize, threads) { Observer = set };
        var chunk = new int[chunkSize];
        for (int c = 0; c < chunks; c++)
        {
            cancel.ThrowIfCancellationRequested();
            for (int i = 0; i < chunkSize; i++) chunk[i] = tokens[c * chunkSize + i];
            if (bos is int b) chunk[0] = b;
            session.Reset();
            session.Forward(chunk);
            set.ChunkCount++;
            set.TokenCount += chunkSize;
            progress?.Report((c + 1.0) / chunks);
        }
        return set;
    }
}
