using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using EdgeLM.Formats;
using EdgeLM.Kernels;
using EdgeLM.Kernels.Quantized;
using EdgeLM.Tensors;

namespace EdgeLM.Tests.Kernels;

[Trait("Category", "Kernels")]
public unsafe class RepackKernelTests
{
    /// <summary>Raw random blocks (any level, including Q8_0's -128) with finite half scales.</summary>
    private static (Tensor, NativeBuffer) RandomWeight(GgmlType type, int k, int rows, int seed) =>
        PanelTestSupport.RandomWeight(type, k, rows, seed, [0], normalBase: 0x2000);

    /// <summary>n activation rows quantized to Q8_0 (one all-zero block included), and their side data.</summary>
    private static (byte[] Xq, byte[] Info) Activations(int k, int n, int seed)
    {
        var random = new Random(seed);
        long rowBytes = ActivationQuantizer.RowBytes(ActivationFormat.Q8_0, k);
        var xq = new byte[rowBytes * n];
        var info = new byte[(long)k / 32 * RepackKernels.ActivationInfoBytes * n];
        var row = new float[k];
        for (int t = 0; t < n; t++)
        {
            for (int i = 0; i < k; i++) row[i] = t == 1 && i < 32 ? 0 : (float)(random.NextDouble() * 2 - 1) * (1 + t % 3);
            ActivationQuantizer.Row(ActivationFormat.Q8_0, row, xq.AsSpan((int)(t * rowBytes), (int)rowBytes));
            fixed (byte* px = xq, pi = info)
                RepackKernels.ActivationInfoRow(px + t * rowBytes, k / 32, pi + (long)t * (k / 32) * RepackKernels.ActivationInfoBytes);
        }
        return (xq, info);
    }

    private delegate void TilePath(RepackedMatrix m, byte* panels, int panelCount, byte* x, long xStride, byte* info, long infoStride, int cols, float* y, long yStride);

    private static List<(string, TilePath)> Paths()
    {
        var paths = new List<(string, TilePath)> { ("scalar", RepackKernels.TileScalar), ("portable128", RepackKernels.Tile128Portable) };
        if (Vector128.IsHardwareAccelerated) paths.Add(("vector128", RepackKernels.Tile128));
        if (Avx2.IsSupported && Fma.IsSupported) paths.Add(("avx2", RepackKernels.TileAvx2));
        paths.Add(("dispatch", RepackKernels.Tile));
        return paths;
    }

    [Theory]
    [InlineData(GgmlType.Q4_0, 896, 1)]
    [InlineData(GgmlType.Q4_0, 896, 5)]
    [InlineData(GgmlType.Q4_0, 96, 67)]
    [InlineData(GgmlType.Q4_0, 4864, 4)]
    [InlineData(GgmlType.Q5_0, 896, 3)]
    [InlineData(GgmlType.Q5_0, 896, 4)]
    [InlineData(GgmlType.Q5_0, 96, 64)]
    [InlineData(GgmlType.Q5_0, 4864, 1)]
    [InlineData(GgmlType.Q8_0, 896, 1)]
    [InlineData(GgmlType.Q8_0, 896, 5)]
    [InlineData(GgmlType.Q8_0, 64, 67)]
    [InlineData(GgmlType.Q8_0, 4864, 3)]
    public void EveryPathEqualsTheReferenceBitwise(GgmlType type, int k, int n)
    {
        const int rows = 16;
        var (w, buffer) = RandomWeight(type, k, rows, k + n);
        using var _ = buffer;
        var m = RepackedMatrix.Pack(w)!;
        Assert.NotNull(m);
        var (xq, info) = Activations(k, n, n);
        long xStride = xq.Length / n, infoStride = info.Length / n;
        var expected = new float[n * rows];
        fixed (byte* px = xq)
            for (int t = 0; t < n; t++)
                for (int r = 0; r < rows; r++)
                    expected[t * rows + r] = RepackKernels.ReferenceDot(type, w.Data + r * w.RowStride, px + t * xStride, k);

        foreach (var (name, path) in Paths())
        {
            var actual = new float[n * rows + 1];
            actual[^1] = 42;
            fixed (byte* px = xq, pi = info)
            fixed (float* py = actual)
                path(m, m.Data, rows / RepackedMatrix.PanelRows, px, xStride, pi, infoStride, n, py, rows);
            for (int i = 0; i < expected.Length; i++)
                Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i]),
                    $"{type} k={k} n={n} {name}: output {i} is {actual[i]}, reference {expected[i]}");
            Assert.Equal(42, actual[^1]);
        }
    }

    [Theory]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q5_0)]
    [InlineData(GgmlType.Q8_0)]
    public void MatMulUsesPanelsBitwiseForAnyThreadCountAndTokenPosition(GgmlType type)
    {
        var (w, buffer) = RandomWeight(type, k: 128, rows: 40, 5);
        using var _ = buffer;
        PanelTestSupport.MatMulMatchesReference(w, ActivationFormat.Q8_0, RepackKernels.ReferenceDot);
    }

    [Theory]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q5_0)]
    [InlineData(GgmlType.Q8_0)]
    public void PackedRowsDequantizeLikeTheFile(GgmlType type)
    {
        var (w, buffer) = RandomWeight(type, 96, 24, 7);
        using var _ = buffer;
        var m = RepackedMatrix.Pack(w)!;
        var expected = new float[96];
        var actual = new float[96];
        for (int r = 0; r < 24; r++)
        {
            EdgeLM.Tensors.Quantization.Dequantize.Row(type, w.Row(r), expected);
            fixed (float* pa = actual) m.DequantizeRow(r, pa);
            Assert.Equal(expected, actual);
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => { fixed (float* pa = actual) m.DequantizeRow(24, pa); });
    }

    [Fact]
    public void RowsNotAMultipleOfEightAndInfiniteScalesStayUnpacked()
    {
        var (w, buffer) = RandomWeight(GgmlType.Q4_0, 64, 37, 1);
        using var _ = buffer;
        Assert.False(RepackedMatrix.CanPack(w));
        Assert.False(WeightRepacker.Attach(w));

        var (v, vBuffer) = RandomWeight(GgmlType.Q8_0, 64, 8, 2);
        using var __ = vBuffer;
        *(ushort*)(v.Data + 3 * 34) = 0x7C00; // +infinity
        Assert.Null(RepackedMatrix.Pack(v));
        Assert.False(WeightRepacker.Attach(v));
        using (var pool = new WorkerPool(2))
        {
            WeightRepacker.Prepare([v], pool); // found while packing, on the pool: the matrix is dropped
            Assert.Null(WeightRepacker.Find(v));
        }

        var (f, fBuffer) = RandomWeight(GgmlType.Q4_1, 64, 8, 3);
        using var ___ = fBuffer;
        Assert.False(RepackedMatrix.CanPack(f));
    }

    [Fact]
    public void PreparingLeavesTheSourceReadableInMemoryAndInMappedFiles()
    {
        // Anonymous memory must never be released (it would read back as zeros); a mapped file's pages are released
        // and read back from the file.
        var (w, buffer) = RandomWeight(GgmlType.Q8_0, 4096, 16, 4);
        using var _ = buffer;
        byte[] before = w.Bytes.ToArray();
        using (var pool = new WorkerPool(2)) WeightRepacker.Prepare([w], pool);
        try
        {
            Assert.NotNull(WeightRepacker.Find(w));
            Assert.Equal(before, w.Bytes.ToArray());
        }
        finally { WeightRepacker.Detach(w); }

        string path = Path.Combine(Path.GetTempPath(), $"edgelm-repack-{Guid.NewGuid():N}.bin");
        try
        {
            File.WriteAllBytes(path, [.. new byte[4096], .. before]);
            using var file = new MappedFile(path);
            var mapped = new Tensor("mapped", GgmlType.Q8_0, [4096, 16], file.Base + 4096, before.Length);
            using (var pool = new WorkerPool(1)) WeightRepacker.Prepare([mapped], pool);
            try
            {
                Assert.NotNull(WeightRepacker.Find(mapped));
                Assert.Equal(before, mapped.Bytes.ToArray());
            }
            finally { WeightRepacker.Detach(mapped); }
        }
        finally { File.Delete(path); }
    }
}
