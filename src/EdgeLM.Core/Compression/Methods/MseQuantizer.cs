using System.Buffers.Binary;
using EdgeLM.Tensors;
using EdgeLM.Tensors.Quantization;

namespace EdgeLM.Compression.Methods;

/// <summary>
/// OMSE: per block, a grid search over clipping ratios for the scale that minimizes the squared error, weighted by
/// the importance matrix when there is one (error of column c counts imatrix[c] times, the expected share of the
/// layer's output error). For every candidate ratio a the block's values are clipped to a x [min, max] of each
/// sub-block, the format's own quantizer picks scales for the clipped values, and the original values are rounded to
/// the nearest level of that grid; the best ratio is chosen per sub-block, then jointly. For Q4_0/Q5_0/Q8_0 the
/// weighted least-squares scale of the chosen levels is tried as well. The reference (rtn) block is always a
/// candidate, and the decoded, weighted error decides, so no block ends up worse than rtn.
/// Types without rewritable levels (Q2_K, Q3_K, floats) fall back to rtn.
/// </summary>
public sealed class MseQuantizer : ITensorQuantizer
{
    /// <summary>Clipping ratios tried for 32-blocks: 1 (the reference scale) down to 0.6.</summary>
    private static readonly float[] Ratios = [1.0f, 0.98f, 0.96f, 0.94f, 0.92f, 0.9f, 0.88f, 0.86f, 0.84f, 0.82f, 0.8f, 0.77f, 0.74f, 0.71f, 0.68f, 0.64f, 0.6f];

    /// <summary>k-quant reference quantizers run their own scale search per candidate, so they get a coarser grid.</summary>
    private static readonly float[] CoarseRatios = [1.0f, 0.96f, 0.92f, 0.88f, 0.84f, 0.8f, 0.74f, 0.68f, 0.6f];

    public static MseQuantizer Instance { get; } = new();

    public string Name => "mse";
    public bool RowsAreIndependent => true;

    public void QuantizeRows(TensorQuantizationContext tensor, long firstRow, ReadOnlySpan<float> rows, Span<byte> output)
    {
        int n = tensor.RowLength;
        int rowBytes = checked((int)GgmlTypeInfo.RowBytes(tensor.TargetType, n));
        float[]? importance = tensor.ColumnImportance is { Length: > 0 } imp ? imp : null;
        if (importance != null && importance.Length != n)
            throw new ArgumentException($"tensor '{tensor.TensorName}': importance has {importance.Length} columns, the tensor {n}");
        for (int r = 0; r < rows.Length / n; r++)
            QuantizeRow(tensor.TargetType, rows.Slice(r * n, n), importance, output.Slice(r * rowBytes, rowBytes));
    }

    /// <summary>Quantizes one row (a whole number of blocks) with the weighted search; <paramref name="importance"/> may be null (plain MSE).</summary>
    public static void QuantizeRow(GgmlType type, ReadOnlySpan<float> x, ReadOnlySpan<float> importance, Span<byte> dst)
    {
        if (!BlockGrid.IsSupported(type))
        {
            Quantize.Row(type, x, dst);
            return;
        }
        int bs = GgmlTypeInfo.BlockSize(type), bb = GgmlTypeInfo.BlockBytes(type);
        Span<float> ones = stackalloc float[bs];
        ones.Fill(1f);
        var search = new BlockSearch(type);
        for (int b = 0; b < x.Length / bs; b++)
        {
            var weights = importance.IsEmpty ? ones : importance.Slice(b * bs, bs);
            search.Run(x.Slice(b * bs, bs), weights, dst.Slice(b * bb, bb));
        }
    }

    /// <summary>Weighted squared error of a block as a reader decodes it.</summary>
    public static double BlockError(GgmlType type, ReadOnlySpan<float> x, ReadOnlySpan<float> weights, ReadOnlySpan<byte> block)
    {
        Span<float> y = stackalloc float[x.Length];
        Dequantize.Row(type, block, y);
        double e = 0;
        for (int i = 0; i < x.Length; i++) { double d = (double)y[i] - x[i]; e += weights[i] * d * d; }
        return e;
    }

    private sealed class BlockSearch(GgmlType type)
    {
        private readonly int _n = GgmlTypeInfo.BlockSize(type);
        private readonly int _sub = BlockGrid.SubBlockSize(type);
        private readonly (int Min, int Max) _range = BlockGrid.LevelRange(type);
        private readonly float[] _clipped = new float[GgmlTypeInfo.BlockSize(type)];
        private readonly float[] _scale = new float[GgmlTypeInfo.BlockSize(type)];
        private readonly float[] _offset = new float[GgmlTypeInfo.BlockSize(type)];
        private readonly int[] _levels = new int[GgmlTypeInfo.BlockSize(type)];
        private readonly byte[] _candidate = new byte[GgmlTypeInfo.BlockBytes(type)];
        private readonly double[] _subError = new double[GgmlTypeInfo.BlockSize(type)];
        private readonly float[] _bestRatio = new float[GgmlTypeInfo.BlockSize(type)];
        private readonly double[] _bestSubError = new double[GgmlTypeInfo.BlockSize(type)];

        public void Run(ReadOnlySpan<float> x, ReadOnlySpan<float> w, Span<byte> dst)
        {
            Quantize.Row(type, x, dst);
            double best = BlockError(type, x, w, dst);
            if (best == 0) return;
            if (type is GgmlType.Q4_0 or GgmlType.Q5_0 or GgmlType.Q8_0)
            {
                RunSymmetric(x, w, dst, best);
                return;
            }
            int subs = _n / _sub;
            Array.Fill(_bestSubError, double.MaxValue, 0, subs);
            foreach (float ratio in _n == GgmlTypeInfo.QK_K ? CoarseRatios : Ratios)
            {
                for (int s = 0; s < subs; s++) Clip(x, s, ratio);
                double e = Candidate(x, w, _subError);
                for (int s = 0; s < subs; s++)
                    if (_subError[s] < _bestSubError[s]) { _bestSubError[s] = _subError[s]; _bestRatio[s] = ratio; }
                Keep(ref best, e, dst);
            }
            if (subs > 1)
            {
                for (int s = 0; s < subs; s++) Clip(x, s, _bestRatio[s]);
                Keep(ref best, Candidate(x, w, null), dst);
            }
            if (type is GgmlType.Q4_0 or GgmlType.Q5_0 or GgmlType.Q8_0) RefitScale(x, w, dst, ref best);
        }

        /// <summary>
        /// The same search for the formats that decode as level·d (Q4_0, Q5_0, Q8_0), without building candidate blocks:
        /// the reference quantizer's d for the clipped values is its signed (or absolute) maximum over a constant, so a
        /// candidate is one fp16 d, and its error Σ w·(l·d - x)² is exactly what a reader decodes. Only the winner is
        /// written.
        /// </summary>
        private void RunSymmetric(ReadOnlySpan<float> x, ReadOnlySpan<float> w, Span<byte> dst, double best)
        {
            float min = float.MaxValue, max = float.MinValue;
            foreach (float v in x) { min = Math.Min(min, v); max = Math.Max(max, v); }
            ushort bestD = BinaryPrimitives.ReadUInt16LittleEndian(dst);
            bool improved = false;
            foreach (float ratio in Ratios)
            {
                float lo = Math.Min(ratio * min, ratio * max), hi = Math.Max(ratio * min, ratio * max);
                // The reference quantizer's d for the clipped block (same scan, same tie-breaking).
                float amax = 0, signedMax = 0;
                for (int i = 0; i < _n; i++)
                {
                    float c = Math.Clamp(x[i], lo, hi);
                    if (amax < MathF.Abs(c)) { amax = MathF.Abs(c); signedMax = c; }
                }
                float d = type switch { GgmlType.Q4_0 => signedMax / -8, GgmlType.Q5_0 => signedMax / -16, _ => amax / 127 };
                ushort d16 = HalfPrecision.ToF16(d);
                double e = SymmetricError(x, w, HalfPrecision.FromF16(d16));
                if (e < best) { best = e; bestD = d16; improved = true; }
            }
            // Weighted least-squares d of the chosen levels, rounded to fp16, levels again.
            float dd = HalfPrecision.FromF16(bestD);
            if (dd != 0 && float.IsFinite(dd))
            {
                double sxl = 0, sll = 0;
                for (int i = 0; i < _n; i++)
                {
                    int l = SymmetricLevel(x[i], dd);
                    sxl += w[i] * x[i] * l;
                    sll += w[i] * (double)l * l;
                }
                if (sll > 0)
                {
                    ushort refit = HalfPrecision.ToF16((float)(sxl / sll));
                    double e = SymmetricError(x, w, HalfPrecision.FromF16(refit));
                    if (e < best) { best = e; bestD = refit; improved = true; }
                }
            }
            if (!improved) return; // the reference block stays
            dd = HalfPrecision.FromF16(bestD);
            int zero = _range.Min < 0 ? 0 : -_range.Min + (_range.Max + 1) / 2;
            for (int i = 0; i < _n; i++) _levels[i] = SymmetricLevel(x[i], dd) + zero;
            BinaryPrimitives.WriteUInt16LittleEndian(dst, bestD);
            BlockGrid.WriteLevels(type, dst, _levels);
        }

        /// <summary>Signed level of x on the grid l·d: Q4_0 [-8, 7], Q5_0 [-16, 15], Q8_0 [-127, 127].</summary>
        private int SymmetricLevel(float x, float d)
        {
            if (d == 0 || !float.IsFinite(d)) return 0;
            int half = (_range.Max + 1) / 2;
            int lo = _range.Min < 0 ? _range.Min : -half, hi = _range.Min < 0 ? _range.Max : half - 1;
            float l = MathF.Round(x / d);
            return l <= lo ? lo : l >= hi ? hi : (int)l;
        }

        /// <summary>Σ w·(l·d - x)² with l·d computed as the decoders do (level times the fp16 d, in float).</summary>
        private double SymmetricError(ReadOnlySpan<float> x, ReadOnlySpan<float> w, float d)
        {
            if (d == 0 || !float.IsFinite(d)) return double.MaxValue;
            double e = 0;
            for (int i = 0; i < _n; i++)
            {
                double diff = (double)(SymmetricLevel(x[i], d) * d) - x[i];
                e += w[i] * diff * diff;
            }
            return e;
        }

        private void Keep(ref double best, double error, Span<byte> dst)
        {
            if (error < best)
            {
                best = error;
                _candidate.CopyTo(dst);
            }
        }

        private void Clip(ReadOnlySpan<float> x, int sub, float ratio)
        {
            var src = x.Slice(sub * _sub, _sub);
            float min = float.MaxValue, max = float.MinValue;
            foreach (float v in src) { min = Math.Min(min, v); max = Math.Max(max, v); }
            float lo = ratio * min, hi = ratio * max;
            for (int i = 0; i < _sub; i++) _clipped[sub * _sub + i] = Math.Clamp(src[i], Math.Min(lo, hi), Math.Max(lo, hi));
        }

        /// <summary>Format scales for the clipped values, original values rounded on that grid; returns the weighted error.</summary>
        private double Candidate(ReadOnlySpan<float> x, ReadOnlySpan<float> w, double[]? subErrors)
        {
            Quantize.Row(type, _clipped, _candidate);
            return RoundOnGrid(x, w, subErrors);
        }

        private double RoundOnGrid(ReadOnlySpan<float> x, ReadOnlySpan<float> w, double[]? subErrors)
        {
            BlockGrid.Read(type, _candidate, _scale, _offset);
            double total = 0;
            for (int i = 0; i < _n; i++)
            {
                int l = BlockGrid.NearestLevel(x[i], _scale[i], _offset[i], _range.Min, _range.Max);
                _levels[i] = l;
                double d = (double)_scale[i] * l + _offset[i] - x[i];
                double e = w[i] * d * d;
                total += e;
                if (subErrors != null)
                {
                    if (i % _sub == 0) subErrors[i / _sub] = 0;
                    subErrors[i / _sub] += e;
                }
            }
            BlockGrid.WriteLevels(type, _candidate, _levels);
            return BlockError(type, x, w, _candidate);
        }

        /// <summary>Symmetric formats store only d: the weighted least-squares d of the chosen levels, then levels again.</summary>
        private void RefitScale(ReadOnlySpan<float> x, ReadOnlySpan<float> w, Span<byte> dst, ref double best)
        {
            int zero = type switch { GgmlType.Q4_0 => 8, GgmlType.Q5_0 => 16, _ => 0 };
            dst.CopyTo(_candidate);
            BlockGrid.Read(type, _candidate, _scale, _offset);
            double sxl = 0, sll = 0;
            for (int i = 0; i < _n; i++)
            {
                int l = BlockGrid.NearestLevel(x[i], _scale[i], _offset[i], _range.Min, _range.Max) - zero;
                sxl += w[i] * x[i] * l;
                sll += w[i] * (double)l * l;
            }
            if (sll <= 0) return;
            float d = (float)(sxl / sll);
            BinaryPrimitives.WriteUInt16LittleEndian(_candidate, HalfPrecision.ToF16(d));
            Keep(ref best, RoundOnGrid(x, w, null), dst);
        }
    }
}
