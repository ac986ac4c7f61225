using EdgeLM.Kernels;
using EdgeLM.Tensors;

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
        }
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
