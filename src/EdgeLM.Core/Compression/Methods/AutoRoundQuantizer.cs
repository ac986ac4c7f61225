using EdgeLM.Tensors;
using EdgeLM.Tensors.Quantization;

namespace EdgeLM.Compression.Methods;

/// <summary>
/// AutoRound (Cheng et al. 2023): keeps the scales the format's quantizer chooses and learns, per weight, a rounding
/// offset V in [-0.5, 0.5] (level = round(w/scale + V)) by signed gradient descent on the layer's squared output error
/// over calibration inputs, with the straight-through estimator for the rounding. The loss is tr(E·H·Eᵀ) with
/// E = W - Ŵ and H = XᵀX, so a step costs rows·cols² however many samples there are; the best V seen is kept, and V = 0
/// (rtn's levels) is the starting point, so the result is never worse than rtn on the calibration data.
/// Clipping factors are not learned (the format's scale search stays in charge of them).
/// </summary>
public sealed class AutoRoundQuantizer(CalibrationSet calibration, int steps = 200, float? learningRate = null) : ITensorQuantizer
{
    public string Name => "autoround";
    public bool RowsAreIndependent => false;

    public void QuantizeRows(TensorQuantizationContext tensor, long firstRow, ReadOnlySpan<float> rows, Span<byte> output)
    {
        var stats = calibration.ForWeight(tensor.TensorName);
        if (stats == null || stats.Width != tensor.RowLength || stats.SampleCount == 0 || !BlockGrid.IsSupported(tensor.TargetType))
        {
            Quantize.Rows(tensor.TargetType, rows, tensor.RowLength, output);
            return;
        }
        var gram = ActivationStats.Gram(stats.Samples, stats.SampleCount, stats.Width, 1.0 / stats.SampleCount);
        QuantizeLayer(tensor.TargetType, rows, tensor.RowLength, gram, output, steps, learningRate ?? 1f / steps);
    }

    /// <summary>
    /// Quantizes <paramref name="w"/> (rows x cols) minimizing tr(E·G·Eᵀ) for the input Gram matrix
    /// <paramref name="gram"/> (cols x cols, XᵀX up to a constant factor).
    /// </summary>
    public static void QuantizeLayer(GgmlType type, ReadOnlySpan<float> w, int cols, double[] gram, Span<byte> output, int steps, float learningRate)
    {
        if (!BlockGrid.IsSupported(type)) throw new NotSupportedException($"autoround cannot quantize to {type}");
        if (gram.Length != (long)cols * cols) throw new ArgumentException($"Gram matrix of {gram.Length} values for {cols} columns");
        int rows = w.Length / cols;
        int rowBytes = checked((int)GgmlTypeInfo.RowBytes(type, cols));
        var (minLevel, maxLevel) = BlockGrid.LevelRange(type);
        var g = new float[gram.Length];
        for (long i = 0; i < gram.Length; i++) g[i] = (float)gram[i];

        var scale = new float[(long)rows * cols];
        var offset = new float[(long)rows * cols];
        for (int r = 0; r < rows; r++)
            BlockGrid.ReferenceGrid(type, w.Slice(r * cols, cols), output.Slice(r * rowBytes, rowBytes), scale.AsSpan(r * cols, cols), offset.AsSpan(r * cols, cols));

        // base = (w - offset) / scale, the unrounded level; V shifts it before rounding.
        var basis = new float[(long)rows * cols];
        for (long i = 0; i < basis.Length; i++)
            basis[i] = scale[i] != 0 ? (w[(int)i] - offset[i]) / scale[i] : 0;
        var v = new float[basis.Length];
        var next = new float[basis.Length];
        var bestV = new float[basis.Length];
        var error = new float[cols];
        var gradient = new float[cols];
        double bestLoss = double.MaxValue;
        for (int step = 0; step <= steps; step++)
        {
            double loss = 0;
            // Per row: e = w - ŵ, loss += e·G·e, dL/dV = -2 (G·e) ⊙ scale (straight-through rounding).
            for (int r = 0; r < rows; r++)
            {
                int at = r * cols;
                for (int c = 0; c < cols; c++)
                {
                    float l = Math.Clamp(MathF.Round(basis[at + c] + v[at + c]), minLevel, maxLevel);
                    error[c] = w[at + c] - (scale[at + c] * l + offset[at + c]);
                }
                for (int c = 0; c < cols; c++) gradient[c] = LinearAlgebra.Dot(g.AsSpan(c * cols, cols), error);
                loss += LinearAlgebra.Dot(gradient, error);
                if (step == steps) continue;
                for (int c = 0; c < cols; c++)
                {
                    float grad = -gradient[c] * scale[at + c];
                    next[at + c] = grad == 0 ? v[at + c] : Math.Clamp(v[at + c] - learningRate * MathF.Sign(grad), -0.5f, 0.5f);
                }
            }
            if (loss < bestLoss)
            {
                bestLoss = loss;
                v.CopyTo(bestV, 0);
            }
            (v, next) = (next, v);
        }
        var levels = new int[cols];
        for (int r = 0; r < rows; r++)
        {
            for (int c = 0; c < cols; c++)
            {
                int i = r * cols + c;
                levels[c] = (int)Math.Clamp(MathF.Round(basis[i] + bestV[i]), minLevel, maxLevel);
            }
            BlockGrid.WriteRowLevels(type, output.Slice(r * rowBytes, rowBytes), levels);
        }
    }
}
