using EdgeLM.Tensors;
using EdgeLM.Tensors.Quantization;

namespace EdgeLM.Compression.Methods;

/// <summary>
/// GPTQ (Frantar et al. 2022): quantizes a linear layer column by column (input channel by input channel), pushing each
/// column's rounding error onto the columns not yet quantized through the inverse Hessian of the layer's squared
/// output error, H = 2/n·XᵀX from calibration inputs, dampened by 1% of its mean diagonal. Columns are processed in
/// lazy batches of one format block (32 or 256 columns): at the start of a block the format's own quantizer chooses
/// the block's scales from the error-compensated weights, then each column is rounded to the nearest level of that
/// grid. With act-order, columns go in order of decreasing H diagonal and every block's scales are chosen up front
/// from the original weights (static groups, since a block's columns are then no longer processed together).
/// Tensors without calibration inputs (embedding, output head) and formats without rewritable levels use rtn.
/// </summary>
public sealed class GptqQuantizer(CalibrationSet calibration, bool actOrder = false, double dampening = 0.01) : ITensorQuantizer
{
    public string Name => "gptq";
    public bool RowsAreIndependent => false;

    public void QuantizeRows(TensorQuantizationContext tensor, long firstRow, ReadOnlySpan<float> rows, Span<byte> output)
    {
        var stats = calibration.ForCalibratedQuantization(tensor);
        if (stats == null)
        {
            Quantize.Rows(tensor.TargetType, rows, tensor.RowLength, output);
            return;
        }
        QuantizeLayer(tensor.TargetType, rows, tensor.RowLength, stats.Hessian(tensor.Threads), output, actOrder, dampening, tensor.TensorName, tensor.Threads);
    }

    /// <summary>Columns of the trailing update done per pass: the block's rows of U for them stay in L2.</summary>
    private const int UpdateTile = 512;

    /// <summary>
    /// Quantizes the weights <paramref name="w"/> (rows x cols, row-major, one row per output channel) given the
    /// Hessian <paramref name="hessian"/> (cols x cols) of the layer's inputs; writes rows x RowBytes(type, cols) bytes.
    /// Rows are independent once U is known, so they are split over <paramref name="threads"/>; the bytes are the same
    /// for any thread count.
    /// </summary>
    public static void QuantizeLayer(GgmlType type, ReadOnlySpan<float> w, int cols, double[] hessian, Span<byte> output,
        bool actOrder = false, double dampening = 0.01, string name = "layer", int threads = 1)
    {
        if (!BlockGrid.IsSupported(type)) throw new NotSupportedException($"gptq cannot quantize to {type}");
        int bs = GgmlTypeInfo.BlockSize(type);
        if (cols % bs != 0) throw new ArgumentException($"{name}: {cols} columns is not a multiple of the {type} block size {bs}");
        if (hessian.Length != (long)cols * cols) throw new ArgumentException($"{name}: Hessian of {hessian.Length} values for {cols} columns");
        int rows = w.Length / cols;
        int rowBytes = checked((int)GgmlTypeInfo.RowBytes(type, cols));
        int blockBytes = GgmlTypeInfo.BlockBytes(type);

        var weights = w.ToArray();
        // Inputs that never fire carry no information; GPTQ zeroes their weights and keeps H invertible.
        var diagonal = new double[cols];
        double meanDiag = 0;
        for (int i = 0; i < cols; i++)
        {
            diagonal[i] = hessian[(long)i * cols + i];
            if (diagonal[i] == 0)
            {
                diagonal[i] = 1;
                for (int r = 0; r < rows; r++) weights[(long)r * cols + i] = 0;
            }
            meanDiag += diagonal[i];
        }
        meanDiag /= cols;

        // perm[k] = original column processed k-th.
        var perm = Enumerable.Range(0, cols).ToArray();
        if (actOrder) perm = perm.OrderByDescending(i => diagonal[i]).ThenBy(i => i).ToArray();

        // Work in permuted column order: hp[i, j] = H[perm[i], perm[j]], dampened.
        var hp = new double[(long)cols * cols];
        LinearAlgebra.For(cols, threads, i =>
        {
            var dst = hp.AsSpan(i * cols, cols);
            long from = (long)perm[i] * cols;
            for (int j = 0; j < cols; j++) dst[j] = hessian[from + perm[j]];
            dst[i] = diagonal[perm[i]] + dampening * meanDiag;
        });
        var upper = LinearAlgebra.UpperCholeskyOfInverse(hp, cols, name, threads);

        var bytes = output.ToArray();
        var (minLevel, maxLevel) = BlockGrid.LevelRange(type);
        int rowGroup = Math.Max(1, Math.Min(16, rows));
        LinearAlgebra.For((rows + rowGroup - 1) / rowGroup, threads, g =>
        {
            int r0 = g * rowGroup, n = Math.Min(rowGroup, rows - r0);
            var wp = new float[n * cols];
            var scale = new float[n * cols];
            var offset = new float[n * cols];
            var levels = new int[cols];
            var err = new float[n * bs];
            for (int r = 0; r < n; r++)
                for (int k = 0; k < cols; k++) wp[r * cols + k] = weights[(long)(r0 + r) * cols + perm[k]];
            // The grids of static groups (act-order) come from the original weights, before any compensation.
            if (actOrder)
                for (int r = 0; r < n; r++)
                    BlockGrid.ReferenceGrid(type, weights.AsSpan((r0 + r) * cols, cols), bytes.AsSpan((r0 + r) * rowBytes, rowBytes),
                        scale.AsSpan(r * cols, cols), offset.AsSpan(r * cols, cols));
            for (int start = 0; start < cols; start += bs)
            {
                int end = start + bs;
                if (!actOrder)
                {
                    // Columns [start, end) are exactly format block start/bs of every row: choose its scales now.
                    for (int r = 0; r < n; r++)
                    {
                        var block = wp.AsSpan(r * cols + start, bs);
                        var blockOut = bytes.AsSpan((r0 + r) * rowBytes + start / bs * blockBytes, blockBytes);
                        Quantize.Row(type, block, blockOut);
                        BlockGrid.Read(type, blockOut, scale.AsSpan(r * cols + start, bs), offset.AsSpan(r * cols + start, bs));
                    }
                }
                for (int r = 0; r < n; r++)
                    for (int k = start; k < end; k++)
                    {
                        int at = r * cols + k;
                        int gridAt = r * cols + (actOrder ? perm[k] : k);
                        float value = wp[at];
                        int l = BlockGrid.NearestLevel(value, scale[gridAt], offset[gridAt], minLevel, maxLevel);
                        float q = scale[gridAt] * l + offset[gridAt];
                        wp[at] = l; // the column is final: its slot keeps the level from here on
                        float e = (value - q) / upper[(long)k * cols + k];
                        err[r * bs + (k - start)] = e;
                        LinearAlgebra.SubtractScaled(wp.AsSpan(at + 1, end - k - 1), upper.AsSpan(k * cols + k + 1, end - k - 1), e);
                    }
                // Lazy batch: the block's errors reach the remaining columns in tiles whose rows of U stay cached.
                for (int tile = end; tile < cols; tile += UpdateTile)
                {
                    int width = Math.Min(UpdateTile, cols - tile);
                    for (int r = 0; r < n; r++)
                    {
                        var rest = wp.AsSpan(r * cols + tile, width);
                        for (int k = start; k < end; k++)
                            LinearAlgebra.SubtractScaled(rest, upper.AsSpan(k * cols + tile, width), err[r * bs + (k - start)]);
                    }
                }
            }
            for (int r = 0; r < n; r++)
            {
                for (int k = 0; k < cols; k++) levels[perm[k]] = (int)wp[r * cols + k];
                BlockGrid.WriteRowLevels(type, bytes.AsSpan((r0 + r) * rowBytes, rowBytes), levels);
            }
        });
        bytes.CopyTo(output);
    }
}
