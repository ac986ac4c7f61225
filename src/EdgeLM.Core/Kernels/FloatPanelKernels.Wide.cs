using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using EdgeLM.Tensors;

namespace EdgeLM.Kernels;

/// <summary>
/// The 512-bit prefill: a panel's row holds 8 values per k step, half a zmm register, so each pair of panels is
/// converted into one 16-row column, [k][16] (rows 0-7 of panel 2q, then rows 0-7 of panel 2q + 1), and one load
/// feeds 16 output rows per k step. The lanes run the same fused chains as the 256-bit tile (ascending k from zero,
/// parked exactly between passes), so the bits are those of <see cref="FloatPanelKernels.Reference"/>.
/// The tile is 2 columns x 8 tokens: 16 accumulators + 2 weights + 1 broadcast of 32 zmm registers, 10 loads per 16
/// FMAs (weights re-read from L2 once per 8 tokens instead of 6).
/// </summary>
internal static unsafe partial class FloatPanelKernels
{
    /// <summary>Rows of one converted 512-bit column: a pair of panels.</summary>
    internal const int WideRows = 2 * PanelRows;

    /// <summary>Tokens of one 512-bit tile (<see cref="ChunkTokens"/> is a multiple of it).</summary>
    internal const int WideTileTokens = 8;

    /// <summary>Parking slots per column pair: the chunk's tokens and a tail tile's (see <see cref="ParkedTokens"/>).</summary>
    private const int WideParkedTokens = ChunkTokens + WideTileTokens;

    /// <summary>Floats of scratch <see cref="PrefillWide"/> needs: the converted columns, the parked accumulators of
    /// whole column pairs, the sink of a padding column.</summary>
    private static long WideScratchFloats(int panels, int k)
    {
        long columns = (panels + 1) / 2, pairs = (columns + 1) / 2;
        return columns * WideRows * k + pairs * WideParkedTokens * 2 * WideRows + WideRows;
    }

    /// <summary>
    /// <see cref="Prefill"/> on Vector512, callable on any machine (tests force it here; without AVX-512 the vector
    /// operations run in software, still exactly). Production takes it only where Vector512 is hardware accelerated.
    /// </summary>
    internal static void PrefillWide(GgmlType type, byte* data, long panelStride, int panels, float* x, int xStride, int n, int k, float* y, long yStride, float* scratch)
    {
        int columns = (panels + 1) / 2;
        bool halfLast = (panels & 1) != 0; // the last column's rows 8-15 are zero padding, their outputs never stored
        long columnStride = (long)WideRows * k;
        float* converted = scratch;
        switch (type)
        {
            case GgmlType.F32: Widen<F32Rows>(data, panelStride, panels, k, converted); break;
            case GgmlType.F16: Widen<FiniteF16Rows>(data, panelStride, panels, k, converted); break;
            case GgmlType.BF16: Widen<BF16Rows>(data, panelStride, panels, k, converted); break;
            default: throw new ArgumentException($"no float panel kernel for {type}", nameof(type));
        }
        // Parked accumulators: a column pair per [token][2][WideRows]; an odd column count repeats its last column
        // into the sink.
        float* acc = converted + columns * columnStride;
        float* sink = acc + (long)((columns + 1) / 2) * WideParkedTokens * 2 * WideRows;
        int passes = Math.Max(1, (k + DepthBlock - 1) / DepthBlock);
        int depth = (k + passes - 1) / passes;
        for (int t0 = 0; t0 < n; t0 += ChunkTokens)
        {
            int cols = Math.Min(ChunkTokens, n - t0);
            int tiles = cols / WideTileTokens;
            for (int from = 0; from < k; from += depth)
            {
                int to = Math.Min(k, from + depth);
                bool first = from == 0, last = to == k;
                for (int c = 0; c < columns; c += 2)
                {
                    int c1 = Math.Min(c + 1, columns - 1);
                    float* w0 = converted + c * columnStride, w1 = converted + c1 * columnStride;
                    int rows0 = halfLast && c == columns - 1 ? PanelRows : WideRows;
                    int rows1 = halfLast && c1 != c && c1 == columns - 1 ? PanelRows : WideRows;
                    float* parked = acc + (long)c * WideParkedTokens * WideRows; // c is even: pair c / 2
                    float* y0 = y + (long)t0 * yStride + (long)c * WideRows;
                    float* y1 = c1 == c ? null : y0 + WideRows;
                    for (int t = 0; t < tiles; t++)
                    {
                        int tt = t * WideTileTokens;
                        Tile2x8Wide(w0, w1, x + (long)(t0 + tt) * xStride, xStride, from, to, parked + tt * 2 * WideRows, first,
                            last ? y0 + tt * yStride : null, y1 == null ? sink : y1 + tt * yStride, yStride, y1 == null ? 0 : yStride, rows0, rows1);
                    }
                    if (cols > tiles * WideTileTokens && tiles > 0)
                    {
                        int tt = cols - WideTileTokens;
                        Tile2x8Wide(w0, w1, x + (long)(t0 + tt) * xStride, xStride, from, to, parked + ChunkTokens * 2 * WideRows, first,
                            last ? y0 + tt * yStride : null, y1 == null ? sink : y1 + tt * yStride, yStride, y1 == null ? 0 : yStride, rows0, rows1);
                        continue;
                    }
                    for (int tt = tiles * WideTileTokens; tt < cols; tt++)
                    {
                        Tile2x1Wide(w0, w1, x + (long)(t0 + tt) * xStride, from, to, parked + tt * 2 * WideRows, first,
                            last ? y0 + tt * yStride : null, y1 == null ? sink : y1 + tt * yStride, rows0, rows1);
                    }
                }
            }
        }
    }

    /// <summary>
    /// Panel p's [k][8] converted into rows (p % 2) * 8 .. + 7 of column p / 2; an odd count zero-fills the last
    /// column's upper rows (finite, so the padding lanes cost nothing special and are never stored).
    /// </summary>
    private static void Widen<TF>(byte* data, long panelStride, int panels, int k, float* converted)
        where TF : struct, IRowFormat
    {
        for (int p = 0; p < panels; p++)
        {
            byte* panel = data + p * panelStride;
            float* dst = converted + (long)(p / 2) * WideRows * k + p % 2 * PanelRows;
            for (int i = 0; i < k; i++) Lanes256.Store(TF.Load<Lanes256>(panel, i * PanelRows), dst + (long)i * WideRows);
        }
        if ((panels & 1) != 0)
        {
            float* dst = converted + (long)(panels / 2) * WideRows * k + PanelRows;
            for (int i = 0; i < k; i++) Vector256<float>.Zero.Store(dst + (long)i * WideRows);
        }
    }

    /// <summary>
    /// a * b + addend rounded once: the AVX-512 instruction where there is one (written out rather than through the
    /// lane wrapper, see <see cref="Tile2x6Fma"/>), else the software Vector512 operation, exact per element.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Fma512(Vector512<float> a, Vector512<float> b, Vector512<float> addend) =>
        Avx512F.IsSupported ? Avx512F.FusedMultiplyAdd(a, b, addend) : Vector512.FusedMultiplyAdd(a, b, addend);

    /// <summary>The first <paramref name="rows"/> (16, or 8 for a half-padded column) lanes of v to p.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRows(Vector512<float> v, float* p, int rows)
    {
        if (rows == WideRows) v.Store(p);
        else v.GetLower().Store(p);
    }

    /// <summary>
    /// Columns w0 and w1 (converted, 16 floats per k step) against 8 tokens over k in [from, to). Accumulators come
    /// from and go to parked (16 vectors) unless first / last; on the last pass their first rows0 / rows1 lanes are
    /// written to y0 and y1 (token t at t * yStride; y1 at t * y1Stride, 0 when y1 is the sink of a padding column).
    /// </summary>
    private static void Tile2x8Wide(float* w0, float* w1, float* x, int xStride, int from, int to, float* parked, bool first,
        float* y0, float* y1, long yStride, long y1Stride, int rows0, int rows1)
    {
        float* x0 = x, x1 = x + xStride, x2 = x + 2 * xStride, x3 = x + 3 * xStride, x4 = x + 4 * xStride, x5 = x + 5 * xStride, x6 = x + 6 * xStride, x7 = x + 7 * xStride;
        const int n = WideRows;
        Vector512<float> a00, a01, a10, a11, a20, a21, a30, a31, a40, a41, a50, a51, a60, a61, a70, a71;
        if (first) a00 = a01 = a10 = a11 = a20 = a21 = a30 = a31 = a40 = a41 = a50 = a51 = a60 = a61 = a70 = a71 = Vector512<float>.Zero;
        else
        {
            a00 = Vector512.Load(parked); a01 = Vector512.Load(parked + n); a10 = Vector512.Load(parked + 2 * n); a11 = Vector512.Load(parked + 3 * n);
            a20 = Vector512.Load(parked + 4 * n); a21 = Vector512.Load(parked + 5 * n); a30 = Vector512.Load(parked + 6 * n); a31 = Vector512.Load(parked + 7 * n);
            a40 = Vector512.Load(parked + 8 * n); a41 = Vector512.Load(parked + 9 * n); a50 = Vector512.Load(parked + 10 * n); a51 = Vector512.Load(parked + 11 * n);
            a60 = Vector512.Load(parked + 12 * n); a61 = Vector512.Load(parked + 13 * n); a70 = Vector512.Load(parked + 14 * n); a71 = Vector512.Load(parked + 15 * n);
        }
        float* p0 = w0 + (long)from * n, p1 = w1 + (long)from * n;
        for (int i = from; i < to; i++, p0 += n, p1 += n)
        {
            var v0 = Vector512.Load(p0); var v1 = Vector512.Load(p1);
            var b = Vector512.Create(x0[i]);
            a00 = Fma512(v0, b, a00); a01 = Fma512(v1, b, a01);
            b = Vector512.Create(x1[i]);
            a10 = Fma512(v0, b, a10); a11 = Fma512(v1, b, a11);
            b = Vector512.Create(x2[i]);
            a20 = Fma512(v0, b, a20); a21 = Fma512(v1, b, a21);
            b = Vector512.Create(x3[i]);
            a30 = Fma512(v0, b, a30); a31 = Fma512(v1, b, a31);
            b = Vector512.Create(x4[i]);
            a40 = Fma512(v0, b, a40); a41 = Fma512(v1, b, a41);
            b = Vector512.Create(x5[i]);
            a50 = Fma512(v0, b, a50); a51 = Fma512(v1, b, a51);
            b = Vector512.Create(x6[i]);
            a60 = Fma512(v0, b, a60); a61 = Fma512(v1, b, a61);
            b = Vector512.Create(x7[i]);
            a70 = Fma512(v0, b, a70); a71 = Fma512(v1, b, a71);
        }
        if (y0 != null)
        {
            long s0 = yStride, s = y1Stride;
            StoreRows(a00, y0, rows0); StoreRows(a10, y0 + s0, rows0); StoreRows(a20, y0 + 2 * s0, rows0); StoreRows(a30, y0 + 3 * s0, rows0);
            StoreRows(a40, y0 + 4 * s0, rows0); StoreRows(a50, y0 + 5 * s0, rows0); StoreRows(a60, y0 + 6 * s0, rows0); StoreRows(a70, y0 + 7 * s0, rows0);
            StoreRows(a01, y1, rows1); StoreRows(a11, y1 + s, rows1); StoreRows(a21, y1 + 2 * s, rows1); StoreRows(a31, y1 + 3 * s, rows1);
            StoreRows(a41, y1 + 4 * s, rows1); StoreRows(a51, y1 + 5 * s, rows1); StoreRows(a61, y1 + 6 * s, rows1); StoreRows(a71, y1 + 7 * s, rows1);
            return;
        }
        a00.Store(parked); a01.Store(parked + n); a10.Store(parked + 2 * n); a11.Store(parked + 3 * n);
        a20.Store(parked + 4 * n); a21.Store(parked + 5 * n); a30.Store(parked + 6 * n); a31.Store(parked + 7 * n);
        a40.Store(parked + 8 * n); a41.Store(parked + 9 * n); a50.Store(parked + 10 * n); a51.Store(parked + 11 * n);
        a60.Store(parked + 12 * n); a61.Store(parked + 13 * n); a70.Store(parked + 14 * n); a71.Store(parked + 15 * n);
    }

    private static void Tile2x1Wide(float* w0, float* w1, float* x, int from, int to, float* parked, bool first, float* y0, float* y1, int rows0, int rows1)
    {
        const int n = WideRows;
        Vector512<float> a0 = first ? Vector512<float>.Zero : Vector512.Load(parked), a1 = first ? Vector512<float>.Zero : Vector512.Load(parked + n);
        for (int i = from; i < to; i++)
        {
            var b = Vector512.Create(x[i]);
            a0 = Fma512(Vector512.Load(w0 + (long)i * n), b, a0);
            a1 = Fma512(Vector512.Load(w1 + (long)i * n), b, a1);
        }
        if (y0 != null) { StoreRows(a0, y0, rows0); StoreRows(a1, y1, rows1); return; }
        a0.Store(parked); a1.Store(parked + n);
    }
}
