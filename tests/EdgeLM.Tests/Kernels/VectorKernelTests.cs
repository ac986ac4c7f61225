using EdgeLM.Kernels;
using EdgeLM.Models;

namespace EdgeLM.Tests.Kernels;

/// <summary>Every SIMD path against its scalar reference. Vector512/256 paths run (emulated) even without hardware support.</summary>
[Trait("Category", "Kernels")]
public unsafe class VectorKernelTests
{
    private static readonly int[] Lengths = [0, 1, 3, 4, 7, 8, 15, 16, 17, 31, 32, 33, 64, 100, 896, 1001];

    private static float[] RandomFloats(int n, int seed, float scale = 1f)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => scale * (float)(random.NextDouble() * 2 - 1)).ToArray();
    }

    private static void AssertClose(float expected, float actual, float tolerance, string what) =>
        Assert.True(Math.Abs(expected - actual) <= tolerance, $"{what}: expected {expected}, got {actual}");

    private delegate float DotPath(float* a, float* b, int n);

    [Fact]
    public void DotPathsMatchScalar()
    {
        DotPath[] paths = [Dot.Dot128, Dot.Dot256, Dot.Dot512, (a, b, n) => Dot.Compute(a, b, n)];
        foreach (int n in Lengths)
        {
            float[] a = RandomFloats(n, n), b = RandomFloats(n, n + 1000);
            fixed (float* pa = a, pb = b)
            {
                float expected = Dot.DotScalar(pa, pb, n);
                double exact = 0;
                for (int i = 0; i < n; i++) exact += (double)a[i] * b[i];
                AssertClose((float)exact, expected, 1e-5f * (n + 1), $"scalar n={n}");
                for (int p = 0; p < paths.Length; p++) AssertClose(expected, paths[p](pa, pb, n), 1e-5f * (n + 1), $"path {p} n={n}");
            }
        }
    }

    private delegate void AxpyPath(float a, float* x, float* y, int n);

    [Fact]
    public void AxpyPathsMatchScalar()
    {
        AxpyPath[] paths = [Dot.Axpy128, Dot.Axpy256, Dot.Axpy512];
        foreach (int n in Lengths)
        {
            float[] x = RandomFloats(n, n), y0 = RandomFloats(n, n + 1);
            float[] expected = (float[])y0.Clone();
            fixed (float* px = x, pe = expected) Dot.AxpyScalar(0.37f, px, pe, n);
            for (int i = 0; i < n; i++) AssertClose(y0[i] + 0.37f * x[i], expected[i], 1e-6f, "scalar");
            foreach (var path in paths)
            {
                float[] actual = (float[])y0.Clone();
                fixed (float* px = x, pa = actual) path(0.37f, px, pa, n);
                for (int i = 0; i < n; i++) AssertClose(expected[i], actual[i], 1e-6f, $"n={n} i={i}");
            }
        }
    }

    [Fact]
    public void ElementwiseAddMatchesScalar()
    {
        foreach (int n in Lengths)
        {
            float[] x = RandomFloats(n, n), y = RandomFloats(n, n + 1);
            float[] expected = (float[])y.Clone(), actual = (float[])y.Clone();
            fixed (float* px = x, pe = expected, pa = actual)
            {
                Elementwise.AddScalar(pe, px, n);
                Elementwise.Add256(pa, px, n);
            }
            for (int i = 0; i < n; i++) Assert.Equal(y[i] + x[i], expected[i]);
            Assert.Equal(expected, actual);
        }
    }

    private delegate void ConvertPath(ushort* src, float* dst, int n);

    [Fact]
    public void HalfConversionIsExactForAllBitPatterns()
    {
        ushort[] all = Enumerable.Range(0, 65536).Select(i => (ushort)i).ToArray();
        float[] expected = new float[all.Length];
        for (int i = 0; i < all.Length; i++) expected[i] = (float)BitConverter.UInt16BitsToHalf(all[i]);
        ConvertPath[] paths = [RowConvert.HalfToSingleScalar, RowConvert.HalfToSingle<Lanes128>, RowConvert.HalfToSingle<Lanes256>, RowConvert.HalfToSingle<Lanes512>, RowConvert.HalfToSingle];
        foreach (var path in paths)
        {
            float[] actual = new float[all.Length + 1];
            actual[^1] = 42;
            fixed (ushort* s = all) fixed (float* d = actual) path(s, d, all.Length - 3); // odd tail
            for (int i = 0; i < all.Length - 3; i++)
            {
                Assert.True(BitConverter.SingleToUInt32Bits(expected[i]) == BitConverter.SingleToUInt32Bits(actual[i]),
                    $"half 0x{i:X4}: expected 0x{BitConverter.SingleToUInt32Bits(expected[i]):X8}, got 0x{BitConverter.SingleToUInt32Bits(actual[i]):X8}");
            }
            Assert.Equal(0, actual[all.Length - 3]);
            Assert.Equal(42, actual[^1]);
        }
    }

    [Fact]
    public void BFloat16ConversionMatchesScalar()
    {
        var random = new Random(5);
        ushort[] src = Enumerable.Range(0, 1003).Select(_ => (ushort)random.Next(65536)).ToArray();
        float[] expected = new float[src.Length], actual = new float[src.Length];
        fixed (ushort* s = src) fixed (float* e = expected) RowConvert.BFloat16ToSingleScalar(s, e, src.Length);
        for (int i = 0; i < src.Length; i++) Assert.Equal((uint)src[i] << 16, BitConverter.SingleToUInt32Bits(expected[i]));
        ConvertPath[] paths = [RowConvert.BFloat16ToSingle<Lanes128>, RowConvert.BFloat16ToSingle<Lanes256>, RowConvert.BFloat16ToSingle<Lanes512>, RowConvert.BFloat16ToSingle];
        foreach (var path in paths)
        {
            fixed (ushort* s = src) fixed (float* a = actual) path(s, a, src.Length);
            for (int i = 0; i < src.Length; i++) Assert.Equal(BitConverter.SingleToUInt32Bits(expected[i]), BitConverter.SingleToUInt32Bits(actual[i]));
        }
    }

    [Fact]
    public void RmsNormVectorMatchesScalarAndDefinition()
    {
        foreach (int n in Lengths.Where(n => n > 0))
        {
            float[] x = RandomFloats(n, n, 3f), w = RandomFloats(n, n + 1);
            float[] expected = new float[n], vector = new float[n], dispatched = new float[n];
            RmsNorm.ApplyScalar(x, w, expected, 1e-6f);
            RmsNorm.ApplyVector256(x, w, vector, 1e-6f);
            RmsNorm.Apply(x, w, dispatched, 1e-6f);
            double rms = Math.Sqrt(x.Sum(v => (double)v * v) / n + 1e-6);
            for (int i = 0; i < n; i++)
            {
                AssertClose((float)(x[i] / rms * w[i]), expected[i], 1e-5f, $"definition n={n}");
                AssertClose(expected[i], vector[i], 1e-5f, $"vector n={n}");
                AssertClose(expected[i], dispatched[i], 1e-5f, $"dispatch n={n}");
            }
        }
        Assert.Throws<ArgumentException>(() => RmsNorm.Apply(new float[4], new float[3], new float[4], 1e-6f));
    }

    [Fact]
    public void SoftmaxVectorMatchesScalar()
    {
        foreach (int n in Lengths.Where(n => n > 0))
        {
            float[] expected = RandomFloats(n, n, 20f), actual = (float[])expected.Clone();
            double max = expected.Max();
            double[] exact = expected.Select(v => Math.Exp(v - max)).ToArray();
            double sum = exact.Sum();
            Softmax.ApplyScalar(expected);
            fixed (float* p = actual) Softmax.Apply256(p, n);
            for (int i = 0; i < n; i++)
            {
                AssertClose((float)(exact[i] / sum), expected[i], 1e-6f, $"definition n={n}");
                AssertClose(expected[i], actual[i], 1e-6f, $"vector n={n}");
            }
            Assert.Equal(1.0, actual.Sum(v => (double)v), 4);
        }
    }

    [Fact]
    public void SwiGluVectorMatchesScalar()
    {
        foreach (int n in Lengths)
        {
            float[] gate = RandomFloats(n, n, 30f), up = RandomFloats(n, n + 1, 2f);
            float[] expected = (float[])gate.Clone(), actual = (float[])gate.Clone();
            fixed (float* e = expected, a = actual, u = up)
            {
                SwiGlu.ApplyScalar(e, u, n);
                SwiGlu.Apply256(a, u, n);
            }
            for (int i = 0; i < n; i++)
            {
                double g = gate[i];
                AssertClose((float)(g / (1 + Math.Exp(-g)) * up[i]), expected[i], 1e-5f * (1 + Math.Abs(expected[i])), "definition");
                AssertClose(expected[i], actual[i], 1e-5f * (1 + Math.Abs(expected[i])), $"vector n={n} g={g}");
            }
        }
    }

    [Theory]
    [InlineData(RopeStyle.Neox, 1e6)]
    [InlineData(RopeStyle.Interleaved, 1e4)]
    public void RopeRotatesTheDocumentedPairs(RopeStyle style, double theta)
    {
        const int headDim = 16, heads = 3, position = 37;
        var rope = new Rope(headDim, 64, theta, style);
        float[] x = RandomFloats(heads * headDim, 9), actual = (float[])x.Clone();
        rope.Apply(actual, heads, position);
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < headDim / 2; i++)
            {
                int a = style == RopeStyle.Neox ? h * headDim + i : h * headDim + 2 * i;
                int b = style == RopeStyle.Neox ? a + headDim / 2 : a + 1;
                double angle = position * Math.Pow(theta, -2.0 * i / headDim);
                AssertClose((float)(x[a] * Math.Cos(angle) - x[b] * Math.Sin(angle)), actual[a], 1e-5f, $"pair {i} first");
                AssertClose((float)(x[a] * Math.Sin(angle) + x[b] * Math.Cos(angle)), actual[b], 1e-5f, $"pair {i} second");
            }
        float[] atZero = (float[])x.Clone();
        rope.Apply(atZero, heads, 0);
        Assert.Equal(x, atZero);
        Assert.Throws<ArgumentOutOfRangeException>(() => rope.Apply(atZero, heads, 64));
    }
}
