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
        var stats = calibration.ForWeight(tensor.TensorName);
        if (stats == null || stats.Width != tensor.RowLength || stats.SampleCount == 0 || !BlockGrid.IsSupported(tensor.TargetType))
        {
            Quantize.Rows(tensor.TargetType, rows, tensor.RowLength, output);
            return;
        }
        QuantizeLayer(tensor.TargetType, rows, tensor.RowLength, stats.Hessian(), output, actOrder, dampening, tensor.TensorName);
    }

    /// <summary>
    /// Quantizes the weights <paramref name="w"/> (rows x cols, row-major, one row per output channel) given the
    /// Hessian <paramref name="hessian"/> (cols x cols) of the layer's inputs; writes rows x RowBytes(type, cols) bytes.
    /// </summary>
    public static void QuantizeLayer(GgmlType type, ReadOnlySpan<float> w, int cols, double[] hessian, Span<byte> output,
        bool actOrder = false, double dampening = 0.01, string name = "layer")
    {
        if (!BlockGrid.IsSupported(type)) throw new NotSupportedException($"gptq cannot quantize to {type}");
        int bs = GgmlTypeInfo.BlockSize(type);
        if (cols % bs != 0) throw new ArgumentException($"{name}: {cols} columns is not a multiple of the {type} block size {bs}");
        if (hessian.Length != (long)cols * cols) throw new ArgumentException($"{name}: Hessian of {hessian.Length} values for {cols} columns");
        int rows = w.Length / cols;
        int rowBytes = checked((int)GgmlTypeInfo.RowBytes(type, cols));
        var (minLevel, maxLevel) = BlockGrid.LevelRange(type);

        var h = (double[])hessian.Clone();
        var weights = w.ToArray();
        // Inputs that never fire carry no information; GPTQ zeroes their weights and keeps H invertible.
        double meanDiag = 0;
        for (int i = 0; i < cols; i++)
        {
            if (h[(long)i * cols + i] == 0)
            {
                h[(long)i * cols + i] = 1;
                for (int r = 0; r < rows; r++) weights[(long)r * cols + i] = 0;
            }
            meanDiag += h[(long)i * cols + i];
        }
        meanDiag /= cols;
        for (int i = 0; i < cols; i++) h[(long)i * cols + i] += dampening * meanDiag;

        // perm[k] = original column processed k-th.
        var perm = Enumerable.Range(0, cols).ToArray();
        if (actOrder) perm = perm.OrderByDescending(i => h[(long)i * cols + i]).ThenBy(i => i).ToArray();

        var scale = new float[(long)rows * cols];
        var offset = new float[(long)rows * cols];
        var levels = new int[(long)rows * cols];
        // The grids of static groups (act-order) come from the original weights, before any compensation.
        if (actOrder)
            for (int r = 0; r < rows; r++)
                BlockGrid.ReferenceGrid(type, weights.AsSpan(r * cols, cols), output.Slice(r * rowBytes, rowBytes),
                    scale.AsSpan(r * cols, cols), offset.AsSpan(r * cols, cols));

        // Work in permuted column order: wp[r, k] = weights[r, perm[k]].
        var wp = new float[(long)rows * cols];
        var hp = new double[(long)cols * cols];
        for (int r = 0; r < rows; r++)
            for (int k = 0; k < cols; k++) wp[(long)r * cols + k] = weights[(long)r * cols + perm[k]];
        for (int i = 0; i < cols; i++)
            for (int j = 0; j < cols; j++) hp[(long)i * cols + j] = h[(long)perm[i] * cols + perm[j]];
        var upperD = LinearAlgebra.UpperCholeskyOfInverse(hp, cols, name);
        var upper = new float[upperD.Length];
        for (long i = 0; i < upperD.Length; i++) upper[i] = (float)upperD[i];

        var err = new float[(long)rows * bs];
        var blockValues = new float[cols];
        for (int start = 0; start < cols; start += bs)
        {
            int end = start + bs;
            if (!actOrder)
            {
                // Columns [start, end) are exactly format block start/bs of every row: choose its scales now.
                for (int r = 0; r < rows; r++)
                {
                    var block = wp.AsSpan(r * cols + start, bs);
                    var bytes = output.Slice(r * rowBytes + start / bs * GgmlTypeInfo.BlockBytes(type), GgmlTypeInfo.BlockBytes(type));
                    Quantize.Row(type, block, bytes);
                    BlockGrid.Read(type, bytes, scale.AsSpan(r * cols + start, bs), offset.AsSpan(r * cols + start, bs));
                }
            }
            for (int k = start; k < end; k++)
            {
                int col = perm[k];
                float d = upper[(long)k * cols + k];
                var uRow = upper.AsSpan(k * cols + k + 1, end - k - 1);
                for (int r = 0; r < rows; r++)
                {
                    long at = (long)r * cols + k;
                    long gridAt = (long)r * cols + (actOrder ? col : k);
                    float value = wp[at];
                    int l = BlockGrid.NearestLevel(value, scale[gridAt], offset[gridAt], minLevel, maxLevel);
                    levels[(long)r * cols + col] = l;
                    float q = scale[gridAt] * l + offset[gridAt];
                    float e = (value - q) / d;
                    err[(long)r * bs + (k - start)] = e;
                    LinearAlgebra.SubtractScaled(wp.AsSpan((int)at + 1, end - k - 1), uRow, e);
                }
            }
            if (end < cols)
                for (int r = 0; r < rows; r++)
                {
                    var rest = wp.AsSpan(r * cols + end, cols - end);
                    for (int k = start; k < end; k++)
                        LinearAlgebra.SubtractScaled(rest, upper.AsSpan(k * cols + end, cols - end), err[(long)r * bs + (k - start)]);
                }
        }
        for (int r = 0; r < rows; r++)
            BlockGrid.WriteRowLevels(type, output.Slice(r * rowBytes, rowBytes), levels.AsSpan(r * cols, cols));
    }
}
