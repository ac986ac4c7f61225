using EdgeLM.Kernels;
using EdgeLM.Kernels.Quantized;
using EdgeLM.Tensors;
using Xunit;

namespace EdgeLM.Tests.Kernels;

/// <summary>
/// The check both panel families (RepackKernels, KPanelKernels) must pass: with the packed form attached, MatMul gives
/// exactly the reference dot on the file layout, for a prompt spanning more than one token chunk and for single
/// tokens, whatever the thread count.
/// </summary>
internal static unsafe class PanelMatMulCheck
{
    public delegate float ReferenceDot(GgmlType type, byte* row, byte* activations, int k);

    public static void Run(Tensor w, ActivationFormat format, ReferenceDot reference)
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
