using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using EdgeLM.Kernels;
using EdgeLM.Kernels.Quantized;
using EdgeLM.Tensors;
using EdgeLM.Tensors.Quantization;
using EdgeLM.Tests.Support;

namespace EdgeLM.Tests.Kernels;

/// <summary>Q4_K / Q5_K / Q6_K panels (<see cref="KPanelKernels"/>): every path bitwise equal to the file-layout reference.</summary>
[Trait("Category", "Kernels")]
public unsafe class KPanelKernelTests
{
    /// <summary>Raw random blocks (every level and fifth bit, 6-bit scale and min, signed Q6_K scale) with finite half scales.</summary>
    private static (Tensor, NativeBuffer) RandomWeight(GgmlType type, int k, int rows, int seed) =>
        PanelTestSupport.RandomWeight(type, k, rows, seed, type == GgmlType.Q6_K ? [208] : [0, 2], normalBase: 0x1800);

    /// <summary>n activation rows as block_q8_K (row 1 starts with an all-zero block, magnitudes vary by row).</summary>
    private static byte[] Activations(int k, int n, int seed)
    {
        var random = new Random(seed);
        long rowBytes = ActivationQuantizer.RowBytes(ActivationFormat.Q8_K, k);
        var xq = new byte[rowBytes * n];
        var row = new float[k];
        for (int t = 0; t < n; t++)
        {
            for (int i = 0; i < k; i++) row[i] = t == 1 && i < 256 ? 0 : (float)(random.NextDouble() * 2 - 1) * (1 + t % 3);
            ActivationQuantizer.Row(ActivationFormat.Q8_K, row, xq.AsSpan((int)(t * rowBytes), (int)rowBytes));
        }
        return xq;
    }

    private delegate void TilePath(RepackedMatrix m, byte* panels, int panelCount, byte* x, long xStride, int cols, float* y, long yStride);

    private static List<(string, TilePath)> Paths()
    {
        var paths = new List<(string, TilePath)> { ("scalar", KPanelKernels.TileScalar), ("portable128", KPanelKernels.Tile128Portable) };
        if (Vector128.IsHardwareAccelerated) paths.Add(("vector128", KPanelKernels.Tile128));
        if (Avx2.IsSupported && Fma.IsSupported) paths.Add(("avx2", KPanelKernels.TileAvx2<KPanelKernels.Avx2WordDot>));
        paths.Add(("dispatch", KPanelKernels.Tile));
        return paths;
    }

    [Theory]
    [InlineData(GgmlType.Q4_K, 256, 1)]
    [InlineData(GgmlType.Q4_K, 1024, 5)]
    [InlineData(GgmlType.Q4_K, 768, 9)]
    [InlineData(GgmlType.Q5_K, 256, 1)]
    [InlineData(GgmlType.Q5_K, 1024, 5)]
    [InlineData(GgmlType.Q5_K, 768, 9)]
    [InlineData(GgmlType.Q6_K, 256, 1)]
    [InlineData(GgmlType.Q6_K, 1024, 5)]
    [InlineData(GgmlType.Q6_K, 768, 9)]
    public void EveryPathEqualsTheReferenceBitwise(GgmlType type, int k, int n)
    {
        const int rows = 16;
        var (w, buffer) = RandomWeight(type, k, rows, k + n);
        using var _ = buffer;
        AssertPathsMatchReference(w, Activations(k, n, n), n, Paths());
    }

    /// <summary>
    /// The integer sums at their largest: every level 15 (Q4_K), 31 (Q5_K) or 63 (Q6_K), or 0, with the largest scales
    /// and mins (Q4_K / Q5_K 63, Q6_K 127 and -128), against activations of +-127. A Q4_K 16-bit run then reaches
    /// 8 * 2 * 15 * 127, a Q5_K run 4 * 2 * 31 * 127 and a Q6_K pair 2 * 2 * 63 * 127, just below 2^15: had any
    /// saturated or wrapped (a Q5_K run of 8 groups would), the AVX2 path would differ here.
    /// </summary>
    [Theory]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q5_K)]
    [InlineData(GgmlType.Q6_K)]
    public void ExtremeLevelsDoNotSaturateAnyPath(GgmlType type)
    {
        var (w, buffer) = ExtremeWeight(type, k: 512, rows: 16);
        using var _ = buffer;
        AssertPathsMatchReference(w, ExtremeActivations(k: 512, n: 5), 5, Paths());
    }

    [SkippableFact]
    public void AvxVnniPathEqualsTheReferenceBitwise()
    {
        SkipTest.Unless(Avx2.IsSupported && Fma.IsSupported && AvxVnni.IsSupported, "AVX-VNNI is not supported on this CPU (or disabled by DOTNET_EnableAVXVNNI=0)");
        List<(string, TilePath)> vnni = [("avx-vnni", KPanelKernels.TileAvx2<KPanelKernels.VnniWordDot>), ("dispatch", KPanelKernels.Tile)];
        foreach (var type in new[] { GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K })
        {
            foreach (var (k, n) in new[] { (256, 1), (1024, 5), (768, 9) })
            {
                var (w, buffer) = RandomWeight(type, k, 16, k + n);
                using var _ = buffer;
                AssertPathsMatchReference(w, Activations(k, n, n), n, vnni);
            }
            var (e, eBuffer) = ExtremeWeight(type, k: 512, rows: 16);
            using var __ = eBuffer;
            AssertPathsMatchReference(e, ExtremeActivations(k: 512, n: 5), 5, vnni);
        }
    }

    /// <summary>File-layout blocks whose quant bytes are per row and block all ones, all zeros or mixed; largest scales.</summary>
    private static (Tensor, NativeBuffer) ExtremeWeight(GgmlType type, int k, int rows)
    {
        long bytes = Tensor.ExpectedBytes(type, [k, rows]);
        var buffer = new NativeBuffer(bytes);
        var random = new Random(19);
        int blockBytes = GgmlTypeInfo.BlockBytes(type), blocks = k / 256;
        for (int r = 0; r < rows; r++)
            for (int b = 0; b < blocks; b++)
            {
                byte* block = buffer.Pointer + ((long)r * blocks + b) * blockBytes;
                int pattern = (r + b) % 3;
                // Quant bytes (Q5_K: fifth bits too): levels 15 / 31 / 63 (all bits set), 0, or a mix of both per byte.
                var (first, end) = type switch { GgmlType.Q4_K => (16, 144), GgmlType.Q5_K => (16, 176), _ => (0, 192) };
                for (int i = first; i < end; i++) block[i] = pattern switch { 0 => 0xFF, 1 => 0, _ => random.Next(2) == 0 ? (byte)0xFF : (byte)0 };
                ushort d = (ushort)(0x2C00 + 0x400 * (r % 3) | ((r & 4) << 13));
                if (type != GgmlType.Q6_K)
                {
                    *(ushort*)block = d;
                    *(ushort*)(block + 2) = (ushort)(0x2800 + 0x400 * (b % 2));
                    for (int i = 4; i < 16; i++) block[i] = 0xFF; // every 6-bit scale and min 63
                }
                else
                {
                    for (int g = 0; g < 16; g++) block[192 + g] = (byte)(sbyte)((r + g) % 2 == 0 ? 127 : -128);
                    *(ushort*)(block + 208) = d;
                }
            }
        return (new Tensor("w", type, [k, rows], buffer.Pointer, bytes), buffer);
    }

    /// <summary>block_q8_K rows of +-127 only (per token and block: all +127, all -127, or mixed), with their bsums.</summary>
    private static byte[] ExtremeActivations(int k, int n)
    {
        var random = new Random(29);
        int blocks = k / 256;
        long rowBytes = ActivationQuantizer.RowBytes(ActivationFormat.Q8_K, k);
        var xq = new byte[rowBytes * n];
        for (int t = 0; t < n; t++)
            for (int b = 0; b < blocks; b++)
            {
                int o = (int)(t * rowBytes) + b * KQuant.Q8BlockBytes;
                BitConverter.TryWriteBytes(xq.AsSpan(o), 0.01f * (1 + t));
                for (int g = 0; g < 16; g++)
                {
                    int sum = 0;
                    for (int e = 16 * g; e < 16 * g + 16; e++)
                    {
                        sbyte v = (sbyte)(((t + b) % 3) switch { 0 => 127, 1 => -127, _ => random.Next(2) == 0 ? 127 : -127 });
                        xq[o + KQuant.Q8Quants + e] = (byte)v;
                        sum += v;
                    }
                    BitConverter.TryWriteBytes(xq.AsSpan(o + KQuant.Q8Bsums + 2 * g), (short)sum);
                }
            }
        return xq;
    }

    /// <summary>Every path's tile of w against the n activation rows equals ReferenceDot on the file layout, bit for bit.</summary>
    private static void AssertPathsMatchReference(Tensor w, byte[] xq, int n, List<(string, TilePath)> paths)
    {
        GgmlType type = w.Type;
        int k = w.RowLength, rows = (int)w.RowCount;
        using var m = RepackedMatrix.Pack(w)!;
        Assert.NotNull(m);
        long xStride = xq.Length / n;
        var expected = new float[n * rows];
        fixed (byte* px = xq)
            for (int t = 0; t < n; t++)
                for (int r = 0; r < rows; r++)
                    expected[t * rows + r] = KPanelKernels.ReferenceDot(type, w.Data + r * w.RowStride, px + t * xStride, k);
        Assert.Contains(expected, v => v != 0);

        foreach (var (name, path) in paths)
        {
            var actual = new float[n * rows + 1];
            actual[^1] = 42;
            fixed (byte* px = xq)
            fixed (float* py = actual)
                path(m, m.Data, rows / RepackedMatrix.PanelRows, px, xStride, n, py, rows);
            for (int i = 0; i < expected.Length; i++)
                Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i]),
                    $"{type} k={k} n={n} {name}: output {i} is {actual[i]}, reference {expected[i]}");
            Assert.Equal(42, actual[^1]);
        }
    }

    [Theory]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q5_K)]
    [InlineData(GgmlType.Q6_K)]
    public void ReferenceAgreesWithTheKQuantDotAndFloat64(GgmlType type)
    {
        // Real quantized rows: the reference is the same sum as ggml's dot up to float rounding.
        const int k = 2048;
        var random = new Random(3);
        var wf = Enumerable.Range(0, k).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var w = new byte[GgmlTypeInfo.RowBytes(type, k)];
        Quantize.Row(type, wf, w);
        byte[] xq = Activations(k, 1, 11);
        var wd = new float[k];
        var xd = new float[k];
        Dequantize.Row(type, w, wd);
        Dequantize.Row(GgmlType.Q8_K, xq, xd);
        double exact = 0, magnitude = 0;
        for (int i = 0; i < k; i++) { exact += (double)wd[i] * xd[i]; magnitude += Math.Abs((double)wd[i] * xd[i]); }
        fixed (byte* pw = w, px = xq)
        {
            float reference = KPanelKernels.ReferenceDot(type, pw, px, k);
            float ggml = type switch
            {
                GgmlType.Q4_K => Q4_KKernel.DotScalar(pw, px, k),
                GgmlType.Q5_K => Q5_KKernel.DotScalar(pw, px, k),
                _ => Q6_KKernel.DotScalar(pw, px, k),
            };
            Assert.True(Math.Abs(reference - exact) <= 2e-6 * magnitude, $"{type}: reference {reference} vs float64 {exact}");
            Assert.True(Math.Abs(reference - ggml) <= 4e-6 * magnitude, $"{type}: reference {reference} vs DotScalar {ggml}");
        }
    }

    [Theory]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q5_K)]
    [InlineData(GgmlType.Q6_K)]
    public void MatMulUsesPanelsBitwiseForAnyThreadCountAndTokenPosition(GgmlType type)
    {
        var (w, buffer) = RandomWeight(type, k: 512, rows: 40, 5);
        using var _ = buffer;
        PanelTestSupport.MatMulMatchesReference(w, ActivationFormat.Q8_K, KPanelKernels.ReferenceDot);
    }

    [Theory]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q5_K)]
    [InlineData(GgmlType.Q6_K)]
    public void PackedRowsDequantizeLikeTheFile(GgmlType type)
    {
        var (w, buffer) = RandomWeight(type, 512, 24, 7);
        using var _ = buffer;
        using var m = RepackedMatrix.Pack(w)!;
        var expected = new float[512];
        var actual = new float[512];
        for (int r = 0; r < 24; r++)
        {
            Dequantize.Row(type, w.Row(r), expected);
            fixed (float* pa = actual) m.DequantizeRow(r, pa);
            Assert.Equal(expected.Select(BitConverter.SingleToInt32Bits), actual.Select(BitConverter.SingleToInt32Bits));
        }
    }

    /// <summary>
    /// Each activation row alone (the written-out decode kernel) gives the bits of the same row inside a prompt (the
    /// 4-column prefill tile and its 1-column remainder), on every path.
    /// </summary>
    [Theory]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q5_K)]
    [InlineData(GgmlType.Q6_K)]
    public void DecodeEqualsPrefillBitwise(GgmlType type)
    {
        const int k = 768, rows = 16, n = 6;
        var (w, buffer) = RandomWeight(type, k, rows, 13);
        using var _ = buffer;
        using var m = RepackedMatrix.Pack(w)!;
        byte[] xq = Activations(k, n, 17);
        long xStride = xq.Length / n;
        foreach (var (name, path) in Paths())
        {
            var prefill = new float[n * rows];
            var decode = new float[n * rows];
            fixed (byte* px = xq)
            fixed (float* pp = prefill, pd = decode)
            {
                path(m, m.Data, rows / RepackedMatrix.PanelRows, px, xStride, n, pp, rows);
                for (int t = 0; t < n; t++) path(m, m.Data, rows / RepackedMatrix.PanelRows, px + t * xStride, xStride, 1, pd + t * rows, rows);
            }
            Assert.Contains(prefill, v => v != 0);
            Assert.True(prefill.Select(BitConverter.SingleToInt32Bits).SequenceEqual(decode.Select(BitConverter.SingleToInt32Bits)),
                $"{type} {name}: decode differs from prefill");
        }
    }

    [Theory]
    [InlineData(GgmlType.Q4_K, 2)]
    [InlineData(GgmlType.Q5_K, 0)]
    [InlineData(GgmlType.Q6_K, 208)]
    public void InfiniteScalesAndOddShapesStayUnpacked(GgmlType type, int halfOffset)
    {
        var (w, buffer) = RandomWeight(type, 512, 8, 1);
        using var _ = buffer;
        *(ushort*)(w.Data + GgmlTypeInfo.BlockBytes(type) + halfOffset) = 0xFC00; // -infinity in row 0, block 1
        Assert.Null(RepackedMatrix.Pack(w));

        var (v, vBuffer) = RandomWeight(type, 256, 12, 2);
        using var __ = vBuffer;
        Assert.False(RepackedMatrix.CanPack(v));
    }
}
