using EdgeLM.Kernels;
using EdgeLM.Kernels.Quantized;
using EdgeLM.Tensors;
using Xunit;

namespace EdgeLM.Tests.Kernels;

/// <summary>Test data and the MatMul check shared by both panel families (RepackKernels, KPanelKernels).</summary>
internal static unsafe class PanelTestSupport
{
    public delegate float ReferenceDot(GgmlType type, byte* row, byte* activations, int k);

    // Normal, negative, subnormal, zero and the largest finite half: the kernels' exact half conversion.
    private static readonly ushort[] Scales = [0x2E66, 0xAE66, 0x1400, 0x9400, 0x0001, 0x83FF, 0x0000, 0x7BFF, 0x3C00];

    /// <summary>
    /// Raw random blocks (every quant level) whose half fields at <paramref name="halfOffsets"/> in each block are
    /// finite: a quarter from <see cref="Scales"/>, the rest normal halves of either sign from exponent
    /// <paramref name="normalBase"/> up.
    /// </summary>
    public static (Tensor, NativeBuffer) RandomWeight(GgmlType type, int k, int rows, int seed, int[] halfOffsets, int normalBase)
    {
        var random = new Random(seed);
        long bytes = Tensor.ExpectedBytes(type, [k, rows]);
        var buffer = new NativeBuffer(bytes);
        random.NextBytes(buffer.Span);
        int blockBytes = GgmlTypeInfo.BlockBytes(type);
        for (long b = 0; b < bytes / blockBytes; b++)
            foreach (int o in halfOffsets)
                *(ushort*)(buffer.Pointer + b * blockBytes + o) = random.Next(4) == 0
                    ? Scales[random.Next(Scales.Length)]
                    : (ushort)(normalBase + random.Next(0x1000) | (random.Next(2) << 15));
        return (new Tensor("w", type, [k, rows], buffer.Pointer, bytes), buffer);
    }

    /// <summary>
    /// With the packed form attached, MatMul gives exactly the reference dot on the file layout, for a prompt spanning
    /// more than one token chunk and for single tokens, whatever the thread count.
    /// </summary>
    public static void MatMulMatchesReference(Tensor w, ActivationFormat format, ReferenceDot reference)
    {
        int k = w.RowLength, rows = (int)w.RowCount, n = MatMul.TokensPerChunk + 3;
        Assert.True(WeightRepacker.Attach(w));
        try
        {
            var random = new Random(9);
            float[] x = Enumerable.Range(0, n * k).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
            var xq = new byte[ActivationQuantizer.RowBytes(format, k)];
            var expected = new float[n * rows];
            for (int t = 0; t < n; t++)
            {
                ActivationQuantizer.Row(format, x.AsSpan(t * k, k), xq);
                fixed (byte* px = xq)
                    for (int r = 0; r < rows; r++) expected[t * rows + r] = reference(w.Type, w.Data + r * w.RowStride, px, k);
            }
            foreach (int threads in new[] { 1, 2, 3 })
            {
                using var pool = new WorkerPool(threads);
                var actual = new float[n * rows];
                MatMul.Compute(w, x, actual, n, pool);
                Assert.Equal(expected, actual);
                var single = new float[rows];
                foreach (int t in new[] { 0, 5, n - 1 })
                {
                    MatMul.Compute(w, x.AsSpan(t * k, k), single, 1, pool);
                    Assert.Equal(expected.AsSpan(t * rows, rows).ToArray(), single);
                }
            }
        }
        finally
        {
            WeightRepacker.Detach(w);
        }
    }
}
