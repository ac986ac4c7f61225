using EdgeLM.Kernels;
using EdgeLM.Kernels.Quantized;
using EdgeLM.Tensors;
using Xunit;

namespace EdgeLM.Tests.Kernels;

/// <summary>
/// Float weights packed in 8-row panels: every path (Vector128, Vector256, decode, prefill with its passes, chunks,
/// tiles and edges, MatMul on any thread count) gives the bits of the scalar fused chain, computed here from the
/// file's rows, independently of the packed layout.
/// </summary>
[Trait("Category", "Kernels")]
public unsafe class FloatPanelKernelTests
{
    /// <summary>Random finite weights: F16 includes subnormals, zeros and the largest half; F32/BF16 a wide range.</summary>
    internal static (Tensor, NativeBuffer) RandomWeight(GgmlType type, int k, int rows, int seed)
    {
        var random = new Random(seed);
        long bytes = Tensor.ExpectedBytes(type, [k, rows]);
        var buffer = new NativeBuffer(bytes);
        long count = (long)k * rows;
        for (long i = 0; i < count; i++)
        {
            float v = (float)((random.NextDouble() * 2 - 1) * Math.Pow(2, random.Next(-12, 4)));
            switch (type)
            {
                case GgmlType.F32: ((float*)buffer.Pointer)[i] = v; break;
                case GgmlType.F16:
                    ((ushort*)buffer.Pointer)[i] = random.Next(16) switch
                    {
                        0 => 0x0001, // smallest subnormal
                        1 => 0x83FF, // largest negative subnormal
                        2 => 0x7BFF, // largest finite
                        3 => 0x8000, // negative zero
                        _ => BitConverter.HalfToUInt16Bits((Half)v),
                    };
                    break;
                default: ((ushort*)buffer.Pointer)[i] = (ushort)(BitConverter.SingleToInt32Bits(v) >> 16); break;
            }
        }
        return (new Tensor("w", type, [k, rows], buffer.Pointer, bytes), buffer);
    }

    internal static float[] RandomTokens(int n, int k, int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, n * k).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
    }

    /// <summary>y[t, r] = fma chain over the file row r in ascending k, from 0.</summary>
    internal static float[] Expected(Tensor w, float[] x, int n)
    {
        int k = w.RowLength, rows = (int)w.RowCount;
        var row = new float[k];
        var y = new float[n * rows];
        for (int r = 0; r < rows; r++)
        {
            RowConvert.Row(w, r, row);
            for (int t = 0; t < n; t++)
            {
                float acc = 0;
                for (int i = 0; i < k; i++) acc = MathF.FusedMultiplyAdd(row[i], x[t * k + i], acc);
                y[t * rows + r] = acc;
            }
        }
        return y;
    }

    internal static void AssertBitwise(float[] expected, float[] actual, string what)
    {
        for (int i = 0; i < expected.Length; i++)
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
                Assert.Fail($"{what}: output {i} is {actual[i]:R}, the fused chain gives {expected[i]:R}");
    }

    private delegate void DecodePath(GgmlType type, byte* data, long panelStride, int panels, float* x, int k, float* y);
    private delegate void PrefillPath(GgmlType type, byte* data, long panelStride, int panels, float* x, int xStride, int n, int k, float* y, long yStride, float* scratch);

    private static List<(string, DecodePath, PrefillPath)> Paths() =>
    [
        ("vector128", FloatPanelKernels.Decode<Lanes128>, FloatPanelKernels.Prefill<Lanes128>),
        ("vector256", FloatPanelKernels.Decode<Lanes256>, FloatPanelKernels.Prefill<Lanes256>),
        ("scalar", (t, d, s, p, x, k, y) => FloatPanelKernels.Reference(t, d, s, p, x, k, 1, k, y, p * RepackedMatrix.PanelRows),
            (t, d, s, p, x, xs, n, k, y, ys, _) => FloatPanelKernels.Reference(t, d, s, p, x, xs, n, k, y, ys)),
    ];

    [Theory]
    [InlineData(GgmlType.F16, 896, 24, 1)]
    [InlineData(GgmlType.F16, 896, 64, 13)]
    [InlineData(GgmlType.F16, 32, 8, 7)]
    [InlineData(GgmlType.F16, 2080, 16, 6)] // three passes of the prefill tile
    [InlineData(GgmlType.F16, 2080, 24, 11)] // three passes, a tail tile overlapping the one before it
    [InlineData(GgmlType.F16, 1024, 16, 7)] // input rows at a padded stride
    [InlineData(GgmlType.F16, 96, 40, 53)] // two token chunks, a partial tile, an odd column count
    [InlineData(GgmlType.F32, 160, 24, 9)]
    [InlineData(GgmlType.BF16, 224, 56, 8)]
    public void EveryPathEqualsTheFusedChainBitwise(GgmlType type, int k, int rows, int n)
    {
        var (w, buffer) = RandomWeight(type, k, rows, seed: k + rows);
        using var _ = buffer;
        using var m = RepackedMatrix.Pack(w);
        Assert.NotNull(m);
        float[] x = RandomTokens(n, k, seed: n);
        float[] expected = Expected(w, x, n);
        int panels = rows / RepackedMatrix.PanelRows;
        var scratch = new float[FloatPanelKernels.ScratchFloats(panels, k)];
        // Prefill reads its rows at the padded stride; NaN in the padding would show if a kernel read past k.
        int xStride = FloatPanelKernels.InputStride(k);
        var padded = new float[n * xStride];
        Array.Fill(padded, float.NaN);
        for (int t = 0; t < n; t++) Array.Copy(x, t * k, padded, t * xStride, k);
        foreach (var (name, decode, prefill) in Paths())
        {
            var actual = new float[n * rows];
            fixed (float* px = x, pp = padded, py = actual, ps = scratch)
            {
                prefill(type, m!.Data, m.PanelStride, panels, pp, xStride, n, k, py, rows, ps);
                AssertBitwise(expected, actual, $"{name} prefill {type} k={k} rows={rows} n={n}");
                Array.Clear(actual);
                for (int t = 0; t < n; t++) decode(type, m.Data, m.PanelStride, panels, px + t * k, k, py + t * rows);
                AssertBitwise(expected, actual, $"{name} decode {type} k={k} rows={rows}");
            }
        }
    }

    [Theory]
    [InlineData(896)]
    [InlineData(1024)]
    [InlineData(2048)]
    [InlineData(4096)]
    [InlineData(11008)]
    [InlineData(32)]
    [InlineData(100)]
    public void PrefillInputRowsOfATileFallInDifferentCacheSets(int k)
    {
        int stride = FloatPanelKernels.InputStride(k);
        Assert.True(stride >= k && stride % 16 == 0 && stride - k < 16 * 8, $"stride {stride} for k = {k}");
        for (int j = 1; j < FloatPanelKernels.TileTokens; j++)
            Assert.NotEqual(0L, (long)j * stride * sizeof(float) % 4096);
    }

    [Theory]
    [InlineData(GgmlType.F16, 896, 48)]
    [InlineData(GgmlType.F16, 1024, 16)] // the input copied at a padded stride
    [InlineData(GgmlType.BF16, 64, 24)]
    [InlineData(GgmlType.F32, 96, 8)]
    public void MatMulOnPackedWeightsEqualsTheFusedChainWhateverTheThreadCount(GgmlType type, int k, int rows)
    {
        var (w, buffer) = RandomWeight(type, k, rows, seed: 3);
        using var _ = buffer;
        Assert.True(WeightRepacker.Attach(w));
        try
        {
            foreach (int n in new[] { 1, 2, 61 })
            {
                float[] x = RandomTokens(n, k, seed: 5 + n);
                float[] expected = Expected(w, x, n);
                foreach (int threads in new[] { 1, 2, 3 })
                {
                    using var pool = new WorkerPool(threads);
                    var actual = new float[n * rows];
                    MatMul.Compute(w, x, actual, n, pool);
                    AssertBitwise(expected, actual, $"MatMul {type} n={n} threads={threads}");
                }
            }
        }
        finally
        {
            WeightRepacker.Detach(w);
        }
    }

    [Theory]
    [InlineData(GgmlType.F16)]
    [InlineData(GgmlType.BF16)]
    [InlineData(GgmlType.F32)]
    public void PackedRowsReadBackAsTheFileRows(GgmlType type)
    {
        const int k = 64, rows = 16;
        var (w, buffer) = RandomWeight(type, k, rows, seed: 11);
        using var _ = buffer;
        using var m = RepackedMatrix.Pack(w);
        Assert.NotNull(m);
        var expected = new float[k];
        var actual = new float[k];
        for (int r = 0; r < rows; r++)
        {
            RowConvert.Row(w, r, expected);
            fixed (float* pa = actual) m!.DequantizeRow(r, pa);
            AssertBitwise(expected, actual, $"row {r}");
        }
    }

    [Fact]
    public void AnF16InfinityOrNaNKeepsTheFileLayout()
    {
        const int k = 32, rows = 8;
        var (w, buffer) = RandomWeight(GgmlType.F16, k, rows, seed: 2);
        using var _ = buffer;
        ((ushort*)buffer.Pointer)[5 * k + 17] = 0x7E00; // NaN
        Assert.Null(RepackedMatrix.Pack(w));
        ((ushort*)buffer.Pointer)[5 * k + 17] = 0xFC00; // -inf
        Assert.Null(RepackedMatrix.Pack(w));
        ((ushort*)buffer.Pointer)[5 * k + 17] = 0x3C00;
        Assert.NotNull(RepackedMatrix.Pack(w));
    }
}
