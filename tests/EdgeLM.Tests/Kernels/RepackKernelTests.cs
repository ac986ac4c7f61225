using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using EdgeLM.Formats;
using EdgeLM.Kernels;
using EdgeLM.Kernels.Quantized;
using EdgeLM.Tensors;
using EdgeLM.Tests.Support;

namespace EdgeLM.Tests.Kernels;

[Trait("Category", "Kernels")]
public unsafe partial class RepackKernelTests
{
    /// <summary>Raw random blocks (any level, including Q8_0's -128) with finite half scales (and mins).</summary>
    private static (Tensor, NativeBuffer) RandomWeight(GgmlType type, int k, int rows, int seed) =>
        PanelTestSupport.RandomWeight(type, k, rows, seed, RepackedMatrix.HasMin(type) ? [0, 2] : [0], normalBase: 0x2000);

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
        if (Avx2.IsSupported && Fma.IsSupported) paths.Add(("avx2", RepackKernels.TileAvx2<RepackKernels.Avx2ByteDot>));
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
    [InlineData(GgmlType.Q4_1, 896, 1)]
    [InlineData(GgmlType.Q4_1, 896, 5)]
    [InlineData(GgmlType.Q4_1, 96, 67)]
    [InlineData(GgmlType.Q5_1, 896, 3)]
    [InlineData(GgmlType.Q5_1, 96, 64)]
    [InlineData(GgmlType.Q5_1, 4864, 1)]
    [InlineData(GgmlType.Q8_0, 896, 1)]
    [InlineData(GgmlType.Q8_0, 896, 5)]
    [InlineData(GgmlType.Q8_0, 64, 67)]
    [InlineData(GgmlType.Q8_0, 4864, 3)]
    public void EveryPathEqualsTheReferenceBitwise(GgmlType type, int k, int n)
    {
        const int rows = 16;
        var (w, buffer) = RandomWeight(type, k, rows, k + n);
        using var _ = buffer;
        var (xq, info) = Activations(k, n, n);
        AssertPathsMatchReference(w, xq, info, n, Paths());
    }

    /// <summary>
    /// The integer sums at their largest: Q8_0 levels -128 and 127, Q4_0/Q5_0 (and Q4_1/Q5_1) unsigned levels 15/31 (and 0), against
    /// activations of +-127, signed so that products of both signs add up. One maddubs pair then reaches 2 * 128 * 127
    /// (Q8_0), and the AVX2 op's 16-bit runs 8 * 2 * 15 * 127 (Q4_0) or 2 * 2 * 31 * 127 (Q5_0): had any of them
    /// saturated or wrapped, the AVX2 path would differ from the reference here (and from vpdpbusd, which does not).
    /// </summary>
    [Theory]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q5_0)]
    [InlineData(GgmlType.Q4_1)]
    [InlineData(GgmlType.Q5_1)]
    [InlineData(GgmlType.Q8_0)]
    public void ExtremeLevelsDoNotSaturateAnyPath(GgmlType type)
    {
        var (w, buffer) = ExtremeWeight(type, k: 256, rows: 16);
        using var _ = buffer;
        var (xq, info) = ExtremeActivations(k: 256, n: 5);
        AssertPathsMatchReference(w, xq, info, 5, Paths());
    }

    [SkippableFact]
    public void AvxVnniPathEqualsTheReferenceBitwise()
    {
        SkipTest.Unless(Avx2.IsSupported && Fma.IsSupported && AvxVnni.IsSupported, "AVX-VNNI is not supported on this CPU (or disabled by DOTNET_EnableAVXVNNI=0)");
        List<(string, TilePath)> vnni = [("avx-vnni", RepackKernels.TileAvx2<RepackKernels.VnniByteDot>), ("dispatch", RepackKernels.Tile)];
        foreach (var type in new[] { GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.Q8_0 })
        {
            foreach (var (k, n) in new[] { (896, 1), (896, 5), (96, 67), (4864, 3) })
            {
                var (w, buffer) = RandomWeight(type, k, 16, k + n);
                using var _ = buffer;
                var (xq, info) = Activations(k, n, n);
                AssertPathsMatchReference(w, xq, info, n, vnni);
            }
            var (e, eBuffer) = ExtremeWeight(type, k: 256, rows: 16);
            using var __ = eBuffer;
            var (exq, einfo) = ExtremeActivations(k: 256, n: 5);
            AssertPathsMatchReference(e, exq, einfo, 5, vnni);
        }
    }

    /// <summary>Blocks of the file layout at the levels' extremes: per row and block uniformly high, low, or mixed.</summary>
    private static (Tensor, NativeBuffer) ExtremeWeight(GgmlType type, int k, int rows)
    {
        long bytes = Tensor.ExpectedBytes(type, [k, rows]);
        var buffer = new NativeBuffer(bytes);
        var random = new Random(17);
        int blockBytes = GgmlTypeInfo.BlockBytes(type);
        for (int r = 0; r < rows; r++)
            for (int b = 0; b < k / 32; b++)
            {
                byte* block = buffer.Pointer + (long)r * (k / 32) * blockBytes + (long)b * blockBytes;
                *(ushort*)block = (ushort)(0x3C00 + 0x400 * ((r + b) % 3) | ((r & 4) << 13)); // 1, 2 or 4, some negative
                int levelsAt = 2;
                if (RepackedMatrix.HasMin(type))
                {
                    *(ushort*)(block + 2) = (ushort)(0x3800 | ((r & 2) << 14)); // min +-0.5
                    levelsAt = 4;
                }
                int pattern = (r + b) % 3;
                // Q8_0 levels: 127 or -128; nibble formats' bytes: all bits set (u = 15 or 31) or none (u = 0).
                byte high = type == GgmlType.Q8_0 ? (byte)127 : (byte)0xFF, low = type == GgmlType.Q8_0 ? (byte)0x80 : (byte)0;
                for (int i = levelsAt; i < blockBytes; i++)
                    block[i] = pattern switch { 0 => high, 1 => low, _ => random.Next(2) == 0 ? high : low };
            }
        return (new Tensor("w", type, [k, rows], buffer.Pointer, bytes), buffer);
    }

    /// <summary>Q8_0 activation rows of +-127 only (per token and block: all +127, all -127, or mixed), with their side data.</summary>
    private static (byte[] Xq, byte[] Info) ExtremeActivations(int k, int n)
    {
        var random = new Random(23);
        int blocks = k / 32;
        long rowBytes = ActivationQuantizer.RowBytes(ActivationFormat.Q8_0, k);
        var xq = new byte[rowBytes * n];
        var info = new byte[(long)blocks * RepackKernels.ActivationInfoBytes * n];
        for (int t = 0; t < n; t++)
            for (int b = 0; b < blocks; b++)
            {
                int o = (int)(t * rowBytes) + b * 34;
                BitConverter.TryWriteBytes(xq.AsSpan(o), (ushort)(0x2000 + 0x400 * (t % 2)));
                for (int e = 0; e < 32; e++)
                    xq[o + 2 + e] = (byte)(sbyte)(((t + b) % 3) switch { 0 => 127, 1 => -127, _ => random.Next(2) == 0 ? 127 : -127 });
            }
        fixed (byte* px = xq, pi = info)
            for (int t = 0; t < n; t++)
                RepackKernels.ActivationInfoRow(px + t * rowBytes, blocks, pi + (long)t * blocks * RepackKernels.ActivationInfoBytes);
        return (xq, info);
    }

    /// <summary>ReferenceDot of every row of w (file layout) with each of the n activation rows: [token][row].</summary>
    private static float[] ReferenceOutputs(Tensor w, byte[] xq, int n)
    {
        int k = w.RowLength, rows = (int)w.RowCount;
        long xStride = xq.Length / n;
        var expected = new float[n * rows];
        fixed (byte* px = xq)
            for (int t = 0; t < n; t++)
                for (int r = 0; r < rows; r++)
                    expected[t * rows + r] = RepackKernels.ReferenceDot(w.Type, w.Data + r * w.RowStride, px + t * xStride, k);
        Assert.Contains(expected, v => v != 0);
        return expected;
    }

    /// <summary>Every path's tile of w against the n activation rows equals ReferenceDot on the file layout, bit for bit.</summary>
    private static void AssertPathsMatchReference(Tensor w, byte[] xq, byte[] info, int n, List<(string, TilePath)> paths)
    {
        GgmlType type = w.Type;
        int k = w.RowLength, rows = (int)w.RowCount;
        using var m = RepackedMatrix.Pack(w)!;
        Assert.NotNull(m);
        long xStride = xq.Length / n, infoStride = info.Length / n;
        var expected = ReferenceOutputs(w, xq, n);

        foreach (var (name, path) in paths)
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
    [InlineData(GgmlType.Q4_1)]
    [InlineData(GgmlType.Q5_0)]
    [InlineData(GgmlType.Q5_1)]
    [InlineData(GgmlType.Q8_0)]
    public void MatMulUsesPanelsBitwiseForAnyThreadCountAndTokenPosition(GgmlType type)
    {
        var (w, buffer) = RandomWeight(type, k: 128, rows: 40, 5);
        using var _ = buffer;
        PanelTestSupport.MatMulMatchesReference(w, ActivationFormat.Q8_0, RepackKernels.ReferenceDot);
    }

    [Theory]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q4_1)]
    [InlineData(GgmlType.Q5_0)]
    [InlineData(GgmlType.Q5_1)]
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

        var (f, fBuffer) = PanelTestSupport.RandomWeight(GgmlType.Q2_K, 256, 8, 3, [80, 82], normalBase: 0x2000);
        using var ___ = fBuffer;
        Assert.False(RepackedMatrix.CanPack(f)); // a type without a panel layout

        var (q, qBuffer) = RandomWeight(GgmlType.Q4_1, 64, 8, 4);
        using var ____ = qBuffer;
        Assert.NotNull(RepackedMatrix.Pack(q));
        *(ushort*)(q.Data + 20 + 2) = 0xFE00; // a NaN min in the second block
        Assert.Null(RepackedMatrix.Pack(q));
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
