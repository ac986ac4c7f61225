using System.Runtime.Intrinsics.X86;
using EdgeLM.Kernels.Quantized;
using EdgeLM.Tensors;
using EdgeLM.Tests.Support;

namespace EdgeLM.Tests.Kernels;

/// <summary>
/// The 512-bit prefill tile (two panels per register) against the reference on the file layout, bit for bit: through the
/// AVX2 emulation of its byte dot everywhere, through the AVX-512BW instructions where the CPU has them.
/// </summary>
public unsafe partial class RepackKernelTests
{
    private const int WidePanels = 5;

    /// <summary>Runs of panels (first, count): single, paired, paired + odd, two pairs + odd, and starting past panel 0.</summary>
    private static readonly (int First, int Count)[] PanelRuns = [(0, 1), (0, 2), (0, 3), (0, 5), (1, 2), (2, 3)];

    /// <summary>Token counts: decode, fewer than a tile, one tile, tiles plus 1, two tiles, tiles plus 1 again.</summary>
    private static readonly int[] TokenCounts = [1, 3, 4, 5, 8, 13];

    private static readonly GgmlType[] PanelTypes = [GgmlType.Q4_0, GgmlType.Q5_0, GgmlType.Q8_0];

    [SkippableFact]
    public void EmulatedAvx512TileEqualsTheReferenceBitwise()
    {
        SkipTest.Unless(Avx2.IsSupported && Fma.IsSupported, "the AVX-512 emulation runs on AVX2 and FMA (disabled here)");
        foreach (var type in PanelTypes)
            foreach (int k in new[] { 32, 896, 4864 })
            {
                var (w, buffer) = RandomWeight(type, k, WidePanels * RepackedMatrix.PanelRows, k + (int)type);
                using var _ = buffer;
                var (xq, info) = Activations(k, TokenCounts[^1], k);
                AssertPanelRunsMatchReference(w, xq, info, TokenCounts[^1], "emulated512", RepackKernels.Tile512<RepackKernels.EmulatedByteDot512>);
            }
    }

    /// <summary>As <see cref="ExtremeLevelsDoNotSaturateAnyPath"/>: a saturated maddubs pair or a wrapped 16-bit run would show.</summary>
    [SkippableFact]
    public void EmulatedAvx512TileDoesNotSaturateAtExtremeLevels()
    {
        SkipTest.Unless(Avx2.IsSupported && Fma.IsSupported, "the AVX-512 emulation runs on AVX2 and FMA (disabled here)");
        foreach (var type in PanelTypes)
        {
            var (w, buffer) = ExtremeWeight(type, k: 256, rows: WidePanels * RepackedMatrix.PanelRows);
            using var _ = buffer;
            var (xq, info) = ExtremeActivations(k: 256, n: TokenCounts[^1]);
            AssertPanelRunsMatchReference(w, xq, info, TokenCounts[^1], "emulated512", RepackKernels.Tile512<RepackKernels.EmulatedByteDot512>);
        }
    }

    [SkippableFact]
    public void Avx512BWTileEqualsTheReferenceBitwise()
    {
        SkipTest.Unless(Avx2.IsSupported && Fma.IsSupported && Avx512BW.IsSupported,
            "AVX-512BW is not supported on this CPU (or disabled by DOTNET_EnableAVX512F=0)");
        foreach (var type in PanelTypes)
        {
            foreach (int k in new[] { 32, 896, 4864 })
            {
                var (w, buffer) = RandomWeight(type, k, WidePanels * RepackedMatrix.PanelRows, k + (int)type);
                using var _ = buffer;
                var (xq, info) = Activations(k, TokenCounts[^1], k);
                AssertPanelRunsMatchReference(w, xq, info, TokenCounts[^1], "avx512bw", RepackKernels.Tile512<RepackKernels.Avx512ByteDot>);
                AssertPanelRunsMatchReference(w, xq, info, TokenCounts[^1], "dispatch", RepackKernels.Tile);
            }
            var (e, eBuffer) = ExtremeWeight(type, k: 256, rows: WidePanels * RepackedMatrix.PanelRows);
            using var __ = eBuffer;
            var (exq, einfo) = ExtremeActivations(k: 256, n: TokenCounts[^1]);
            AssertPanelRunsMatchReference(e, exq, einfo, TokenCounts[^1], "avx512bw", RepackKernels.Tile512<RepackKernels.Avx512ByteDot>);
        }
    }

    /// <summary>
    /// For every run of panels and token count: the path's outputs equal ReferenceDot bitwise, and nothing outside
    /// those rows and tokens is written (yStride is the full row count, as in MatMul).
    /// </summary>
    private static void AssertPanelRunsMatchReference(Tensor w, byte[] xq, byte[] info, int n, string name, TilePath path)
    {
        GgmlType type = w.Type;
        int k = w.RowLength, rows = (int)w.RowCount;
        using var m = RepackedMatrix.Pack(w)!;
        Assert.NotNull(m);
        long xStride = xq.Length / n, infoStride = info.Length / n;
        var expected = ReferenceOutputs(w, xq, n);

        const int untouched = 0x7FC0DEAD; // a NaN no kernel produces
        var actual = new float[n * rows];
        foreach (var (first, count) in PanelRuns)
            foreach (int cols in TokenCounts)
            {
                Array.Fill(actual, BitConverter.Int32BitsToSingle(untouched));
                int r0 = first * RepackedMatrix.PanelRows, r1 = r0 + count * RepackedMatrix.PanelRows;
                fixed (byte* px = xq, pi = info)
                fixed (float* py = actual)
                    path(m, m.Data + first * m.PanelStride, count, px, xStride, pi, infoStride, cols, py + r0, rows);
                for (int t = 0; t < n; t++)
                    for (int r = 0; r < rows; r++)
                    {
                        int i = t * rows + r;
                        int want = t < cols && r >= r0 && r < r1 ? BitConverter.SingleToInt32Bits(expected[i]) : untouched;
                        Assert.True(want == BitConverter.SingleToInt32Bits(actual[i]),
                            $"{type} k={k} {name} panels {first}+{count} tokens {cols}: token {t} row {r} is {actual[i]}, expected {BitConverter.Int32BitsToSingle(want)}");
                    }
            }
    }
}
