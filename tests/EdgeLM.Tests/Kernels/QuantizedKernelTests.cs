using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using EdgeLM.Kernels.Quantized;
using EdgeLM.Tensors;
using EdgeLM.Tensors.Quantization;

namespace EdgeLM.Tests.Kernels;

/// <summary>Activation quantizers against Quantize.Row (byte-exact) and every integer dot path against DotScalar.</summary>
[Trait("Category", "Kernels")]
public unsafe class QuantizedKernelTests
{
    private static float[] RandomFloats(int n, int seed)
    {
        var random = new Random(seed);
        var v = new float[n];
        for (int i = 0; i < n; i++)
        {
            // Mixed magnitudes per block, a zero block, and exact ties for the rounding.
            double scale = Math.Pow(10, random.Next(-3, 3));
            v[i] = (float)((random.NextDouble() * 2 - 1) * scale);
        }
        if (n >= 64) v.AsSpan(32, 32).Clear();
        return v;
    }

    public static TheoryData<ActivationFormat> Formats => new() { ActivationFormat.Q8_0, ActivationFormat.Q8_1, ActivationFormat.Q8_K };

    private delegate void QuantizePath(ActivationFormat format, float* src, byte* dst, int k);

    [Theory]
    [MemberData(nameof(Formats))]
    public void ActivationQuantizersAreBitIdenticalToTheReference(ActivationFormat format)
    {
        QuantizePath[] paths = [ActivationQuantizer.Row256, ActivationQuantizer.Row128, ActivationQuantizer.RowUnchecked];
        int k = 4 * ActivationQuantizer.BlockSize(format);
        var inputs = new List<float[]> { RandomFloats(k, 1), RandomFloats(k, 2), new float[k] };
        // Ties: amax 127 gives d = 1 (Q8_0/Q8_1) and max -127 gives iscale 1 (Q8_K), so x.5 values hit the rounding rule.
        var ties = new float[k];
        for (int i = 0; i < k; i++) ties[i] = (i % 32 == 0) ? -127f : ((i % 7) - 3) + 0.5f;
        inputs.Add(ties);
        // The first element of largest magnitude decides Q8_K's sign: both signs present.
        var signs = RandomFloats(k, 3);
        signs[5] = 50; signs[9] = -50;
        inputs.Add(signs);
        foreach (var x in inputs)
        {
            var expected = new byte[ActivationQuantizer.RowBytes(format, k)];
            Quantize.Row(ActivationQuantizer.TypeOf(format), x, expected);
            for (int p = 0; p < paths.Length; p++)
            {
                var actual = new byte[expected.Length];
                fixed (float* px = x) fixed (byte* pa = actual) paths[p](format, px, pa, k);
                Assert.True(expected.AsSpan().SequenceEqual(actual), $"{format} path {p}: first difference at byte {expected.AsSpan().CommonPrefixLength(actual)}");
            }
        }
    }

    [Fact]
    public void ActivationRowRejectsPartialBlocks()
    {
        Assert.Throws<ArgumentException>(() => ActivationQuantizer.Row(ActivationFormat.Q8_0, new float[33], new byte[100]));
        Assert.Throws<ArgumentException>(() => ActivationQuantizer.Row(ActivationFormat.Q8_0, new float[64], new byte[67]));
    }

    [Fact]
    public void ScaleConversionIsExactForEveryHalf()
    {
        for (int h = 0; h < 65536; h++)
        {
            ushort bits = (ushort)h;
            float expected = HalfPrecision.FromF16(bits);
            float actual = Block32Bits.Half((byte*)&bits);
            if (float.IsNaN(expected)) Assert.True(float.IsNaN(actual), $"half {h:X4}");
            else Assert.Equal(BitConverter.SingleToUInt32Bits(expected), BitConverter.SingleToUInt32Bits(actual));
        }
    }

    private delegate void TilePath(byte* w, long wStride, int rows, byte* x, long xStride, int cols, int k, float* y, long yStride);

    private delegate float ScalarDot(byte* w, byte* x, int k);

    private sealed record Kernel(GgmlType Type, ActivationFormat Activation, TilePath Tile, ScalarDot DotScalar, TilePath[] Paths);

    private static Kernel KernelFor<TFormat, TKernel>()
        where TFormat : unmanaged, IBlock32Format where TKernel : IWeightKernel
    {
        var paths = new List<TilePath> { Block32Dot<TFormat>.TileScalar, TKernel.Tile };
        if (Avx2.IsSupported && Fma.IsSupported) paths.Add(Block32Dot<TFormat>.TileAvx2<Avx2Mul>);
        if (AvxVnni.IsSupported) paths.Add(Block32Dot<TFormat>.TileAvx2<VnniMul>);
        if (Vector128.IsHardwareAccelerated) paths.Add(Block32Dot<TFormat>.Tile128<PortableDot>);
        if (Dp.IsSupported) paths.Add(Block32Dot<TFormat>.Tile128<DpDot>);
        return new Kernel(TKernel.WeightType, TKernel.Activation, TKernel.Tile, TKernel.DotScalar, [.. paths]);
    }

    public static TheoryData<GgmlType> Types => new() { GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1 };

    private static Kernel Get(GgmlType type) => type switch
    {
        GgmlType.Q8_0 => KernelFor<Q8_0Format, Q8_0Kernel>(),
        GgmlType.Q4_0 => KernelFor<Q4_0Format, Q4_0Kernel>(),
        GgmlType.Q4_1 => KernelFor<Q4_1Format, Q4_1Kernel>(),
        GgmlType.Q5_0 => KernelFor<Q5_0Format, Q5_0Kernel>(),
        _ => KernelFor<Q5_1Format, Q5_1Kernel>(),
    };

    /// <summary>Σ|d_w d_x isum| + |m s| over blocks, in double: the scale of the rounding error of any summation order.</summary>
    private static double AbsTerms(Kernel kernel, byte* w, byte* x, int k)
    {
        int wb = GgmlTypeInfo.BlockBytes(kernel.Type), xb = ActivationQuantizer.BlockBytes(kernel.Activation);
        var wf = new float[32]; var xf = new float[32];
        double total = 0;
        for (int b = 0; b < k / 32; b++)
        {
            Dequantize.Row(kernel.Type, new ReadOnlySpan<byte>(w + b * wb, wb), wf);
            Dequantize.Row(ActivationQuantizer.TypeOf(kernel.Activation), new ReadOnlySpan<byte>(x + b * xb, xb), xf);
            for (int j = 0; j < 32; j++) total += Math.Abs((double)wf[j] * xf[j]);
        }
        return total + 1e-30;
    }

    private static (byte[] W, byte[] X) RandomOperands(Kernel kernel, int rows, int cols, int k, int seed, bool raw)
    {
        var random = new Random(seed);
        byte[] w;
        if (raw)
        {
            // Arbitrary bit patterns (every level, including Q8_0's -128) with finite scales.
            w = new byte[rows * GgmlTypeInfo.RowBytes(kernel.Type, k)];
            random.NextBytes(w);
            int bb = GgmlTypeInfo.BlockBytes(kernel.Type);
            for (int b = 0; b < w.Length / bb; b++)
            {
                BitConverter.TryWriteBytes(w.AsSpan(b * bb), HalfPrecision.ToF16((float)(random.NextDouble() * 2 - 1)));
                if (kernel.Type is GgmlType.Q4_1 or GgmlType.Q5_1)
                    BitConverter.TryWriteBytes(w.AsSpan(b * bb + 2), HalfPrecision.ToF16((float)(random.NextDouble() * 2 - 1)));
            }
        }
        else w = Quantize.Rows(kernel.Type, RandomFloats(rows * k, seed), k);
        var x = Quantize.Rows(ActivationQuantizer.TypeOf(kernel.Activation), RandomFloats(cols * k, seed + 1), k);
        return (w, x);
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void EveryPathMatchesDotScalar(GgmlType type)
    {
        var kernel = Get(type);
        foreach (int blocks in new[] { 1, 3, 7, 28 })
        foreach (bool raw in new[] { false, true })
        {
            int k = 32 * blocks, rows = 5, cols = 6;
            var (w, x) = RandomOperands(kernel, rows, cols, k, blocks * 31 + (raw ? 1 : 0), raw);
            long wStride = GgmlTypeInfo.RowBytes(type, k), xStride = ActivationQuantizer.RowBytes(kernel.Activation, k);
            fixed (byte* pw = w, px = x)
            {
                var expected = new float[rows * cols];
                var tolerance = new double[rows * cols];
                for (int r = 0; r < rows; r++)
                    for (int c = 0; c < cols; c++)
                    {
                        expected[c * rows + r] = kernel.DotScalar(pw + r * wStride, px + c * xStride, k);
                        tolerance[c * rows + r] = 1e-5 * AbsTerms(kernel, pw + r * wStride, px + c * xStride, k);
                    }
                for (int p = 0; p < kernel.Paths.Length; p++)
                {
                    var actual = new float[rows * cols];
                    fixed (float* py = actual) kernel.Paths[p](pw, wStride, rows, px, xStride, cols, k, py, rows);
                    for (int i = 0; i < actual.Length; i++)
                        Assert.True(Math.Abs(expected[i] - actual[i]) <= tolerance[i],
                            $"{type} path {p} blocks {blocks} raw {raw} output {i}: {expected[i]} vs {actual[i]}");

                    // Tiling does not change bits: each output equals the same path run on one row and one column.
                    fixed (float* py = actual)
                        for (int i = 0; i < actual.Length; i++)
                        {
                            float single;
                            kernel.Paths[p](pw + (i % rows) * wStride, wStride, 1, px + (i / rows) * xStride, xStride, 1, k, &single, 1);
                            Assert.Equal(actual[i], single);
                        }
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void DecodeTilesOfFewColumnsMatchDotScalarAndSingleOutputs(GgmlType type)
    {
        // Fewer than four activation columns take the decode path (two weight rows per pass, odd row alone).
        var kernel = Get(type);
        foreach (int blocks in new[] { 1, 2, 5, 28 })
        foreach (int cols in new[] { 1, 2, 3 })
        foreach (bool raw in new[] { false, true })
        {
            int k = 32 * blocks, rows = 5;
            var (w, x) = RandomOperands(kernel, rows, cols, k, blocks * 7 + cols * 3 + (raw ? 1 : 0), raw);
            long wStride = GgmlTypeInfo.RowBytes(type, k), xStride = ActivationQuantizer.RowBytes(kernel.Activation, k);
            fixed (byte* pw = w, px = x)
                foreach (var path in kernel.Paths)
                {
                    var actual = new float[rows * cols];
                    fixed (float* py = actual) path(pw, wStride, rows, px, xStride, cols, k, py, rows);
                    for (int i = 0; i < actual.Length; i++)
                    {
                        byte* wr = pw + (i % rows) * wStride, xc = px + (i / rows) * xStride;
                        float expected = kernel.DotScalar(wr, xc, k);
                        Assert.True(Math.Abs(expected - actual[i]) <= 1e-5 * AbsTerms(kernel, wr, xc, k),
                            $"{type} blocks {blocks} cols {cols} raw {raw} output {i}: {expected} vs {actual[i]}");
                        float single;
                        path(wr, wStride, 1, xc, xStride, 1, k, &single, 1);
                        Assert.Equal(single, actual[i]);
                    }
                }
        }
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void IntegerBlockSumsAreExactForExtremeLevels(GgmlType type)
    {
        // Unit scales and zero mins make every float operation exact, so any lost or saturated integer shows.
        var kernel = Get(type);
        int k = 32 * 5;
        long wStride = GgmlTypeInfo.RowBytes(type, k), xStride = ActivationQuantizer.RowBytes(kernel.Activation, k);
        int wb = GgmlTypeInfo.BlockBytes(type), xb = ActivationQuantizer.BlockBytes(kernel.Activation);
        foreach (var (wByte, xLevel) in new (byte, sbyte)[] { (0xFF, 127), (0xFF, -127), (0x00, 127), (0x80, -127), (0x7F, 127), (0x88, 1), (0x0F, -127) })
        {
            var w = new byte[wStride];
            var x = new byte[xStride];
            w.AsSpan().Fill(wByte);
            x.AsSpan().Fill((byte)xLevel);
            for (int b = 0; b < k / 32; b++)
            {
                BitConverter.TryWriteBytes(w.AsSpan(b * wb), HalfPrecision.ToF16(b == 2 ? 0f : 1f)); // one zero scale
                BitConverter.TryWriteBytes(x.AsSpan(b * xb), HalfPrecision.ToF16(1f));
                if (kernel.Activation == ActivationFormat.Q8_1)
                {
                    BitConverter.TryWriteBytes(w.AsSpan(b * wb + 2), HalfPrecision.ToF16(b == 4 ? -2f : 0f));
                    BitConverter.TryWriteBytes(x.AsSpan(b * xb + 2), HalfPrecision.ToF16(32f * xLevel)); // s = d * Σq exactly
                }
            }
            var wf = new float[k]; var xf = new float[k];
            Dequantize.Row(type, w, wf);
            Dequantize.Row(ActivationQuantizer.TypeOf(kernel.Activation), x, xf);
            double exact = 0;
            for (int i = 0; i < k; i++) exact += (double)wf[i] * xf[i];
            fixed (byte* pw = w, px = x)
            {
                float scalar = kernel.DotScalar(pw, px, k);
                foreach (var path in kernel.Paths)
                {
                    float y;
                    path(pw, wStride, 1, px, xStride, 1, k, &y, 1);
                    Assert.Equal(scalar, y);
                }
                Assert.Equal(exact, scalar, 0);
            }
        }
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void KernelAgreesWithAFloatDotOfTheDequantizedOperands(GgmlType type)
    {
        var kernel = Get(type);
        int k = 32 * 28;
        var (w, x) = RandomOperands(kernel, 1, 1, k, 77, raw: false);
        var wf = new float[k]; var xf = new float[k];
        Dequantize.Row(type, w, wf);
        Dequantize.Row(ActivationQuantizer.TypeOf(kernel.Activation), x, xf);
        double expected = 0, scale = 0;
        for (int i = 0; i < k; i++) { expected += (double)wf[i] * xf[i]; scale += Math.Abs((double)wf[i] * xf[i]); }
        fixed (byte* pw = w, px = x)
        {
            float y;
            kernel.Tile(pw, w.Length, 1, px, x.Length, 1, k, &y, 1);
            // Q8_1's s is rounded to half, and Dequantize applies m to each element: a few ulps of half on top.
            double tolerance = kernel.Activation == ActivationFormat.Q8_1 ? 2e-3 * scale : 1e-5 * scale;
            Assert.True(Math.Abs(expected - y) <= tolerance, $"{type}: {expected} vs {y} (scale {scale})");
        }
    }
}
