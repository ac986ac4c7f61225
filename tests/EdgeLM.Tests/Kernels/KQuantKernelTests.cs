using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using EdgeLM.Kernels.Quantized;
using EdgeLM.Tensors;
using EdgeLM.Tensors.Quantization;

namespace EdgeLM.Tests.Kernels;

[Trait("Category", "Kernels")]
public unsafe class KQuantKernelTests
{
    private delegate void TilePath(byte* w, long wStride, int rows, byte* x, long xStride, int cols, int blocks, float* y, long yStride);
    private delegate float ScalarDot(byte* w, byte* x, int k);
    private delegate void PublicTile(byte* w, long wStride, int rows, byte* x, long xStride, int cols, int k, float* y, long yStride);

    private sealed record Kernel(ScalarDot Dot, PublicTile Tile, (string Name, bool Supported, TilePath Tile)[] Paths);

    private static Kernel For(GgmlType type) => type switch
    {
        GgmlType.Q2_K => Of<Q2_KFormat>(Q2_KKernel.Tile),
        GgmlType.Q3_K => Of<Q3_KFormat>(Q3_KKernel.Tile),
        GgmlType.Q4_K => Of<Q4_KFormat>(Q4_KKernel.Tile),
        GgmlType.Q5_K => Of<Q5_KFormat>(Q5_KKernel.Tile),
        GgmlType.Q6_K => Of<Q6_KFormat>(Q6_KKernel.Tile),
        _ => throw new NotSupportedException(type.ToString()),
    };

    /// <summary>Every path of the generic driver, each marked with whether this machine can run it.</summary>
    private static Kernel Of<TFormat>(PublicTile tile) where TFormat : unmanaged, IKQuantFormat => new(
        KQuantDot<TFormat>.DotScalar, tile,
        [
            ("avx2", Avx2.IsSupported && Fma.IsSupported, KQuantDot<TFormat>.TileAvx2<Avx2ScaledDot>),
            ("avxvnni", Avx2.IsSupported && Fma.IsSupported && AvxVnni.IsSupported, KQuantDot<TFormat>.TileAvx2<VnniScaledDot>),
            ("vector128", true, KQuantDot<TFormat>.Tile128<PortableDot>),
            ("vector128-dp", Dp.IsSupported, KQuantDot<TFormat>.Tile128<DpDot>),
            ("scalar", true, KQuantDot<TFormat>.TileScalar),
        ]);

    private enum Shape { Normal, Extreme, ZeroBlocks }

    private static float[] RandomValues(int n, int seed, Shape shape)
    {
        var random = new Random(seed);
        var v = new float[n];
        for (int i = 0; i < n; i++)
        {
            // Sum of uniforms: roughly Gaussian, with a per-block scale so blocks differ in magnitude.
            float g = (float)(random.NextDouble() + random.NextDouble() + random.NextDouble() - 1.5);
            v[i] = g * (1 + (i / 256 % 5));
        }
        if (shape == Shape.Extreme)
        {
            for (int i = 0; i < n; i += 37) v[i] = (random.Next(2) == 0 ? -1 : 1) * 3000f;   // outliers saturate scales
            for (int i = 5; i < n; i += 11) v[i] = 1e-6f;
            for (int i = 0; i < Math.Min(n, 256); i++) v[i] = i % 2 == 0 ? 40f : -40f;    // all levels at the rails
        }
        if (shape == Shape.ZeroBlocks)
            for (int b = 0; b < n / 256; b += 2) Array.Clear(v, b * 256, 256);
        return v;
    }

    private static byte[] QuantizeRow(GgmlType type, float[] values)
    {
        var bytes = new byte[GgmlTypeInfo.RowBytes(type, values.Length)];
        Quantize.Row(type, values, bytes);
        return bytes;
    }

    public static TheoryData<GgmlType> Types => new(GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q6_K, GgmlType.Q5_K);

    public static TheoryData<GgmlType, int, int, int> DotCases()
    {
        var data = new TheoryData<GgmlType, int, int, int>();
        foreach (var type in Types)
        {
            int seed = 1;
            foreach (int k in new[] { 256, 512, 4864, 8960 })
                foreach (Shape shape in Enum.GetValues<Shape>())
                    data.Add(type, k, seed++, (int)shape);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(DotCases))]
    public void DotScalarMatchesFloat64DotOfDequantizedRows(GgmlType type, int k, int seed, int shape)
    {
        byte[] w = QuantizeRow(type, RandomValues(k, seed, (Shape)shape));
        byte[] x = QuantizeRow(GgmlType.Q8_K, RandomValues(k, seed + 1000, (Shape)shape));
        var wf = new float[k];
        var xf = new float[k];
        Dequantize.Row(type, w, wf);
        Dequantize.Row(GgmlType.Q8_K, x, xf);
        double expected = 0, magnitude = 0;
        for (int i = 0; i < k; i++)
        {
            expected += (double)wf[i] * xf[i];
            magnitude += Math.Abs((double)wf[i] * xf[i]);
        }
        float actual;
        fixed (byte* pw = w, px = x) actual = For(type).Dot(pw, px, k);
        Assert.True(Math.Abs(actual - expected) <= 2e-6 * magnitude + 1e-30,
            $"{type} k={k}: DotScalar {actual} vs float64 {expected} (sum |terms| {magnitude})");
        if (shape == (int)Shape.Normal) Assert.True(magnitude > 0);
    }

    public static TheoryData<GgmlType, int> TileCases()
    {
        var data = new TheoryData<GgmlType, int>();
        foreach (var type in Types)
            foreach (int k in new[] { 256, 768, 2048, 4096 })
                data.Add(type, k);
        return data;
    }

    [Theory]
    [MemberData(nameof(TileCases))]
    public void EverySimdTileMatchesDotScalar(GgmlType type, int k)
    {
        Kernel kernel = For(type);
        // Not multiples of the tiles (row pairs for decode, four columns for prefill).
        const int maxRows = 5, maxCols = 9;
        int rowBytes = (int)GgmlTypeInfo.RowBytes(type, k);
        int actBytes = (int)GgmlTypeInfo.RowBytes(GgmlType.Q8_K, k);
        // Odd paddings so no row starts aligned and the strides are not the row sizes.
        long wStride = rowBytes + 13, xStride = actBytes + 7, yStride = maxRows + 3;
        var w = new byte[wStride * maxRows];
        var x = new byte[xStride * maxCols];
        for (int r = 0; r < maxRows; r++)
            QuantizeRow(type, RandomValues(k, 17 * k + r, (Shape)(r % 3))).CopyTo(w, r * wStride);
        for (int c = 0; c < maxCols; c++)
            QuantizeRow(GgmlType.Q8_K, RandomValues(k, 31 * k + c, (Shape)((c + 1) % 3))).CopyTo(x, c * xStride);

        fixed (byte* pw = w, px = x)
        {
            var expected = new float[maxRows, maxCols];
            var bound = new double[maxRows, maxCols];
            for (int r = 0; r < maxRows; r++)
                for (int c = 0; c < maxCols; c++)
                {
                    expected[r, c] = kernel.Dot(pw + r * wStride, px + c * xStride, k);
                    bound[r, c] = 1e-5 * AbsTermSum(type, w.AsSpan((int)(r * wStride), rowBytes), x.AsSpan((int)(c * xStride), actBytes), k) + 1e-30;
                }

            var paths = kernel.Paths.Where(p => p.Supported)
                .Select(p => (p.Name, p.Tile))
                .Append(("public", (TilePath)((a, b, c, d, e, f, blocks, g, h) => kernel.Tile(a, b, c, d, e, f, blocks * 256, g, h))));
            foreach (var (name, tile) in paths)
                for (int rows = 1; rows <= maxRows; rows++)
                    for (int cols = 1; cols <= maxCols; cols++)
                    {
                        int rowOffset = maxRows - rows, colOffset = maxCols - cols;   // also exercise later rows/columns
                        var y = new float[yStride * maxCols];
                        Array.Fill(y, float.NaN);
                        fixed (float* py = y)
                            tile(pw + rowOffset * wStride, wStride, rows, px + colOffset * xStride, xStride, cols, k / 256, py, yStride);
                        for (int c = 0; c < cols; c++)
                            for (int r = 0; r < yStride; r++)
                            {
                                float got = y[c * yStride + r];
                                if (r >= rows) { Assert.True(float.IsNaN(got), $"{name} wrote outside the tile at row {r}"); continue; }
                                float want = expected[rowOffset + r, colOffset + c];
                                Assert.True(Math.Abs(got - want) <= bound[rowOffset + r, colOffset + c],
                                    $"{type} {name} k={k} tile {rows}x{cols} ({r},{c}): {got} vs scalar {want}");
                            }
                    }
        }
    }

    private static double AbsTermSum(GgmlType type, ReadOnlySpan<byte> w, ReadOnlySpan<byte> x, int k)
    {
        var wf = new float[k];
        var xf = new float[k];
        Dequantize.Row(type, w, wf);
        Dequantize.Row(GgmlType.Q8_K, x, xf);
        double sum = 0;
        for (int i = 0; i < k; i++) sum += Math.Abs((double)wf[i] * xf[i]);
        return sum;
    }

    /// <summary>
    /// The exactness rule: an output's bits do not depend on the tile it was computed in (decode pair, prefill group
    /// of four columns, leftover column, position in the tile), so decode and prefill logits agree bit for bit.
    /// </summary>
    [Theory]
    [MemberData(nameof(Types))]
    public void EveryOutputHasTheSameBitsWhateverTheTile(GgmlType type)
    {
        Kernel kernel = For(type);
        const int k = 2048, rows = 7, cols = 11;
        int rowBytes = (int)GgmlTypeInfo.RowBytes(type, k);
        int actBytes = (int)GgmlTypeInfo.RowBytes(GgmlType.Q8_K, k);
        var w = new byte[rowBytes * rows];
        var x = new byte[actBytes * cols];
        for (int r = 0; r < rows; r++) QuantizeRow(type, RandomValues(k, 100 + r, Shape.Normal)).CopyTo(w, r * rowBytes);
        for (int c = 0; c < cols; c++) QuantizeRow(GgmlType.Q8_K, RandomValues(k, 200 + c, Shape.Normal)).CopyTo(x, c * actBytes);
        fixed (byte* pw = w, px = x)
            foreach (var (name, _, tile) in kernel.Paths.Where(p => p.Supported))
            {
                var whole = new float[rows * cols];
                fixed (float* py = whole) tile(pw, rowBytes, rows, px, actBytes, cols, k / 256, py, rows);
                for (int r = 0; r < rows; r++)
                    for (int c = 0; c < cols; c++)
                    {
                        float alone;
                        tile(pw + r * rowBytes, rowBytes, 1, px + c * actBytes, actBytes, 1, k / 256, &alone, 1);
                        Assert.True(BitConverter.SingleToUInt32Bits(alone) == BitConverter.SingleToUInt32Bits(whole[c * rows + r]),
                            $"{type} {name} ({r},{c}): {whole[c * rows + r]} in a {rows}x{cols} tile, {alone} alone");
                    }
            }
    }

    [Fact]
    public void BranchFreeHalfConversionMatchesReferenceForEveryBitPattern()
    {
        var pair = new ushort[2];
        fixed (ushort* p = pair)
            for (int bits = 0; bits < 65536; bits++)
            {
                pair[0] = (ushort)bits;
                pair[1] = (ushort)(bits ^ 0x8000);
                var converted = KQuant.HalfPair((byte*)p);
                for (int lane = 0; lane < 2; lane++)
                {
                    float want = HalfPrecision.FromF16(pair[lane]), got = converted[lane];
                    Assert.True(float.IsNaN(want) ? float.IsNaN(got) : BitConverter.SingleToUInt32Bits(want) == BitConverter.SingleToUInt32Bits(got),
                        $"half 0x{pair[lane]:X4}: {got} vs {want}");
                }
            }
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void RejectsRowLengthsThatAreNotWholeBlocks(GgmlType type)
    {
        Kernel kernel = For(type);
        var buffer = new byte[4096];
        fixed (byte* p = buffer)
        {
            byte* bp = p;
            float* result = (float*)(p + 2048);
            Assert.Throws<ArgumentException>(() => kernel.Dot(bp, bp, 255));
            Assert.Throws<ArgumentException>(() => kernel.Tile(bp, 0, 1, bp, 0, 1, 300, result, 1));
            Assert.Throws<ArgumentException>(() => kernel.Tile(bp, 0, 1, bp, 0, 1, 0, result, 1));
        }
    }
}
