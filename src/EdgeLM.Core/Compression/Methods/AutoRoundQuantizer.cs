using System.Runtime.Intrinsics;
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
/// changed (a step moves V by the learning rate, so a few percent of the levels change), so a step costs
/// cols·(1 + changed levels) per row instead of cols². Rows run in lockstep blocks over G stored in column tiles: the
/// update of one 32-column slice of a row's gradient by all of the row's changes accumulates in registers
/// (<see cref="LinearAlgebra.AccumulateTileRows"/>), and the block's rows share every tile of G while it is in cache.
/// Each row's arithmetic is independent of the blocking and the thread count. Clipping factors are not learned (the
/// format's scale search stays in charge of them).
/// </summary>
public sealed class AutoRoundQuantizer(CalibrationSet calibration, int steps = AutoRoundQuantizer.DefaultSteps, float? learningRate = null) : ITensorQuantizer
{
    /// <summary>The paper's step count; the learning rate defaults to 1/steps, so V can cross its whole range once.</summary>
    public const int DefaultSteps = 200;

    /// <summary>
    /// Rows optimized in lockstep: each column tile of G is swept once per step for all of them, so it is read from
    /// memory once and then served from cache to every row of the block.
    /// </summary>
    private const int RowBlock = 128;

    public string Name => "autoround";
    public bool RowsAreIndependent => false;

    public void QuantizeRows(TensorQuantizationContext tensor, long firstRow, ReadOnlySpan<float> rows, Span<byte> output)
    {
        var stats = calibration.ForCalibratedQuantization(tensor);
        if (stats == null)
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
        float learningRate, int threads = 1) =>
        QuantizeLayer(type, w, cols, gram, output, steps, learningRate, threads, RowBlock);

    /// <summary>
    /// <see cref="QuantizeLayer(GgmlType, ReadOnlySpan{float}, int, double[], Span{byte}, int, float, int)"/> with a
    /// chosen lockstep block (tests: the bytes must not depend on it).
    /// </summary>
    internal static void QuantizeLayer(GgmlType type, ReadOnlySpan<float> w, int cols, double[] gram, Span<byte> output, int steps,
        float learningRate, int threads, int rowBlock)
    {
        if (!BlockGrid.IsSupported(type)) throw new NotSupportedException($"autoround cannot quantize to {type}");
        if (gram.Length != (long)cols * cols) throw new ArgumentException($"Gram matrix of {gram.Length} values for {cols} columns");
        if (steps < 0) throw new ArgumentOutOfRangeException(nameof(steps), $"autoround steps must be >= 0, got {steps}");
        int rows = w.Length / cols;
        int rowBytes = checked((int)GgmlTypeInfo.RowBytes(type, cols));
        var (minLevel, maxLevel) = BlockGrid.LevelRange(type);
        if (cols % LinearAlgebra.TileWidth != 0) throw new ArgumentException($"autoround needs rows of a multiple of {LinearAlgebra.TileWidth} values, got {cols}");
        var g = LinearAlgebra.ToColumnTiles(gram, cols, threads);
        var weights = w.ToArray();
        var bytes = output.ToArray();
        LinearAlgebra.For((rows + rowBlock - 1) / rowBlock, threads, block =>
            OptimizeBlock(type, weights, bytes, g, cols, rowBytes, block * rowBlock, Math.Min(rowBlock, rows - block * rowBlock),
                steps, learningRate, minLevel, maxLevel));
        bytes.CopyTo(output);
    }

    private static void OptimizeBlock(GgmlType type, float[] weights, byte[] bytes, float[] g, int cols, int rowBytes, int r0, int n,
        int steps, float learningRate, int minLevel, int maxLevel)
    {
        var scale = new float[n * cols];
        var offset = new float[n * cols];
        var basis = new float[n * cols];
        var levels = new float[n * cols];
        var error = new float[n * cols];
        for (int r = 0; r < n; r++)
        {
            int at = r * cols;
            var row = weights.AsSpan((r0 + r) * cols, cols);
            BlockGrid.ReferenceGrid(type, row, bytes.AsSpan((r0 + r) * rowBytes, rowBytes), scale.AsSpan(at, cols), offset.AsSpan(at, cols));
            for (int c = 0; c < cols; c++)
            {
                // basis = (w - offset) / scale, the unrounded level; V shifts it before rounding.
                basis[at + c] = scale[at + c] != 0 ? (row[c] - offset[at + c]) / scale[at + c] : 0;
                levels[at + c] = Math.Clamp(MathF.Round(basis[at + c]), minLevel, maxLevel);
                error[at + c] = row[c] - (scale[at + c] * levels[at + c] + offset[at + c]);
            }
        }
        // G·e: every column is a "change" from e = 0.
        var gradient = new float[n * cols];
        var changeColumn = new int[n * cols];
        var changeAmount = new float[n * cols];
        var rowChanges = new int[n + 1];
        for (int r = 0; r < n; r++)
        {
            for (int c = 0; c < cols; c++) changeColumn[r * cols + c] = c;
            rowChanges[r + 1] = (r + 1) * cols;
        }
        ApplyChanges(g, gradient, cols, n, rowChanges, changeColumn, error);

        var v = new float[n * cols];
        var best = levels.ToArray();
        var bestLoss = new double[n];
        for (int r = 0; r < n; r++) bestLoss[r] = LinearAlgebra.Dot(gradient.AsSpan(r * cols, cols), error.AsSpan(r * cols, cols));
        for (int step = 0; step < steps; step++)
        {
            int changes = 0;
            for (int r = 0; r < n; r++)
            {
                int at = r * cols;
                changes += Step(new RowState(weights.AsSpan((r0 + r) * cols, cols), scale.AsSpan(at, cols), offset.AsSpan(at, cols),
                    basis.AsSpan(at, cols), gradient.AsSpan(at, cols), v.AsSpan(at, cols), levels.AsSpan(at, cols), error.AsSpan(at, cols)),
                    learningRate, minLevel, maxLevel, changeColumn.AsSpan(changes), changeAmount.AsSpan(changes));
                rowChanges[r + 1] = changes;
            }
            ApplyChanges(g, gradient, cols, n, rowChanges, changeColumn, changeAmount);
            for (int r = 0; r < n; r++)
            {
                double loss = LinearAlgebra.Dot(gradient.AsSpan(r * cols, cols), error.AsSpan(r * cols, cols));
                if (loss < bestLoss[r])
                {
                    bestLoss[r] = loss;
                    levels.AsSpan(r * cols, cols).CopyTo(best.AsSpan(r * cols, cols));
                }
            }
        }
        var rowLevels = new int[cols];
        for (int r = 0; r < n; r++)
        {
            for (int c = 0; c < cols; c++) rowLevels[c] = (int)best[r * cols + c];
            BlockGrid.WriteRowLevels(type, bytes.AsSpan((r0 + r) * rowBytes, rowBytes), rowLevels);
        }
    }

    /// <summary>
    /// gradient[r] += Σ_k amount[k]·G[column[k]] over row r's changes (columns ascending), piece by piece of G's
    /// tiled layout: each piece is read from memory once and serves every row of the block from cache.
    /// </summary>
    private static void ApplyChanges(float[] g, float[] gradient, int cols, int n, int[] rowChanges, int[] changeColumn, float[] changeAmount)
    {
        const int tw = LinearAlgebra.TileWidth, tr = LinearAlgebra.TileRows;
        int bands = (cols + tr - 1) / tr;
        // bandChanges[r * (bands + 1) + b]: row r's first change in band b.
        Span<int> bandChanges = n * (bands + 1) <= 4096 ? stackalloc int[n * (bands + 1)] : new int[n * (bands + 1)];
        for (int r = 0; r < n; r++)
        {
            int k = rowChanges[r];
            for (int b = 0; b <= bands; b++)
            {
                while (k < rowChanges[r + 1] && changeColumn[k] < b * tr) k++;
                bandChanges[r * (bands + 1) + b] = b == bands ? rowChanges[r + 1] : k;
            }
        }
        for (int b = 0; b < bands; b++)
        {
            int first = b * tr, bandRows = Math.Min(tr, cols - first);
            for (int t = 0; t < cols / tw; t++)
            {
                long at = LinearAlgebra.TileOffset(cols, first, t);
                var tile = g.AsSpan((int)at, bandRows * tw);
                // The rows touch the piece at scattered places, too irregular for the hardware prefetcher: the next
                // piece (the array is laid out piece after piece) is prefetched in slices between the rows.
                long next = at + bandRows * tw, nextEnd = Math.Min(g.LongLength, next + (long)tr * tw);
                long slice = ((nextEnd - next + n - 1) / n + 15) & ~15L;
                for (int r = 0; r < n; r++)
                {
                    Prefetch(g, next + r * slice, Math.Min(nextEnd, next + (r + 1) * slice));
                    int k0 = bandChanges[r * (bands + 1) + b], k1 = bandChanges[r * (bands + 1) + b + 1];
                    if (k1 > k0)
                        LinearAlgebra.AccumulateTileRows(gradient.AsSpan(r * cols + t * tw, tw), tile, changeColumn.AsSpan(k0, k1 - k0),
                            changeAmount.AsSpan(k0, k1 - k0), first);
                }
            }
        }
    }

    private static unsafe void Prefetch(float[] a, long from, long to)
    {
        if (!System.Runtime.Intrinsics.X86.Sse.IsSupported || from >= to) return;
        fixed (float* p = a)
            for (long i = from; i < to; i += 16) System.Runtime.Intrinsics.X86.Sse.Prefetch0(p + i);
    }

    /// <summary>One row's optimization state (spans of cols values each); levels are whole numbers stored as floats.</summary>
    internal readonly ref struct RowState(ReadOnlySpan<float> weights, ReadOnlySpan<float> scale, ReadOnlySpan<float> offset,
        ReadOnlySpan<float> basis, ReadOnlySpan<float> gradient, Span<float> v, Span<float> levels, Span<float> error)
    {
        public readonly ReadOnlySpan<float> Weights = weights, Scale = scale, Offset = offset, Basis = basis, Gradient = gradient;
        public readonly Span<float> V = v, Levels = levels, Error = error;
    }

    /// <summary>
    /// One signed-gradient step of a row: moves V against the sign of dL/dV = -2 (G·e) ⊙ scale (straight-through
    /// rounding), re-rounds, and records each changed level's column and error change. Returns the number of changes.
    /// </summary>
    internal static int Step(RowState row, float learningRate, int minLevel, int maxLevel, Span<int> changeColumn, Span<float> changeAmount)
    {
        int cols = row.V.Length, changes = 0, c = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var zero = Vector256<float>.Zero;
            var one = Vector256<float>.One;
            var lr = Vector256.Create(learningRate);
            var lowV = Vector256.Create(-0.5f);
            var highV = Vector256.Create(0.5f);
            var lowL = Vector256.Create((float)minLevel);
            var highL = Vector256.Create((float)maxLevel);
            for (; c <= cols - Vector256<float>.Count; c += Vector256<float>.Count)
            {
                var grad = -Vector256.Create(row.Gradient[c..]) * Vector256.Create(row.Scale[c..]);
                var sign = Vector256.ConditionalSelect(Vector256.GreaterThan(grad, zero), one, zero)
                    - Vector256.ConditionalSelect(Vector256.LessThan(grad, zero), one, zero);
                var v = Vector256.Min(Vector256.Max(Vector256.Create(row.V[c..]) - lr * sign, lowV), highV);
                v.CopyTo(row.V[c..]);
                var level = Vector256.Min(Vector256.Max(Vector256.Round(Vector256.Create(row.Basis[c..]) + v), lowL), highL);
                uint moved = Vector256.ExtractMostSignificantBits(~Vector256.Equals(level, Vector256.Create(row.Levels[c..])));
                while (moved != 0)
                {
                    int i = c + System.Numerics.BitOperations.TrailingZeroCount(moved);
                    moved &= moved - 1;
                    Move(row, i, level.GetElement(i - c), changeColumn, changeAmount, ref changes);
                }
            }
        }
        return StepScalar(row, c, learningRate, minLevel, maxLevel, changeColumn, changeAmount, changes);
    }

    /// <summary>The scalar reference of <see cref="Step"/> from column <paramref name="from"/> on (same arithmetic element by element).</summary>
    internal static int StepScalar(RowState row, int from, float learningRate, int minLevel, int maxLevel, Span<int> changeColumn,
        Span<float> changeAmount, int changes = 0)
    {
        for (int c = from; c < row.V.Length; c++)
        {
            float grad = -row.Gradient[c] * row.Scale[c];
            float sign = grad > 0 ? 1 : grad < 0 ? -1 : 0;
            row.V[c] = Math.Min(Math.Max(row.V[c] - learningRate * sign, -0.5f), 0.5f);
            float level = Math.Min(Math.Max(MathF.Round(row.Basis[c] + row.V[c]), minLevel), maxLevel);
            if (level != row.Levels[c]) Move(row, c, level, changeColumn, changeAmount, ref changes);
        }
        return changes;
    }

    private static void Move(RowState row, int c, float level, Span<int> changeColumn, Span<float> changeAmount, ref int changes)
    {
        row.Levels[c] = level;
        float e = row.Weights[c] - (row.Scale[c] * level + row.Offset[c]);
        changeColumn[changes] = c;
        changeAmount[changes++] = e - row.Error[c];
        row.Error[c] = e;
    }
}
