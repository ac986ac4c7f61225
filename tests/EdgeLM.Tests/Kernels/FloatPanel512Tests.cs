using EdgeLM.Kernels;
using EdgeLM.Kernels.Quantized;
using EdgeLM.Tensors;
using Xunit;
using static EdgeLM.Tests.Kernels.FloatPanelKernelTests;

namespace EdgeLM.Tests.Kernels;

/// <summary>
/// The 512-bit prefill (16-row converted columns, 2 x 8 tile), forced on this machine whatever its vector width
/// (without AVX-512 its Vector512 operations run in software, exactly), against the scalar fused chain computed from
/// the file's rows: odd panel counts (a half-padded column whose padding must never reach y), odd column counts (a
/// column repeated into the sink), several passes, partial tiles and a second token chunk.
/// </summary>
[Trait("Category", "Kernels")]
public unsafe class FloatPanel512Tests
{
    private const float Sentinel = -1234.5f;

    /// <summary>Runs the forced 512-bit prefill with y rows wider than the group and scratch longer than asked, both
    /// filled with a sentinel, and checks every output bitwise and every sentinel untouched.</summary>
    private static void Check(GgmlType type, int k, int panels, int n, int seed)
    {
        int rows = panels * RepackedMatrix.PanelRows;
        var (w, buffer) = RandomWeight(type, k, rows, seed);
        using var _ = buffer;
        using var m = RepackedMatrix.Pack(w);
        Assert.NotNull(m);
        float[] x = RandomTokens(n, k, seed + 1);
        float[] expected = Expected(w, x, n);
        const int guard = 64;
        long yStride = rows + guard; // the next group's rows: a half column storing 16 lanes would overwrite them
        var y = new float[n * yStride];
        Array.Fill(y, Sentinel);
        long scratchFloats = FloatPanelKernels.ScratchFloats(panels, k);
        var scratch = new float[scratchFloats + guard];
        Array.Fill(scratch, Sentinel);
        int xStride = FloatPanelKernels.InputStride(k) + 16; // NaN between rows shows a read past k
        var padded = new float[n * xStride];
        Array.Fill(padded, float.NaN);
        for (int t = 0; t < n; t++) Array.Copy(x, t * k, padded, t * xStride, k);
        fixed (float* px = padded, py = y, ps = scratch)
            FloatPanelKernels.PrefillWide(type, m!.Data, m.PanelStride, panels, px, xStride, n, k, py, yStride, ps);

        var actual = new float[n * rows];
        for (int t = 0; t < n; t++)
        {
            Array.Copy(y, t * yStride, actual, t * rows, rows);
            for (long g = t * yStride + rows; g < (t + 1) * yStride; g++)
                Assert.True(y[g] == Sentinel, $"{type} panels={panels} n={n}: token {t} wrote past its {rows} rows (at {g - t * yStride})");
        }
        AssertBitwise(expected, actual, $"512-bit prefill {type} k={k} panels={panels} n={n}");
        for (long g = scratchFloats; g < scratch.Length; g++)
            Assert.True(scratch[g] == Sentinel, $"{type} panels={panels} k={k}: scratch used past ScratchFloats");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(5)]
    public void F16PanelCountsAndTokenCountsEqualTheFusedChainBitwise(int panels)
    {
        foreach (int n in new[] { 1, 5, 6, 7, 8, 13, 48, 49, 61 })
            Check(GgmlType.F16, k: 64, panels, n, seed: 100 * panels + n);
    }

    [Theory]
    [InlineData(GgmlType.F16, 3, 13)]
    [InlineData(GgmlType.F16, 2, 49)]
    [InlineData(GgmlType.F32, 5, 7)]
    [InlineData(GgmlType.BF16, 1, 9)]
    public void SeveralPassesEqualTheFusedChainBitwise(GgmlType type, int panels, int n)
    {
        Assert.True(2112 > FloatPanelKernels.DepthBlock * 2); // three passes (k is a multiple of 32 to pack): parked twice
        Check(type, k: 2112, panels, n, seed: panels + n);
    }

    [Theory]
    [InlineData(GgmlType.F32)]
    [InlineData(GgmlType.BF16)]
    public void F32AndBF16EqualTheFusedChainBitwise(GgmlType type)
    {
        foreach (int panels in new[] { 1, 2, 3, 5 })
            foreach (int n in new[] { 1, 6, 13, 61 })
                Check(type, k: 96, panels, n, seed: 7 * panels + n);
    }

    [Fact]
    public void ScratchCoversBothLayouts()
    {
        foreach (int panels in new[] { 1, 2, 3, 5, 8 })
            foreach (int k in new[] { 1, 64, 896, 4864 })
            {
                long columns = (panels + 1) / 2, pairs = (columns + 1) / 2;
                long wide = columns * 16 * k + pairs * (FloatPanelKernels.ChunkTokens + FloatPanelKernels.WideTileTokens) * 2 * 16 + 16;
                Assert.True(FloatPanelKernels.ScratchFloats(panels, k) >= wide, $"panels={panels} k={k}");
            }
    }
}
