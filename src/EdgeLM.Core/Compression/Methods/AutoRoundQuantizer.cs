using EdgeLM.Tensors;
using EdgeLM.Tensors.Quantization;

namespace EdgeLM.Compression.Methods;

/// <summary>
/// AutoRound (Cheng et al. 2023): keeps the scales the format's quantizer chooses and learns, per weight, a rounding
/// offset V in [-0.5, 0.5] (level = round(w/scale + V)) by signed gradient descent on the layer's squared output error
/// over calibration inputs, with the straight-through estimator for the rounding. The loss is tr(E·G·Eᵀ) with
/// E = W - Ŵ and G = XᵀX/n, a sum of independent per-row terms eᵣ·G·eᵣ, so every output row is optimized on its own
/// (in parallel) and keeps the best V it has seen; V = 0 (rtn's levels) is the starting point, so no row is worse
/// than rtn on the calibration data. The gradient G·e is formed once per row and then updated only where a level
/// changed (a step moves V by the learning rate, so few levels change), so a step costs cols·(1 + changed levels)
/// per row instead of cols². Clipping factors are not learned (the format's scale search stays in charge of them).
/// </summary>
public sealed class AutoRoundQuantizer(CalibrationSet calibration, int steps = AutoRoundQuantizer.DefaultSteps, float? learningRate = null) : ITensorQuantizer
{
    /// <summary>The paper's step count; the learning rate defaults to 1/steps, so V can cross its whole range once.</summary>
    public const int DefaultSteps = 200;

    /// <summary>Rows whose initial G·e products share each row of G read from memory.</summary>
    private const int RowGroup = 8;

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
        var gram = ActivationStats.Gram(stats.Samples, stats.SampleCount, stats.Width, 1.0 / stats.SampleCount, tensor.Threads);
        QuantizeLayer(tensor.TargetType, rows, tensor.RowLength, gram, output, steps, learningRate ?? 1f / steps, tensor.Threads);
    }

    /// <summary>
    /// Quantizes <paramref name="w"/> (rows x cols) minimizing tr(E·G·Eᵀ) for the input Gram matrix
    /// <paramref name="gram"/> (cols x cols, XᵀX up to a constant factor). The bytes do not depend on <paramref name="threads"/>.
    /// </summary>
    public static void QuantizeLayer(GgmlType type, ReadOnlySpan<float> w, int cols, double[] gram, Span<byte> output, int steps,
        float learningRate, int threads = 1)
    {
        if (!BlockGrid.IsSupported(type)) throw new NotSupportedException($"autoround cannot quantize to {type}");
        if (gram.Length != (long)cols * cols) throw new ArgumentException($"Gram matrix of {gram.Length} values for {cols} columns");
        if (steps < 0) throw new ArgumentOutOfRangeException(nameof(steps), $"autoround steps must be >= 0, got {steps}");
        int rows = w.Length / cols;
        int rowBytes = checked((int)GgmlTypeInfo.RowBytes(type, cols));
        var (minLevel, maxLevel) = BlockGrid.LevelRange(type);
        var g = new float[gram.Length];
        LinearAlgebra.For(cols, threads, i =>
        {
            for (int j = 0; j < cols; j++) g[(long)i * cols + j] = (float)gram[(long)i * cols + j];
        });
        var weights = w.ToArray();
        var bytes = output.ToArray();

        LinearAlgebra.For((rows + RowGroup - 1) / RowGroup, threads, group =>
        {
            int r0 = group * RowGroup, n = Math.Min(RowGroup, rows - r0);
            var scale = new float[n * cols];
            var offset = new float[n * cols];
            var basis = new float[n * cols];
            var levels = new int[n * cols];
            var error = new float[n * cols];
            var gradient = new float[n * cols];
            for (int r = 0; r < n; r++)
            {
                int at = r * cols;
                var row = weights.AsSpan((r0 + r) * cols, cols);
                BlockGrid.ReferenceGrid(type, row, bytes.AsSpan((r0 + r) * rowBytes, rowBytes), scale.AsSpan(at, cols), offset.AsSpan(at, cols));
                for (int c = 0; c < cols; c++)
                {
                    // basis = (w - offset) / scale, the unrounded level; V shifts it before rounding.
                    basis[at + c] = scale[at + c] != 0 ? (row[c] - offset[at + c]) / scale[at + c] : 0;
                    levels[at + c] = (int)Math.Clamp(MathF.Round(basis[at + c]), minLevel, maxLevel);
                    error[at + c] = row[c] - (scale[at + c] * levels[at + c] + offset[at + c]);
                }
            }
            // G·e for the group's rows in one sweep over G (symmetric, so row c of G is column c).
            for (int c = 0; c < cols; c++)
            {
                var gc = g.AsSpan(c * cols, cols);
                for (int r = 0; r < n; r++) gradient[r * cols + c] = LinearAlgebra.Dot(gc, error.AsSpan(r * cols, cols));
            }
            var v = new float[cols];
            var best = new int[cols];
            for (int r = 0; r < n; r++)
            {
                int at = r * cols;
                Array.Clear(v);
                var rowLevels = levels.AsSpan(at, cols);
                var rowError = error.AsSpan(at, cols);
                var rowGradient = gradient.AsSpan(at, cols);
                var rowW = weights.AsSpan((r0 + r) * cols, cols);
                rowLevels.CopyTo(best);
                double bestLoss = LinearAlgebra.Dot(rowGradient, rowError);
                for (int step = 0; step < steps; step++)
                {
                    // dL/dV = -2 (G·e) ⊙ scale (straight-through rounding); only its sign is used.
                    for (int c = 0; c < cols; c++)
                    {
                        float grad = -rowGradient[c] * scale[at + c];
                        if (grad != 0) v[c] = Math.Clamp(v[c] - learningRate * MathF.Sign(grad), -0.5f, 0.5f);
                    }
                    for (int c = 0; c < cols; c++)
                    {
                        int l = (int)Math.Clamp(MathF.Round(basis[at + c] + v[c]), minLevel, maxLevel);
                        if (l == rowLevels[c]) continue;
                        rowLevels[c] = l;
                        float e = rowW[c] - (scale[at + c] * l + offset[at + c]);
                        float change = e - rowError[c];
                        rowError[c] = e;
                        LinearAlgebra.SubtractScaled(rowGradient, g.AsSpan(c * cols, cols), -change);
                    }
                    double loss = LinearAlgebra.Dot(rowGradient, rowError);
                    if (loss < bestLoss)
                    {
                        bestLoss = loss;
                        rowLevels.CopyTo(best);
                    }
                }
                BlockGrid.WriteRowLevels(type, bytes.AsSpan((r0 + r) * rowBytes, rowBytes), best);
            }
        });
        bytes.CopyTo(output);
    }
}
