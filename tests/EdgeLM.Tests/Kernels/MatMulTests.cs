using EdgeLM.Kernels;
using EdgeLM.Kernels.Quantized;
using EdgeLM.Tensors;
using EdgeLM.Tensors.Quantization;

namespace EdgeLM.Tests.Kernels;

[Trait("Category", "Kernels")]
public unsafe class MatMulTests
{
    private static (Tensor, NativeBuffer) RandomWeight(GgmlType type, int inDim, int outDim, int seed)
    {
        var random = new Random(seed);
        long[] shape = [inDim, outDim];
        long bytes = Tensor.ExpectedBytes(type, shape);
        var buffer = new NativeBuffer(bytes);
        for (long i = 0; i < (long)inDim * outDim; i++)
        {
            float v = (float)(random.NextDouble() * 2 - 1);
            switch (type)
            {
                case GgmlType.F32: ((float*)buffer.Pointer)[i] = v; break;
                case GgmlType.F16: ((Half*)buffer.Pointer)[i] = (Half)v; break;
                default: ((ushort*)buffer.Pointer)[i] = (ushort)(BitConverter.SingleToUInt32Bits(v) >> 16); break;
            }
        }
        return (new Tensor("w", type, shape, buffer.Pointer, bytes), buffer);
    }

    [Theory]
    [InlineData(GgmlType.F32, 64, 37, 1)]
    [InlineData(GgmlType.F32, 67, 40, 5)]
    [InlineData(GgmlType.F16, 96, 41, 1)]
    [InlineData(GgmlType.F16, 33, 8, 3)]
    [InlineData(GgmlType.BF16, 64, 21, 2)]
    [InlineData(GgmlType.F16, 40, 19, 70)]
    [InlineData(GgmlType.F32, 41, 18, 7)]
    public void MatchesScalarReferenceForAnyThreadCount(GgmlType type, int inDim, int outDim, int n)
    {
        var (w, buffer) = RandomWeight(type, inDim, outDim, inDim * outDim);
        using var _ = buffer;
        var random = new Random(n);
        float[] x = Enumerable.Range(0, n * inDim).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        float[] expected = new float[n * outDim];
        MatMul.ComputeScalar(w, x, expected, n);

        float[]? first = null;
        foreach (int threads in new[] { 1, 2, 3 })
        {
            using var pool = new WorkerPool(threads);
            float[] actual = new float[n * outDim + 1];
            actual[^1] = 99;
            MatMul.Compute(w, x, actual, n, pool);
            for (int i = 0; i < expected.Length; i++)
                Assert.True(Math.Abs(expected[i] - actual[i]) < 1e-4f, $"threads {threads}, output {i}: {expected[i]} vs {actual[i]}");
            Assert.Equal(99, actual[^1]);
            first ??= actual;
            Assert.Equal(first, actual);
            // Decode (n = 1, F16 converted in registers) gives the same bits as the token inside a batch.
            var single = new float[outDim];
            MatMul.Compute(w, x.AsSpan((n - 1) * inDim, inDim), single, 1, pool);
            Assert.Equal(actual.AsSpan((n - 1) * outDim, outDim).ToArray(), single);
        }
    }

    private static (Tensor, NativeBuffer) QuantizedWeight(GgmlType type, int inDim, int outDim, int seed)
    {
        var random = new Random(seed);
        var values = new float[inDim * outDim];
        for (int i = 0; i < values.Length; i++) values[i] = (float)(random.NextDouble() * 2 - 1);
        byte[] bytes = Quantize.Rows(type, values, inDim);
        var buffer = new NativeBuffer(bytes.Length);
        bytes.CopyTo(buffer.Span);
        return (new Tensor("w", type, [inDim, outDim], buffer.Pointer, bytes.Length), buffer);
    }

    /// <summary>
    /// Integer kernels: y must equal the float dot of the dequantized weights with the dequantized quantized input
    /// (what the kernels compute, up to summation order), for any thread count and bitwise independent of the
    /// token's position in the batch (decode and prefill give the same bits), across token chunks.
    /// </summary>
    [Theory]
    [InlineData(GgmlType.Q8_0)]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q4_1)]
    [InlineData(GgmlType.Q5_0)]
    [InlineData(GgmlType.Q5_1)]
    public void QuantizedMatchesDequantizedOperandsAndIsPositionIndependent(GgmlType type)
    {
        const int inDim = 96, outDim = 37, n = MatMul.TokensPerChunk + 5;
        var (w, buffer) = QuantizedWeight(type, inDim, outDim, 11);
        using var _ = buffer;
        MatMul.KernelTile(type, out var format);
        var random = new Random(3);
        float[] x = Enumerable.Range(0, n * inDim).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();

        float[] xq = new float[x.Length];
        var block = new byte[ActivationQuantizer.RowBytes(format, inDim)];
        for (int t = 0; t < n; t++)
        {
            ActivationQuantizer.Row(format, x.AsSpan(t * inDim, inDim), block);
            Dequantize.Row(ActivationQuantizer.TypeOf(format), block, xq.AsSpan(t * inDim, inDim));
        }
        float[] row = new float[inDim];
        float[]? first = null;
        foreach (int threads in new[] { 1, 2, 3 })
        {
            using var pool = new WorkerPool(threads);
            float[] actual = new float[n * outDim];
            MatMul.Compute(w, x, actual, n, pool);
            for (int r = 0; r < outDim; r++)
            {
                Dequantize.Row(type, w.Row(r), row);
                for (int t = 0; t < n; t++)
                {
                    double expected = 0, scale = 0;
                    for (int i = 0; i < inDim; i++) { expected += (double)row[i] * xq[t * inDim + i]; scale += Math.Abs((double)row[i] * xq[t * inDim + i]); }
                    double tolerance = (format == ActivationFormat.Q8_1 ? 2e-3 : 1e-5) * scale + 1e-6;
                    Assert.True(Math.Abs(expected - actual[t * outDim + r]) <= tolerance, $"{type} threads {threads} row {r} token {t}");
                }
            }
            first ??= actual;
            Assert.Equal(first, actual);
            var single = new float[outDim];
            foreach (int t in new[] { 0, 3, n - 1 })
            {
                MatMul.Compute(w, x.AsSpan(t * inDim, inDim), single, 1, pool);
                Assert.Equal(actual.AsSpan(t * outDim, outDim).ToArray(), single);
            }
        }
    }

    [Fact]
    public void FusedEqualsSeparateCallsForMixedTypes()
    {
        const int inDim = 64, n = 5;
        var (a, ba) = QuantizedWeight(GgmlType.Q8_0, inDim, 20, 1);
        var (b, bb) = QuantizedWeight(GgmlType.Q4_1, inDim, 33, 2);
        var (c, bc) = RandomWeight(GgmlType.F16, inDim, 17, 3);
        using var _a = ba; using var _b = bb; using var _c = bc;
        var random = new Random(9);
        float[] x = Enumerable.Range(0, n * inDim).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        using var pool = new WorkerPool(2);
        float[] ya = new float[n * 20], yb = new float[n * 33], yc = new float[n * 17];
        MatMul.Compute(a, x, ya, n, pool);
        MatMul.Compute(b, x, yb, n, pool);
        MatMul.Compute(c, x, yc, n, pool);
        float[] fa = new float[ya.Length], fb = new float[yb.Length], fc = new float[yc.Length];
        fixed (float* px = x, pa = fa, pb = fb, pc = fc) MatMul.ComputeFused(pool, px, n, a, pa, b, pb, c, pc);
        Assert.Equal(ya, fa);
        Assert.Equal(yb, fb);
        Assert.Equal(yc, fc);
    }

    [Fact]
    public void RejectsMismatchedBuffers()
    {
        var (w, buffer) = RandomWeight(GgmlType.F32, 8, 4, 1);
        using var _ = buffer;
        using var pool = new WorkerPool(1);
        Assert.Throws<ArgumentException>(() => MatMul.Compute(w, new float[15], new float[8], 2, pool));
        Assert.Throws<ArgumentException>(() => MatMul.Compute(w, new float[16], new float[7], 2, pool));
    }
}
