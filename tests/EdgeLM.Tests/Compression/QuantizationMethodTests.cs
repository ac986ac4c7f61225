using EdgeLM.Compression.Methods;
using EdgeLM.Tensors;
using EdgeLM.Tensors.Quantization;

namespace EdgeLM.Tests.Compression;

/// <summary>
/// A linear layer with the activation statistics of a real LLM: per-channel magnitudes spread over an order of
/// magnitude, a handful of outlier channels 10-50x larger, and a shared low-rank component (channels correlate).
/// Calibration and held-out activations are drawn independently from the same distribution.
/// </summary>
public sealed class SyntheticLayer
{
    public int Rows { get; }
    public int Cols { get; }
    public float[] Weights { get; }
    public float[] Calibration { get; }
    public float[] HeldOut { get; }
    public int CalibrationRows { get; }
    public int HeldOutRows { get; }

    public SyntheticLayer(int rows, int cols, int seed, int calibrationRows = 512, int heldOutRows = 256)
    {
        (Rows, Cols, CalibrationRows, HeldOutRows) = (rows, cols, calibrationRows, heldOutRows);
        var rng = new Random(seed);
        float Normal() => (float)(Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble()));
        var magnitude = new float[cols];
        for (int c = 0; c < cols; c++) magnitude[c] = MathF.Exp(0.6f * Normal());
        foreach (int c in Enumerable.Range(0, cols).OrderBy(_ => rng.Next()).Take(4)) magnitude[c] *= 10 + 40 * (float)rng.NextDouble();
        const int Rank = 4;
        var basis = new float[Rank * cols];
        for (int i = 0; i < basis.Length; i++) basis[i] = Normal();
        float[] Sample(int n)
        {
            var x = new float[n * cols];
            var z = new float[Rank];
            for (int s = 0; s < n; s++)
            {
                for (int k = 0; k < Rank; k++) z[k] = Normal();
                for (int c = 0; c < cols; c++)
                {
                    float shared = 0;
                    for (int k = 0; k < Rank; k++) shared += z[k] * basis[k * cols + c];
                    x[s * cols + c] = magnitude[c] * (0.6f * Normal() + 0.4f * shared);
                }
            }
            return x;
        }
        Weights = new float[rows * cols];
        for (int i = 0; i < Weights.Length; i++) Weights[i] = 0.02f * Normal();
        Calibration = Sample(calibrationRows);
        HeldOut = Sample(heldOutRows);
    }

    public float[] MeanSquares() => Stats().MeanSquares();

    public ActivationStats Stats()
    {
        var stats = new ActivationStats(Cols, CalibrationRows);
        stats.Add(Calibration, CalibrationRows);
        return stats;
    }

    public float[] Decode(GgmlType type, byte[] bytes)
    {
        var w = new float[Weights.Length];
        int rowBytes = (int)GgmlTypeInfo.RowBytes(type, Cols);
        for (int r = 0; r < Rows; r++) Dequantize.Row(type, bytes.AsSpan(r * rowBytes, rowBytes), w.AsSpan(r * Cols, Cols));
        return w;
    }

    /// <summary>‖X·(W - Ŵ)ᵀ‖² on the held-out activations.</summary>
    public double HeldOutError(float[] effectiveWeights)
    {
        double total = 0;
        for (int s = 0; s < HeldOutRows; s++)
            for (int r = 0; r < Rows; r++)
            {
                double y = 0;
                for (int c = 0; c < Cols; c++) y += (double)HeldOut[s * Cols + c] * (Weights[r * Cols + c] - effectiveWeights[r * Cols + c]);
                total += y * y;
            }
        return total;
    }

    public double RtnError(GgmlType type) => HeldOutError(Decode(type, Quantize.Rows(type, Weights, Cols)));
}

public class QuantizationMethodTests
{
    public static TheoryData<GgmlType> GridTypes => new(GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.Q8_0, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K);

    [Theory]
    [MemberData(nameof(GridTypes))]
    public void RewritingTheLevelsOfAReferenceBlockReproducesItsValues(GgmlType type)
    {
        var layer = new SyntheticLayer(2, 256, seed: 5, calibrationRows: 1, heldOutRows: 1);
        var row = layer.Weights.AsSpan(0, 256);
        var bytes = Quantize.Rows(type, row, 256);
        var expected = new float[256];
        Dequantize.Row(type, bytes, expected);
        var scale = new float[256];
        var offset = new float[256];
        BlockGrid.ReadRow(type, bytes, 256, scale, offset);
        var (min, max) = BlockGrid.LevelRange(type);
        var levels = new int[256];
        for (int i = 0; i < 256; i++) levels[i] = BlockGrid.NearestLevel(expected[i], scale[i], offset[i], min, max);
        var rewritten = (byte[])bytes.Clone();
        BlockGrid.WriteRowLevels(type, rewritten, levels);
        var actual = new float[256];
        Dequantize.Row(type, rewritten, actual);
        Assert.Equal(expected, actual);
        // Levels that change must change the decoded values: the grid is not degenerate.
        for (int i = 0; i < 256; i++) levels[i] = levels[i] == max ? max - 1 : levels[i] + 1;
        BlockGrid.WriteRowLevels(type, rewritten, levels);
        Dequantize.Row(type, rewritten, actual);
        Assert.True(Enumerable.Range(0, 256).Count(i => actual[i] != expected[i]) > 240);
    }

    [Theory]
    [MemberData(nameof(GridTypes))]
    public void MseIsNeverWorseThanRtnOnAnyBlockAndBetterOverall(GgmlType type)
    {
        var layer = new SyntheticLayer(8, 256, seed: 17, calibrationRows: 256, heldOutRows: 1);
        var importance = layer.MeanSquares();
        var ones = Enumerable.Repeat(1f, 256).ToArray();
        int bs = GgmlTypeInfo.BlockSize(type), bb = GgmlTypeInfo.BlockBytes(type);
        foreach (var weights in new[] { importance, ones })
        {
            double mseTotal = 0, rtnTotal = 0;
            for (int r = 0; r < layer.Rows; r++)
            {
                var x = layer.Weights.AsSpan(r * 256, 256);
                var rtn = Quantize.Rows(type, x, 256);
                var mse = new byte[rtn.Length];
                MseQuantizer.QuantizeRow(type, x, weights == ones ? default : weights, mse);
                for (int b = 0; b < 256 / bs; b++)
                {
                    double e = MseQuantizer.BlockError(type, x.Slice(b * bs, bs), weights.AsSpan(b * bs, bs), mse.AsSpan(b * bb, bb));
                    double e0 = MseQuantizer.BlockError(type, x.Slice(b * bs, bs), weights.AsSpan(b * bs, bs), rtn.AsSpan(b * bb, bb));
                    Assert.True(e <= e0, $"{type} row {r} block {b}: mse {e} > rtn {e0}");
                    mseTotal += e;
                    rtnTotal += e0;
                }
            }
            // The k-quant reference paths already search their scales, so less is left to gain there.
            double margin = type is GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K ? 0.99 : 0.97;
            Assert.True(mseTotal < margin * rtnTotal, $"{type}: mse {mseTotal} vs rtn {rtnTotal}");
        }
    }

    public static TheoryData<GgmlType> LayerTypes => new(GgmlType.Q4_0, GgmlType.Q4_K);

    [Theory]
    [MemberData(nameof(LayerTypes))]
    public void GptqCutsHeldOutOutputErrorAgainstRtn(GgmlType type)
    {
        var layer = new SyntheticLayer(32, 256, seed: 23);
        double rtn = layer.RtnError(type);
        foreach (bool actOrder in new[] { false, true })
        {
            var bytes = new byte[layer.Rows * GgmlTypeInfo.RowBytes(type, layer.Cols)];
            GptqQuantizer.QuantizeLayer(type, layer.Weights, layer.Cols, layer.Stats().Hessian(), bytes, actOrder);
            double gptq = layer.HeldOutError(layer.Decode(type, bytes));
            Assert.True(gptq < 0.8 * rtn, $"{type} act-order {actOrder}: gptq {gptq:G4} vs rtn {rtn:G4}");
        }
    }

    [Theory]
    [MemberData(nameof(LayerTypes))]
    public void AwqCutsHeldOutOutputErrorAgainstRtn(GgmlType type)
    {
        var layer = new SyntheticLayer(32, 256, seed: 29);
        var stats = layer.Stats();
        var s = AwqQuantizer.SearchScales([new AwqQuantizer.GroupMember(layer.Weights, type)], layer.Cols, stats.MeanAbs(),
            stats.Samples, stats.SampleCount, out float alpha);
        Assert.True(alpha > 0);
        double awq = layer.HeldOutError(AwqQuantizer.QuantizeScaled(layer.Weights, layer.Cols, type, s));
        double rtn = layer.RtnError(type);
        Assert.True(awq < 0.85 * rtn, $"{type}: awq {awq:G4} (alpha {alpha}) vs rtn {rtn:G4}");
    }

    [Theory]
    [MemberData(nameof(LayerTypes))]
    public void AutoRoundCutsHeldOutOutputErrorAgainstRtn(GgmlType type)
    {
        var layer = new SyntheticLayer(16, 256, seed: 31);
        var stats = layer.Stats();
        var gram = ActivationStats.Gram(stats.Samples, stats.SampleCount, layer.Cols, 1.0 / stats.SampleCount);
        var bytes = new byte[layer.Rows * GgmlTypeInfo.RowBytes(type, layer.Cols)];
        AutoRoundQuantizer.QuantizeLayer(type, layer.Weights, layer.Cols, gram, bytes, steps: 200, learningRate: 1f / 200);
        double autoround = layer.HeldOutError(layer.Decode(type, bytes));
        double rtn = layer.RtnError(type);
        Assert.True(autoround < 0.85 * rtn, $"{type}: autoround {autoround:G4} vs rtn {rtn:G4}");
    }

    [Fact]
    public void HessianIsTwiceTheMeanOuterProductOfTheInputs()
    {
        var x = new float[] { 1, 2, -1, 0.5f, 3, 4 }; // 3 rows of 2
        var stats = new ActivationStats(2, 8);
        stats.Add(x, 3);
        var h = stats.Hessian();
        double h00 = 2.0 / 3 * (1 + 1 + 9), h01 = 2.0 / 3 * (2 - 0.5 + 12), h11 = 2.0 / 3 * (4 + 0.25 + 16);
        Assert.Equal(h00, h[0], 9);
        Assert.Equal(h01, h[1], 9);
        Assert.Equal(h01, h[2], 9);
        Assert.Equal(h11, h[3], 9);
        Assert.Equal([(float)(11.0 / 3), (float)(20.25 / 3)], stats.MeanSquares());
    }
}
