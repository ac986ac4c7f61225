using EdgeLM.Tensors;
using EdgeLM.Tensors.Quantization;

namespace EdgeLM.Tests.Quantization;

public class RoundTripTests
{
    private const int RowLength = 1024;
    private const int Rows = 4;

    /// <summary>
    /// Weight-like test data: Gaussian values with a per-row scale, a few outliers, one all-zero block, one constant
    /// block and one block of tiny values (so every degenerate path of the scale searches is exercised).
    /// </summary>
    internal static float[] TestData(int seed, int rows = Rows, int rowLength = RowLength, bool outliers = true, bool degenerateBlocks = true)
    {
        var random = new Random(seed);
        var x = new float[rows * rowLength];
        for (int r = 0; r < rows; r++)
        {
            float rowScale = (float)Math.Pow(10, random.NextDouble() * 4 - 3); // 1e-3 .. 10
            for (int i = 0; i < rowLength; i++)
            {
                double u1 = 1.0 - random.NextDouble(), u2 = random.NextDouble();
                double gaussian = Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
                x[r * rowLength + i] = (float)(gaussian * rowScale);
            }
            if (outliers)
                for (int k = 0; k < 3; k++) x[r * rowLength + random.Next(rowLength)] *= 12;
        }
        if (degenerateBlocks)
        {
            x.AsSpan(256, 256).Clear();                                // all-zero super-block
            if (rows > 1) x.AsSpan(rowLength + 512, 256).Fill(0.75f);  // constant super-block
            if (rows > 2) for (int i = 0; i < 256; i++) x[2 * rowLength + 768 + i] *= 1e-6f; // tiny values
        }
        return x;
    }

    private static float[] RoundTrip(GgmlType type, float[] x, int rowLength = RowLength)
    {
        byte[] q = Quantize.Rows(type, x, rowLength);
        Assert.Equal(x.Length / rowLength * GgmlTypeInfo.RowBytes(type, rowLength), q.Length);
        var y = new float[x.Length];
        long rowBytes = GgmlTypeInfo.RowBytes(type, rowLength);
        for (int r = 0; r < x.Length / rowLength; r++)
            Dequantize.Row(type, q.AsSpan((int)(r * rowBytes), (int)rowBytes), y.AsSpan(r * rowLength, rowLength));
        return y;
    }

    /// <summary>Relative RMS error per row, averaged over rows, so that rows of very different scale weigh the same.</summary>
    private static double RelativeRmsError(float[] x, float[] y, int rowLength = RowLength)
    {
        double total = 0;
        int rows = x.Length / rowLength;
        for (int r = 0; r < rows; r++)
        {
            double err = 0, norm = 0;
            for (int i = r * rowLength; i < (r + 1) * rowLength; i++)
            {
                double diff = (double)x[i] - y[i];
                err += diff * diff;
                norm += (double)x[i] * x[i];
            }
            total += Math.Sqrt(err / norm);
        }
        return total / rows;
    }

    // Measured relative RMS errors over seeds 1..8 (Gaussian rows / with x12 outliers), in percent:
    // Q8_0 0.39-0.55 / 0.49-0.93, Q8_K 0.50-0.75 / 0.98-2.37, Q6_K 1.3-1.9 / 1.6-2.6, Q5_0 3.1-4.4 / 4.0-7.5,
    // Q5_1 2.7-3.9 / 3.1-4.6, Q5_K 2.6-3.7 / 3.0-4.5, Q4_0 6.3-8.8 / 7.7-14.0, Q4_1 5.7-7.9 / 6.3-9.5,
    // Q4_K 5.2-7.2 / 5.9-8.9, Q3_K 11.2-15.2 / 12.6-17.1, Q2_K 22-30.5 / 23-30.7. Bounds leave ~25% headroom;
    // a broken layout or scale search lands far above them.
    [Theory]
    [InlineData(GgmlType.F16, 0.0003, 0.0003)]
    [InlineData(GgmlType.BF16, 0.0025, 0.0025)]
    [InlineData(GgmlType.Q8_0, 0.007, 0.012)]
    [InlineData(GgmlType.Q8_1, 0.007, 0.012)]
    [InlineData(GgmlType.Q8_K, 0.01, 0.03)]
    [InlineData(GgmlType.Q6_K, 0.025, 0.033)]
    [InlineData(GgmlType.Q5_0, 0.055, 0.095)]
    [InlineData(GgmlType.Q5_1, 0.05, 0.06)]
    [InlineData(GgmlType.Q5_K, 0.047, 0.057)]
    [InlineData(GgmlType.Q4_0, 0.11, 0.175)]
    [InlineData(GgmlType.Q4_1, 0.10, 0.12)]
    [InlineData(GgmlType.Q4_K, 0.092, 0.115)]
    [InlineData(GgmlType.Q3_K, 0.19, 0.215)]
    [InlineData(GgmlType.Q2_K, 0.38, 0.385)]
    public void RoundTripErrorIsWithinFormatPrecision(GgmlType type, double gaussianBound, double outlierBound)
    {
        foreach (bool outliers in new[] { false, true })
        {
            double bound = outliers ? outlierBound : gaussianBound;
            foreach (int seed in new[] { 1, 2, 3 })
            {
                float[] x = TestData(seed, outliers: outliers);
                float[] y = RoundTrip(type, x);
                double error = RelativeRmsError(x, y);
                Assert.True(error < bound, $"{type} seed {seed} outliers {outliers}: relative RMS error {error:P3} >= {bound:P2}");
                // Zero blocks must come back exactly zero, whatever the format.
                for (int i = 256; i < 512; i++) Assert.Equal(0f, y[i]);
            }
        }
    }

    [Fact]
    public void ErrorOrderingFollowsBitsPerWeight()
    {
        GgmlType[] ordered = [GgmlType.Q8_0, GgmlType.Q6_K, GgmlType.Q5_K, GgmlType.Q4_K, GgmlType.Q3_K, GgmlType.Q2_K];
        foreach (int seed in new[] { 4, 5 })
        {
            float[] x = TestData(seed);
            double[] errors = ordered.Select(t => RelativeRmsError(x, RoundTrip(t, x))).ToArray();
            string report = string.Join(", ", ordered.Zip(errors, (t, e) => $"{t}={e:P3}"));
            for (int i = 1; i < errors.Length; i++)
                Assert.True(errors[i - 1] < errors[i], $"seed {seed}: expected increasing error: {report}");
        }
    }

    [Theory]
    [InlineData(GgmlType.Q8_0)]
    [InlineData(GgmlType.Q4_0)]
    public void RequantizingDequantizedDataIsIdempotent(GgmlType type)
    {
        foreach (int seed in new[] { 6, 7, 8 })
        {
            // Blocks of tiny values are left out: their fp16 scale underflows, which legitimately breaks idempotence.
            float[] x = TestData(seed, degenerateBlocks: false);
            x.AsSpan(0, 32).Clear();
            byte[] first = Quantize.Rows(type, x, RowLength);
            var y = new float[x.Length];
            Dequantize.Row(type, first, y);
            byte[] second = Quantize.Rows(type, y, RowLength);
            Assert.Equal(first, second);
        }
    }

    [Fact]
    public void RowsEqualsRowByRow()
    {
        float[] x = TestData(9);
        foreach (GgmlType type in new[] { GgmlType.Q4_K, GgmlType.Q8_0, GgmlType.F16 })
        {
            byte[] all = Quantize.Rows(type, x, RowLength);
            int rowBytes = (int)GgmlTypeInfo.RowBytes(type, RowLength);
            var one = new byte[rowBytes];
            for (int r = 0; r < Rows; r++)
            {
                Quantize.Row(type, x.AsSpan(r * RowLength, RowLength), one);
                Assert.Equal(one, all.AsSpan(r * rowBytes, rowBytes).ToArray());
            }
        }
    }

    [Fact]
    public void Q8_KBlockSumsMatchQuants()
    {
        float[] x = TestData(10, rows: 1);
        byte[] q = Quantize.Rows(GgmlType.Q8_K, x, RowLength);
        for (int b = 0; b < RowLength / 256; b++)
        {
            ReadOnlySpan<byte> block = q.AsSpan(b * 292, 292);
            for (int g = 0; g < 16; g++)
            {
                int sum = 0;
                for (int i = 0; i < 16; i++) sum += (sbyte)block[4 + 16 * g + i];
                Assert.Equal(sum, BitConverter.ToInt16(block.Slice(4 + 256 + 2 * g, 2)));
            }
        }
    }

    [Fact]
    public void Q8_0PicksExtremesAndRoundsHalfAwayFromZero()
    {
        // amax = 127 makes d = 1 exactly, so every value's level is its own rounding: roundf sends 2.5 to 3 and
        // -2.5 to -3 (ggml's nearest_int would give 2 and -2).
        var x = new float[32];
        x[0] = 127f; x[1] = 2.5f; x[2] = -2.5f; x[3] = -127f; x[4] = 0.49f;
        byte[] q = Quantize.Rows(GgmlType.Q8_0, x, 32);
        Assert.Equal((Half)1f, BitConverter.ToHalf(q, 0));
        Assert.Equal([127, 3, -3, -127, 0], q.AsSpan(2, 5).ToArray().Select(b => (int)(sbyte)b));
    }

    [Fact]
    public void Q4_0MapsSignedMaximumToLevelZero()
    {
        // max = -8 => d = 1: levels are x + 8 (truncated after adding 8.5), clamped to 15.
        var x = new float[32];
        x[0] = -8f; x[1] = 7f; x[2] = 3.4f; x[16] = 7.9f; x[17] = -0.5f;
        byte[] q = Quantize.Rows(GgmlType.Q4_0, x, 32);
        Assert.Equal((Half)1f, BitConverter.ToHalf(q, 0));
        Assert.Equal(0, q[2] & 15);
        Assert.Equal(15, q[3] & 15);
        Assert.Equal(11, q[4] & 15);
        Assert.Equal(15, q[2] >> 4);  // 7.9 + 8.5 = 16.4 -> clamped
        Assert.Equal(8, q[3] >> 4);   // -0.5 + 8.5 = 8
    }

    [Theory]
    [InlineData(GgmlType.Q4_0, 48)]
    [InlineData(GgmlType.Q8_0, 1)]
    [InlineData(GgmlType.Q4_K, 896)]
    [InlineData(GgmlType.Q6_K, 128)]
    public void QuantizeRejectsPartialBlocks(GgmlType type, int length)
    {
        var x = new float[length];
        var dst = new byte[4096];
        var ex = Assert.Throws<ArgumentException>(() => Quantize.Row(type, x, dst));
        Assert.Contains("block size", ex.Message);
        Assert.Throws<ArgumentException>(() => Quantize.Rows(type, new float[length * 2], length));
    }

    [Fact]
    public void BadShapesAndBuffersThrowArgumentException()
    {
        Assert.Throws<ArgumentException>(() => Quantize.Rows(GgmlType.Q4_K, new float[512], 0));
        Assert.Throws<ArgumentException>(() => Quantize.Rows(GgmlType.Q4_K, new float[768], 512)); // 1.5 rows
        Assert.Throws<ArgumentException>(() => Quantize.Row(GgmlType.Q4_K, new float[256], new byte[143]));
        Assert.Throws<ArgumentException>(() => Quantize.Rows(GgmlType.Q8_0, new float[64], 32, new byte[67]));
        Assert.Throws<ArgumentException>(() => Dequantize.Row(GgmlType.Q4_K, new byte[144], new float[200]));
        Assert.Throws<ArgumentException>(() => Dequantize.Row(GgmlType.Q6_K, new byte[209], new float[256]));
        Assert.Throws<NotSupportedException>(() => Quantize.Row(GgmlType.I32, new float[4], new byte[16]));
        Assert.Throws<NotSupportedException>(() => Dequantize.Row(GgmlType.F64, new byte[32], new float[4]));
    }
}
