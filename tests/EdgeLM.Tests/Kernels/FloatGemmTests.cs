using EdgeLM.Kernels;
using EdgeLM.Tensors;
using EdgeLM.Tensors.Quantization;

namespace EdgeLM.Tests.Kernels;

/// <summary>
/// Float-weight matmul: the in-register decode kernel, the k-blocked prefill tile and the edge paths against the
/// scalar definition, and bitwise against each other (the exactness rule), at every SIMD width (emulated where the
/// hardware lacks it).
/// </summary>
[Trait("Category", "Kernels")]
public unsafe class FloatGemmTests
{
    private static readonly int[] Depths = [0, 3, 8, 17, 100, 896, 1001, FloatGemm.DepthBlock + 5, 4864];

    private delegate bool Rows4Path(byte* w, long wStride, float* x, int k, float* y);
    private delegate float Row1Path(float* w, float* x, int k);
    private delegate void TilePath(float* w, long wStride, int rows, float* x, long xStride, int cols, int k, float* y, long yStride, float* partials);

    private static readonly (string Name, Rows4Path F32, Rows4Path F16, Rows4Path BF16, Row1Path Row1, TilePath Tile)[] Widths =
    [
        ("128", FloatGemm.Rows4<Lanes128, F32Rows>, FloatGemm.Rows4<Lanes128, F16Rows>, FloatGemm.Rows4<Lanes128, BF16Rows>, FloatGemm.Row1<Lanes128>, FloatGemm.Tile<Lanes128>),
        ("256", FloatGemm.Rows4<Lanes256, F32Rows>, FloatGemm.Rows4<Lanes256, F16Rows>, FloatGemm.Rows4<Lanes256, BF16Rows>, FloatGemm.Row1<Lanes256>, FloatGemm.Tile<Lanes256>),
        ("512", FloatGemm.Rows4<Lanes512, F32Rows>, FloatGemm.Rows4<Lanes512, F16Rows>, FloatGemm.Rows4<Lanes512, BF16Rows>, FloatGemm.Row1<Lanes512>, FloatGemm.Tile<Lanes512>),
    ];

    private static float[] RandomFloats(int n, int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
    }

    private static ushort[] ToHalves(float[] values) => values.Select(v => BitConverter.HalfToUInt16Bits((Half)v)).ToArray();
    private static ushort[] ToBFloat16(float[] values) => values.Select(v => (ushort)(BitConverter.SingleToUInt32Bits(v) >> 16)).ToArray();

    private static double ExactDot(float* w, float* x, int k, out double scale)
    {
        double sum = 0;
        scale = 0;
        for (int i = 0; i < k; i++) { sum += (double)w[i] * x[i]; scale += Math.Abs((double)w[i] * x[i]); }
        return sum;
    }

    [Fact]
    public void FiniteHalfLoadIsExactAndFlagsInfNan()
    {
        ushort[] all = Enumerable.Range(0, 65536).Select(i => (ushort)i).ToArray();
        float[] actual = new float[all.Length];
        fixed (ushort* s = all) fixed (float* d = actual)
            for (int i = 0; i < all.Length; i += 8) Lanes256.Store(Lanes256.LoadHalfFinite(s + i), d + i);
        for (int i = 0; i < all.Length; i++)
        {
            float expected = (float)BitConverter.UInt16BitsToHalf((ushort)i);
            if (float.IsFinite(expected))
                Assert.True(BitConverter.SingleToUInt32Bits(expected) == BitConverter.SingleToUInt32Bits(actual[i]), $"half 0x{i:X4}");
            else
                Assert.True(Math.Abs(actual[i]) >= 65536f && Math.Abs(actual[i]) < 131072f, $"half 0x{i:X4} (inf/NaN) gave {actual[i]}");
        }
    }

    /// <summary>The decode kernel converts in registers; it must equal the same kernel on exactly converted rows.</summary>
    [Fact]
    public void DecodeRowsMatchScalarAndConvertedRowsBitwise()
    {
        float* y = stackalloc float[4];
        float* reference = stackalloc float[4];
        foreach (int k in Depths)
        {
            float[] values = RandomFloats(4 * k, k), x = RandomFloats(k, k + 1);
            ushort[] halves = ToHalves(values), bf16 = ToBFloat16(values);
            float[] fromHalves = new float[4 * k], fromBf16 = new float[4 * k];
            fixed (ushort* h = halves, b = bf16) fixed (float* fh = fromHalves, fb = fromBf16, v = values, px = x)
            {
                RowConvert.HalfToSingleScalar(h, fh, 4 * k);
                RowConvert.BFloat16ToSingleScalar(b, fb, 4 * k);
                foreach (var width in Widths)
                {
                    for (int format = 0; format < 3; format++)
                    {
                        byte* rows = format == 0 ? (byte*)v : format == 1 ? (byte*)h : (byte*)b;
                        float* converted = format == 0 ? v : format == 1 ? fh : fb;
                        var path = format == 0 ? width.F32 : format == 1 ? width.F16 : width.BF16;
                        long byteStride = format == 0 ? 4L * k : 2L * k;
                        Assert.True(path(rows, byteStride, px, k, y), $"width {width.Name} k={k}: finite rows rejected");
                        Assert.True(width.F32((byte*)converted, 4L * k, px, k, reference));
                        for (int r = 0; r < 4; r++)
                        {
                            Assert.Equal(reference[r], y[r]);
                            double exact = ExactDot(converted + r * k, px, k, out double scale);
                            Assert.True(Math.Abs(exact - y[r]) <= 1e-6 * scale + 1e-7, $"width {width.Name} k={k} row {r}: {exact} vs {y[r]}");
                        }
                    }
                }
            }
        }
    }

    [Theory]
    [InlineData(0x7C00)] // +inf
    [InlineData(0xFC00)] // -inf
    [InlineData(0x7E01)] // quiet NaN
    [InlineData(0x7C01)] // signaling NaN
    public void DecodeRejectsHalfInfNanInTheVectorPart(int bits)
    {
        const int k = 40;
        float* y = stackalloc float[4];
        foreach (int position in new[] { 0, 7, 2 * k + 31, 4 * k - 9 })
        {
            ushort[] halves = ToHalves(RandomFloats(4 * k, position));
            halves[position] = (ushort)bits;
            float[] x = RandomFloats(k, 1);
            fixed (ushort* h = halves) fixed (float* px = x)
                foreach (var width in Widths) Assert.False(width.F16((byte*)h, 2L * k, px, k, y), $"width {width.Name} position {position}");
        }
    }

    /// <summary>
    /// The blocked 4x3 tile and its edges give each output the bits of the decode kernel: k = 896 is one pass reduced
    /// in registers, 2072 three passes (two parked), 5 and 1001 leave a scalar tail (parked, reduced afterwards).
    /// </summary>
    [Fact]
    public void TileMatchesDecodeKernelBitwise()
    {
        float* quad = stackalloc float[4];
        foreach (int k in new[] { 5, 896, 1001, 2 * FloatGemm.DepthBlock + 24 })
            foreach (var (rows, cols) in new[] { (16, 67), (64, 35), (13, 4), (3, 5), (4, 3), (7, 1) })
            {
                float[] w = RandomFloats(rows * k, k + rows), x = RandomFloats(cols * k, cols);
                float[] partials = new float[rows * cols * 16];
                int yStride = rows + 3; // not a multiple of the vector width
                fixed (float* pw = w, px = x, pp = partials)
                    foreach (var width in Widths)
                    {
                        float[] y = new float[cols * yStride + 1];
                        y[^1] = 7;
                        // Stale parked accumulators must never leak in: the first pass starts from zero and the
                        // last (reduced in registers on the 256-bit FMA path) never reads what it did not write.
                        Array.Fill(partials, float.NaN);
                        fixed (float* py = y) width.Tile(pw, k, rows, px, k, cols, k, py, yStride, pp);
                        Assert.Equal(7, y[^1]);
                        for (int c = 0; c < cols; c++)
                        {
                            int r = 0;
                            for (; r + 4 <= rows; r += 4)
                            {
                                width.F32((byte*)(pw + r * k), 4L * k, px + c * k, k, quad);
                                for (int i = 0; i < 4; i++)
                                    Assert.True(quad[i] == y[c * yStride + r + i], $"width {width.Name} k={k} {rows}x{cols}: row {r + i} token {c}");
                            }
                            for (; r < rows; r++)
                                Assert.True(width.Row1(pw + r * k, px + c * k, k) == y[c * yStride + r], $"width {width.Name} k={k} {rows}x{cols}: row {r} token {c}");
                            // Row1 and the quad kernel agree too, so edge rows match what a quad would give.
                            if (rows >= 4)
                            {
                                width.F32((byte*)pw, 4L * k, px + c * k, k, quad);
                                Assert.True(width.Row1(pw + k, px + c * k, k) == quad[1], $"width {width.Name} k={k}: Row1 vs quad");
                            }
                        }
                    }
            }
    }

    private delegate void DecodePath(GgmlType type, byte* w, long wStride, int rows, float* x, int k, float* y, float* scratch, bool halvesFinite);

    private static readonly (string Name, DecodePath Decode, Row1Path Row1)[] DecodeWidths =
    [
        ("128", FloatGemm.Decode<Lanes128>, FloatGemm.Row1<Lanes128>),
        ("256", FloatGemm.Decode<Lanes256>, FloatGemm.Row1<Lanes256>),
        ("512", FloatGemm.Decode<Lanes512>, FloatGemm.Row1<Lanes512>),
    ];

    /// <summary>
    /// Decode over a thread's share reads rows in four interleaved quarters plus single leftover rows: every output
    /// must still be the row-by-row bits (Row1 on exactly converted rows), with an inf row taking the fallback.
    /// </summary>
    [Fact]
    public void DecodeOverRowRangesMatchesRowByRowBitwise()
    {
        foreach (int k in new[] { 5, 96, 896, 1001 })
            foreach (int rows in new[] { 1, 3, 4, 7, 16, 33 })
                foreach (var type in new[] { GgmlType.F16, GgmlType.BF16, GgmlType.F32 })
                {
                    float[] values = RandomFloats(rows * k, rows * k + (int)type), x = RandomFloats(k, k);
                    if (type == GgmlType.F16 && rows > 4) values[(rows / 2) * k + k / 2] = float.NegativeInfinity;
                    var (w, buffer) = Weight(type, values, k, rows);
                    using var _ = buffer;
                    float[] converted = new float[rows * k], scratch = new float[4 * k], y = new float[rows + 1];
                    for (int r = 0; r < rows; r++) Dequantize.Row(type, w.Row(r), converted.AsSpan(r * k, k));
                    bool finite = w.HalvesAllFinite;
                    Assert.Equal(type == GgmlType.F16 && rows <= 4, finite);
                    fixed (float* pc = converted, px = x, ps = scratch, py = y)
                        foreach (var width in DecodeWidths)
                            foreach (bool skipRangeCheck in finite ? new[] { false, true } : [false])
                            {
                                y[rows] = 7;
                                width.Decode(type, w.Data, w.RowStride, rows, px, k, py, ps, skipRangeCheck);
                                Assert.Equal(7, y[rows]);
                                for (int r = 0; r < rows; r++)
                                {
                                    float expected = width.Row1(pc + r * k, px, k);
                                    Assert.True(expected.Equals(y[r]),
                                        $"{type} width {width.Name} k={k} rows={rows} unchecked={skipRangeCheck}: row {r} {y[r]} vs {expected}");
                                }
                            }
                    if (type == GgmlType.F16 && rows > 4) Assert.False(float.IsFinite(y[rows / 2]));
                }
    }

    /// <summary>The scan behind Tensor.HalvesAllFinite: any inf or NaN anywhere (vector body or scalar tail) is found,
    /// the largest finite halves are not.</summary>
    [Fact]
    public void SpecialHalvesAreFoundAnywhere()
    {
        foreach (int n in new[] { 1, 15, 16, 17, 40 })
        {
            var halves = new ushort[n];
            for (int i = 0; i < n; i++) halves[i] = (ushort)(i % 2 == 0 ? 0x7BFF : 0xFBFF); // +-65504
            fixed (ushort* p = halves) Assert.False(Tensor.HasSpecialHalf(p, n));
            foreach (int at in new[] { 0, n / 2, n - 1 })
                foreach (ushort special in new ushort[] { 0x7C00, 0xFC00, 0x7E00, 0xFC01 })
                {
                    ushort saved = halves[at];
                    halves[at] = special;
                    fixed (ushort* p = halves) Assert.True(Tensor.HasSpecialHalf(p, n), $"n={n} at {at}: 0x{special:X4}");
                    halves[at] = saved;
                }
        }
    }

    private static (Tensor, NativeBuffer) Weight(GgmlType type, float[] values, int inDim, int outDim)
    {
        long[] shape = [inDim, outDim];
        long bytes = Tensor.ExpectedBytes(type, shape);
        var buffer = new NativeBuffer(bytes);
        for (int i = 0; i < values.Length; i++)
        {
            switch (type)
            {
                case GgmlType.F32: ((float*)buffer.Pointer)[i] = values[i]; break;
                case GgmlType.F16: ((Half*)buffer.Pointer)[i] = (Half)values[i]; break;
                default: ((ushort*)buffer.Pointer)[i] = (ushort)(BitConverter.SingleToUInt32Bits(values[i]) >> 16); break;
            }
        }
        return (new Tensor("w", type, shape, buffer.Pointer, bytes), buffer);
    }

    /// <summary>Through MatMul: Qwen depths, batches across the token chunk size, any thread count, decode = prefill.</summary>
    [Theory]
    [InlineData(GgmlType.F16, 896, 37)]
    [InlineData(GgmlType.F16, 4864, 21)]
    [InlineData(GgmlType.BF16, 896, 18)]
    [InlineData(GgmlType.F32, 1001, 19)]
    [InlineData(GgmlType.F16, 7, 5)]
    public void MatMulMatchesScalarAndDecodeEqualsPrefill(GgmlType type, int inDim, int outDim)
    {
        var (w, buffer) = Weight(type, RandomFloats(inDim * outDim, inDim), inDim, outDim);
        using var _ = buffer;
        const int maxTokens = MatMul.TokensPerChunk + 3;
        float[] x = RandomFloats(maxTokens * inDim, 5);
        float[] expected = new float[maxTokens * outDim];
        MatMul.ComputeScalar(w, x, expected, maxTokens);
        float[] row = new float[inDim];
        using var pool1 = new WorkerPool(1);
        using var pool2 = new WorkerPool(2);
        foreach (int n in new[] { 1, 3, 4, 5, 64, maxTokens })
            foreach (var pool in new[] { pool1, pool2 })
            {
                float[] actual = new float[n * outDim];
                MatMul.Compute(w, x.AsSpan(0, n * inDim), actual, n, pool);
                for (int r = 0; r < outDim; r++)
                {
                    Dequantize.Row(type, w.Row(r), row);
                    for (int t = 0; t < n; t++)
                    {
                        double scale = 0;
                        for (int i = 0; i < inDim; i++) scale += Math.Abs((double)row[i] * x[t * inDim + i]);
                        Assert.True(Math.Abs(expected[t * outDim + r] - actual[t * outDim + r]) <= 1e-5 * scale + 1e-6, $"{type} n={n} row {r} token {t}");
                    }
                }
                var single = new float[outDim];
                foreach (int t in new[] { 0, n / 2, n - 1 })
                {
                    MatMul.Compute(w, x.AsSpan(t * inDim, inDim), single, 1, pool);
                    Assert.Equal(actual.AsSpan(t * outDim, outDim).ToArray(), single);
                }
            }
    }

    /// <summary>An F16 inf makes decode fall back to converted rows: still the prefill bits, and inf/NaN outputs.</summary>
    [Fact]
    public void HalfInfinityInWeightsKeepsDecodeEqualToPrefill()
    {
        const int inDim = 96, outDim = 20, n = 4;
        float[] values = RandomFloats(inDim * outDim, 3);
        values[5 * inDim + 17] = float.PositiveInfinity;
        var (w, buffer) = Weight(GgmlType.F16, values, inDim, outDim);
        using var _ = buffer;
        float[] x = RandomFloats(n * inDim, 4);
        using var pool = new WorkerPool(2);
        float[] batch = new float[n * outDim], single = new float[outDim];
        MatMul.Compute(w, x, batch, n, pool);
        for (int t = 0; t < n; t++)
        {
            MatMul.Compute(w, x.AsSpan(t * inDim, inDim), single, 1, pool);
            Assert.Equal(batch.AsSpan(t * outDim, outDim).ToArray(), single);
            Assert.False(float.IsFinite(single[5]));
            Assert.True(float.IsFinite(single[4]) && float.IsFinite(single[6]));
        }
    }
}
