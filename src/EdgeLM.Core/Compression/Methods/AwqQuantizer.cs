using EdgeLM.Inference;
using EdgeLM.Kernels;
using EdgeLM.Models;
using EdgeLM.Tensors;
using EdgeLM.Tensors.Quantization;

namespace EdgeLM.Compression.Methods;

/// <summary>
/// A per-element rescaling of a tensor applied while it is converted: value[r, c] *= Rows[r] * Columns[c]
/// (1-D tensors such as norms and biases use Columns only). This is how AWQ's folded scales reach the output.
/// </summary>
public sealed record TensorScaling(float[]? Columns, float[]? Rows)
{
    public void Apply(Span<float> row, long rowIndex)
    {
        if (Columns != null)
        {
            if (Columns.Length != row.Length) throw new ArgumentException($"scaling of {Columns.Length} columns for a row of {row.Length}");
            for (int c = 0; c < row.Length; c++) row[c] *= Columns[c];
        }
        if (Rows != null)
        {
            float s = Rows[rowIndex];
            for (int c = 0; c < row.Length; c++) row[c] *= s;
        }
    }

    /// <summary>Both scalings of <paramref name="a"/> and <paramref name="b"/> (elementwise products).</summary>
    public static TensorScaling Combine(TensorScaling? a, TensorScaling b)
    {
        if (a == null) return b;
        static float[]? Mul(float[]? x, float[]? y) => x == null ? y : y == null ? x : x.Zip(y, (p, q) => p * q).ToArray();
        return new TensorScaling(Mul(a.Columns, b.Columns), Mul(a.Rows, b.Rows));
    }
}

/// <summary>
/// AWQ (Lin et al. 2023), activation-aware scaling: per input channel c of a linear layer, s_c = mean|x_c|^α
/// (normalized so that sqrt(max·min) = 1), with α searched over a grid per layer group for the smallest output error
/// of the quantized layer on calibration inputs, ‖X·(W - Q(W·diag(s))·diag(s)⁻¹)ᵀ‖². α = 0 (s = 1, plain rtn) is in
/// the grid, so a group never gets worse than rtn on the calibration data. The scales are folded so that the float
/// model is unchanged:
/// <list type="bullet">
/// <item>q, k, v (one α, shared): attn_norm.weight / s, attn_q/k/v columns · s;</item>
/// <item>gate, up (one α, shared): ffn_norm.weight / s, ffn_gate/ffn_up columns · s;</item>
/// <item>down: ffn_up rows / s (silu(gate)·up is linear in up's rows), ffn_down columns · s;</item>
/// <item>attn_output: attn_v rows and bias / s (attention output is a convex combination of v rows); with grouped
/// query attention one scale per kv channel, shared by the q heads of the group; skipped for a fused attn_qkv.</item>
/// </list>
/// The quantization itself is the format's reference quantizer applied to the scaled weights.
/// </summary>
public sealed class AwqQuantizer : ITensorQuantizer
{
    public static AwqQuantizer Instance { get; } = new();

    public string Name => "awq";
    public bool RowsAreIndependent => true;

    public void QuantizeRows(TensorQuantizationContext tensor, long firstRow, ReadOnlySpan<float> rows, Span<byte> output) =>
        Quantize.Rows(tensor.TargetType, rows, tensor.RowLength, output);

    /// <summary>Calibration rows the α search evaluates (mean |x| uses every row seen).</summary>
    public const int MaxSearchSamples = 128;

    /// <summary>The α grid: 0, 0.05, ..., 0.95.</summary>
    public static IReadOnlyList<float> Alphas { get; } = Enumerable.Range(0, 20).Select(i => i * 0.05f).ToArray();

    /// <summary>A weight of a group: its values (rows x Columns), target type and how it is scaled besides s.</summary>
    public sealed record GroupMember(float[] Weights, GgmlType Type);

    /// <summary>
    /// The scales of one input site: s = expand(meanAbs^α), searched over <see cref="Alphas"/>. <paramref name="expand"/>
    /// maps the searched channel scales to the weights' columns (identity unless channels are shared, as in GQA).
    /// </summary>
    public static float[] SearchScales(IReadOnlyList<GroupMember> members, int cols, float[] meanAbs, ReadOnlySpan<float> samples,
        int sampleCount, out float alpha, Func<float[], float[]>? expand = null, int threads = 1)
    {
        expand ??= s => s;
        var candidates = Alphas.Select(a => expand(ChannelScales(meanAbs, a))).ToArray();
        foreach (var s in candidates)
            if (s.Length != cols) throw new ArgumentException($"scales of {s.Length} columns for weights of {cols}");
        // The α points are independent: each is scored on its own thread, then the first best wins as in a serial scan.
        var x = samples.ToArray();
        var losses = new double[candidates.Length];
        LinearAlgebra.For(candidates.Length, threads, i =>
        {
            double loss = 0;
            foreach (var m in members) loss += QuantizedOutputError(m.Weights, cols, m.Type, candidates[i], x, sampleCount);
            losses[i] = loss;
        });
        float[] best = Enumerable.Repeat(1f, cols).ToArray();
        alpha = 0;
        double bestLoss = double.MaxValue;
        for (int i = 0; i < candidates.Length; i++)
            if (losses[i] < bestLoss) { bestLoss = losses[i]; best = candidates[i]; alpha = Alphas[i]; }
        return best;
    }

    public static float[] ChannelScales(float[] meanAbs, float alpha)
    {
        var s = meanAbs.Select(m => MathF.Max(MathF.Pow(MathF.Max(m, 1e-8f), alpha), 1e-4f)).ToArray();
        float norm = MathF.Sqrt(s.Max() * s.Min());
        for (int i = 0; i < s.Length; i++) s[i] /= norm;
        return s;
    }

    /// <summary>‖X·(W - Ŵ)ᵀ‖² with Ŵ = Q(W·diag(s))·diag(s)⁻¹: what the scaled, quantized layer gets wrong.</summary>
    public static double QuantizedOutputError(float[] w, int cols, GgmlType type, float[] s, ReadOnlySpan<float> samples, int sampleCount)
    {
        var effective = QuantizeScaled(w, cols, type, s);
        for (int i = 0; i < effective.Length; i++) effective[i] = w[i] - effective[i];
        return LinearAlgebra.OutputError(effective, w.Length / cols, samples, sampleCount, cols);
    }

    /// <summary>Q(W·diag(s))·diag(s)⁻¹: the weights the quantized, scaled layer effectively applies to unscaled inputs.</summary>
    public static float[] QuantizeScaled(float[] w, int cols, GgmlType type, float[] s)
    {
        int rows = w.Length / cols;
        var row = new float[cols];
        var bytes = new byte[GgmlTypeInfo.RowBytes(type, cols)];
        var result = new float[w.Length];
        for (int r = 0; r < rows; r++)
        {
            for (int c = 0; c < cols; c++) row[c] = w[r * cols + c] * s[c];
            Quantize.Row(type, row, bytes);
            var dst = result.AsSpan(r * cols, cols);
            Dequantize.Row(type, bytes, dst);
            for (int c = 0; c < cols; c++) dst[c] /= s[c];
        }
        return result;
    }

    /// <summary>
    /// Searches every block's scales on <paramref name="calibration"/> and returns the folded scaling of every tensor it
    /// touches, for <see cref="QuantizeOptions.Scalings"/>. Tensors planned to stay in a float type are not searched.
    /// </summary>
    public static Dictionary<string, TensorScaling> Plan(LoadedModel model, CalibrationSet calibration, IReadOnlyList<PlannedTensor> plan,
        IProgress<double>? progress = null, CancellationToken cancel = default, int threads = 1)
    {
        var types = plan.ToDictionary(p => p.Name, p => p.Type);
        var result = new Dictionary<string, TensorScaling>(StringComparer.Ordinal);
        void Add(string name, TensorScaling s)
        {
            if (model.Tensors.ContainsKey(name)) result[name] = TensorScaling.Combine(result.GetValueOrDefault(name), s);
        }
        var config = model.Config;
        for (int layer = 0; layer < config.LayerCount; layer++)
        {
            cancel.ThrowIfCancellationRequested();
            string p = $"blk.{layer}.";
            // Scales are searched against the original weights; each fold is exact whatever the others do.
            if (Search(model, calibration, types, layer, ActivationSite.AttentionInput, ["attn_q", "attn_k", "attn_v", "attn_qkv"], null, threads) is { } sa)
            {
                Add(p + "attn_norm.weight", new TensorScaling(sa.Select(v => 1 / v).ToArray(), null));
                foreach (var t in new[] { "attn_q", "attn_k", "attn_v", "attn_qkv" }) Add(p + t + ".weight", new TensorScaling(sa, null));
            }
            if (Search(model, calibration, types, layer, ActivationSite.FfnInput, ["ffn_gate", "ffn_up"], null, threads) is { } sf)
            {
                Add(p + "ffn_norm.weight", new TensorScaling(sf.Select(v => 1 / v).ToArray(), null));
                foreach (var t in new[] { "ffn_gate", "ffn_up" }) Add(p + t + ".weight", new TensorScaling(sf, null));
            }
            if (model.Tensors.TryGetValue(p + "ffn_up.weight", out var up)
                && Search(model, calibration, types, layer, ActivationSite.FfnHidden, ["ffn_down"], null, threads) is { } sd && up.RowCount == sd.Length)
            {
                Add(p + "ffn_down.weight", new TensorScaling(sd, null));
                Add(p + "ffn_up.weight", new TensorScaling(null, sd.Select(v => 1 / v).ToArray()));
            }
            int hd = config.HeadDim, group = config.HeadCount / Math.Max(1, config.KvHeadCount);
            if (model.Tensors.TryGetValue(p + "attn_v.weight", out var v) && v.RowCount == (long)config.KvDim
                && config.HeadCount % config.KvHeadCount == 0)
            {
                // One scale per kv channel: every q head of a group reads the same v rows.
                float[] PerKv(float[] perChannel) => Enumerable.Range(0, config.KvDim)
                    .Select(i => Enumerable.Range(0, group).Average(g => perChannel[((i / hd) * group + g) * hd + i % hd])).ToArray();
                float[] Expand(float[] kv) => Enumerable.Range(0, config.QDim).Select(i => kv[(i / hd / group) * hd + i % hd]).ToArray();
                if (Search(model, calibration, types, layer, ActivationSite.AttentionOutput, ["attn_output"], (PerKv, Expand), threads) is { } so)
                {
                    var kvScales = Enumerable.Range(0, config.KvDim).Select(i => so[(i / hd) * group * hd + i % hd]).ToArray();
                    Add(p + "attn_output.weight", new TensorScaling(so, null));
                    Add(p + "attn_v.weight", new TensorScaling(null, kvScales.Select(x => 1 / x).ToArray()));
                    Add(p + "attn_v.bias", new TensorScaling(kvScales.Select(x => 1 / x).ToArray(), null));
                }
            }
            progress?.Report((layer + 1.0) / config.LayerCount);
        }
        return result;
    }

    private static float[]? Search(LoadedModel model, CalibrationSet calibration, Dictionary<string, GgmlType> types, int layer,
        ActivationSite site, string[] names, (Func<float[], float[]> Reduce, Func<float[], float[]> Expand)? shared, int threads)
    {
        var stats = calibration.Get(layer, site);
        if (stats == null || stats.SampleCount == 0) return null;
        var members = new List<GroupMember>();
        foreach (var n in names)
        {
            string name = $"blk.{layer}.{n}.weight";
            if (!model.Tensors.TryGetValue(name, out var t) || !types.TryGetValue(name, out var type)) continue;
            if (t.RowLength != stats.Width || !LlamaFileTypes.IsQuantized(type) || !Quantize.IsSupported(type)) continue;
            members.Add(new GroupMember(ReadFloat(t), type));
        }
        if (members.Count == 0) return null;
        var meanAbs = stats.MeanAbs();
        // The output error is a sum over samples; a bounded subset keeps the 20-point search affordable on wide layers.
        int rows = Math.Min(stats.SampleCount, MaxSearchSamples);
        var samples = stats.Samples[..(rows * stats.Width)];
        float[] s = shared is { } sh
            ? SearchScales(members, stats.Width, sh.Reduce(meanAbs), samples, rows, out float a1, sh.Expand, threads)
            : SearchScales(members, stats.Width, meanAbs, samples, rows, out a1, threads: threads);
        return a1 == 0 ? null : s;
    }

    internal static float[] ReadFloat(Tensor t)
    {
        var values = new float[checked(t.RowLength * (int)t.RowCount)];
        for (long r = 0; r < t.RowCount; r++) RowConvert.Row(t, r, values.AsSpan((int)(r * t.RowLength), t.RowLength));
        return values;
    }
}
