using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using EdgeLM.Kernels.Quantized;
using EdgeLM.Tensors;

namespace EdgeLM.Kernels;

/// <summary>
/// Float weights (F32, F16, BF16) packed in 8-row panels, value-major (<see cref="RepackedMatrix"/>: a panel is [k][8]).
/// Every output is one fused multiply-add chain over k in ascending order, y[t, r] = fma(w[r, k-1], x[t, k-1], ...
/// fma(w[r, 0], x[t, 0], 0)), computed in a vector lane per output row with x[t, i] broadcast, so:
/// <list type="bullet">
/// <item>decode, prefill, every vector width, every thread count and the scalar <see cref="Reference"/> give the same
/// bits (no horizontal sums, no width-dependent split of k);</item>
/// <item>prefill is the outer-product GEMM of BLIS-style kernels: per k step 2 weight vectors and 6 broadcast token
/// values feed 12 FMAs, so the token stream is read 4 bytes per token and step instead of a 32-byte vector per 4 rows
/// (measured against the dot-product tile of <see cref="FloatGemm"/> at 512 tokens, 1 thread, paired: +27-30% on the
/// 896 x 4864 down projection, +2-10% on 4864 x 896);</item>
/// <item>decode streams each panel as one contiguous run of memory.</item>
/// </list>
/// A "column" is <c>TL.Count</c> rows of one panel (a whole panel on Vector256, half of one on Vector128), read with one
/// load per k step at a stride of 8 values. Where Vector512 is hardware accelerated, prefill first converts each pair
/// of panels into one 16-row column (<see cref="PrefillWide"/>), so one zmm load covers 16 rows per k step; its lanes run
/// the same chains, hence the same bits. Its AVX-512 speed has not been measured (no AVX-512 on the development machine).
/// </summary>
internal static unsafe partial class FloatPanelKernels
{
    private const int PanelRows = RepackedMatrix.PanelRows;

    /// <summary>Tokens of one prefill tile (6 broadcasts + 2 weight vectors + 12 accumulators fit 16 registers).</summary>
    internal const int TileTokens = 6;

    /// <summary>Tokens swept per pass over a group's converted panels (a multiple of <see cref="TileTokens"/>).</summary>
    internal const int ChunkTokens = 48;

    /// <summary>
    /// Parking slots per column pair: the chunk's tokens and a tail tile's. A chunk whose token count is not a multiple
    /// of <see cref="TileTokens"/> ends with a whole tile over its last 6 tokens, overlapping the tile before it, in
    /// slots of its own: the overlapped tokens are computed twice by the same chains (same bits, written twice), which
    /// costs one tile instead of up to 5 single-token passes at a quarter of the FMA rate (their 2 chains wait on the
    /// FMA latency).
    /// </summary>
    private const int ParkedTokens = ChunkTokens + TileTokens;

    /// <summary>
    /// Most k steps per pass (k is cut into even passes, so k = 896 is one and 4864 five); the accumulators are parked
    /// between passes, exactly. A tile's two columns (64 bytes per step) stream well from L2: measured on 4864 x 896,
    /// 896 x 4864 and 896 x 896 at 512 tokens, passes of 256 steps (the columns in L1) were 3-25% slower than 900-5000,
    /// the parking and call overhead costing more than the L2 reads.
    /// </summary>
    internal const int DepthBlock = 1024;

    /// <summary>
    /// Row stride (floats) for the prefill input: rows k floats apart alias in the L1 and L2 sets when 4k bytes is a
    /// multiple of 4 KB (Qwen-1.8B's k = 2048, 8 KB), and a tile's 6 (8 on 512 bits) token streams then evict each other: measured at
    /// k = 2048, 128 tokens, 1 thread, the tile ran at 33-44 GFLOP/s with rows 2048 floats apart and 67-86 with
    /// 2064. The stride is rounded to whole cache lines and moved until no two of a tile's rows share a set offset.
    /// </summary>
    public static int InputStride(int k)
    {
        int stride = (k + 15) & ~15;
        while (Aliases(stride)) stride += 16;
        return stride;

        static bool Aliases(int stride)
        {
            for (int j = 1; j < Math.Max(TileTokens, WideTileTokens); j++)
                if ((long)j * stride * sizeof(float) % 4096 == 0) return true;
            return false;
        }
    }

    /// <summary>Floats of scratch <see cref="Prefill"/> needs for <paramref name="panels"/> panels of k values (on
    /// any path: the 512-bit layout of <see cref="PrefillWide"/> included).</summary>
    public static long ScratchFloats(int panels, int k) =>
        Math.Max((long)panels * PanelRows * k + (long)(panels + 1) * PanelRows * ParkedTokens + 2 * 16, WideScratchFloats(panels, k));

    /// <summary>One token: y[r] for the rows of panels [firstPanel, firstPanel + panels).</summary>
    public static void Decode(RepackedMatrix m, int firstPanel, int panels, float* x, float* y)
    {
        byte* data = m.Data + firstPanel * m.PanelStride;
        if (Vector256.IsHardwareAccelerated) Decode<Lanes256>(m.Type, data, m.PanelStride, panels, x, m.RowLength, y);
        else if (Vector128.IsHardwareAccelerated) Decode<Lanes128>(m.Type, data, m.PanelStride, panels, x, m.RowLength, y);
        else Reference(m.Type, data, m.PanelStride, panels, x, m.RowLength, 1, m.RowLength, y, panels * PanelRows);
    }

    /// <summary>
    /// n tokens (rows of x, k floats each, xStride floats apart: see <see cref="InputStride"/>): y[t * yStride + r] for
    /// the rows of panels [firstPanel, firstPanel + panels). scratch holds <see cref="ScratchFloats"/>(panels, k) floats.
    /// </summary>
    public static void Prefill(RepackedMatrix m, int firstPanel, int panels, float* x, int xStride, int n, float* y, long yStride, float* scratch)
    {
        byte* data = m.Data + firstPanel * m.PanelStride;
        if (Vector512.IsHardwareAccelerated) PrefillWide(m.Type, data, m.PanelStride, panels, x, xStride, n, m.RowLength, y, yStride, scratch);
        else if (Vector256.IsHardwareAccelerated) Prefill<Lanes256>(m.Type, data, m.PanelStride, panels, x, xStride, n, m.RowLength, y, yStride, scratch);
        else if (Vector128.IsHardwareAccelerated) Prefill<Lanes128>(m.Type, data, m.PanelStride, panels, x, xStride, n, m.RowLength, y, yStride, scratch);
        else Reference(m.Type, data, m.PanelStride, panels, x, xStride, n, m.RowLength, y, yStride);
    }

    internal static void Decode<TL>(GgmlType type, byte* data, long panelStride, int panels, float* x, int k, float* y)
        where TL : struct, IFloatLanes<TL>
    {
        switch (type)
        {
            case GgmlType.F32: Decode<TL, F32Rows>(data, panelStride, panels, x, k, y, sizeof(float)); return;
            case GgmlType.F16: Decode<TL, FiniteF16Rows>(data, panelStride, panels, x, k, y, sizeof(ushort)); return;
            case GgmlType.BF16: Decode<TL, BF16Rows>(data, panelStride, panels, x, k, y, sizeof(ushort)); return;
            default: throw new ArgumentException($"no float panel kernel for {type}", nameof(type));
        }
    }

    /// <summary>
    /// Six columns at a time (six sequential streams, six independent chains to hide the FMA latency), the rest one by
    /// one; each column's outputs are its Count rows.
    /// </summary>
    private static void Decode<TL, TF>(byte* data, long panelStride, int panels, float* x, int k, float* y, int elementBytes)
        where TL : struct, IFloatLanes<TL> where TF : struct, IRowFormat
    {
        int perPanel = PanelRows / TL.Count, columns = panels * perPanel;
        int c = 0;
        for (; c + 6 <= columns; c += 6)
        {
            Columns6<TL, TF>(Column(data, panelStride, c, perPanel, elementBytes), Column(data, panelStride, c + 1, perPanel, elementBytes),
                Column(data, panelStride, c + 2, perPanel, elementBytes), Column(data, panelStride, c + 3, perPanel, elementBytes),
                Column(data, panelStride, c + 4, perPanel, elementBytes), Column(data, panelStride, c + 5, perPanel, elementBytes),
                x, k, y + c * TL.Count);
        }
        for (; c < columns; c++) Column1<TL, TF>(Column(data, panelStride, c, perPanel, elementBytes), x, k, y + c * TL.Count);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static byte* Column(byte* data, long panelStride, int column, int perPanel, int elementBytes) =>
        data + column / perPanel * panelStride + column % perPanel * (PanelRows / perPanel) * elementBytes;

    private static void Columns6<TL, TF>(byte* c0, byte* c1, byte* c2, byte* c3, byte* c4, byte* c5, float* x, int k, float* y)
        where TL : struct, IFloatLanes<TL> where TF : struct, IRowFormat
    {
        TL a0 = TL.Zero, a1 = TL.Zero, a2 = TL.Zero, a3 = TL.Zero, a4 = TL.Zero, a5 = TL.Zero;
        for (int i = 0; i < k; i++)
        {
            var b = TL.Broadcast(x[i]);
            int at = i * PanelRows;
            a0 = TL.FusedMultiplyAdd(TF.Load<TL>(c0, at), b, a0);
            a1 = TL.FusedMultiplyAdd(TF.Load<TL>(c1, at), b, a1);
            a2 = TL.FusedMultiplyAdd(TF.Load<TL>(c2, at), b, a2);
            a3 = TL.FusedMultiplyAdd(TF.Load<TL>(c3, at), b, a3);
            a4 = TL.FusedMultiplyAdd(TF.Load<TL>(c4, at), b, a4);
            a5 = TL.FusedMultiplyAdd(TF.Load<TL>(c5, at), b, a5);
        }
        int n = TL.Count;
        TL.Store(a0, y); TL.Store(a1, y + n); TL.Store(a2, y + 2 * n); TL.Store(a3, y + 3 * n); TL.Store(a4, y + 4 * n); TL.Store(a5, y + 5 * n);
    }

    private static void Column1<TL, TF>(byte* c0, float* x, int k, float* y) where TL : struct, IFloatLanes<TL> where TF : struct, IRowFormat
    {
        TL a0 = TL.Zero;
        for (int i = 0; i < k; i++) a0 = TL.FusedMultiplyAdd(TF.Load<TL>(c0, i * PanelRows), TL.Broadcast(x[i]), a0);
        TL.Store(a0, y);
    }

    /// <summary>
    /// The panels are converted to float once (one contiguous run, so one vector conversion), then each chunk of
    /// tokens is swept pass by pass: for each pass of at most <see cref="DepthBlock"/> k steps, each pair of columns
    /// meets every token of the chunk, 6 at a time, the chunk's slice of x staying in L2.
    /// </summary>
    internal static void Prefill<TL>(GgmlType type, byte* data, long panelStride, int panels, float* x, int xStride, int n, int k, float* y, long yStride, float* scratch)
        where TL : struct, IFloatLanes<TL>
    {
        float* converted;
        float* acc;
        if (type == GgmlType.F32)
        {
            converted = (float*)data;
            acc = scratch;
        }
        else
        {
            converted = scratch;
            acc = scratch + (long)panels * PanelRows * k;
            long count = (long)panels * PanelRows * k;
            // Panels are contiguous: the group is one run of count values (at most int.MaxValue: a group is 64 rows).
            RowConvert.RowUnchecked(type, data, count * GgmlTypeInfo.BlockBytes(type) / GgmlTypeInfo.BlockSize(type), converted, (int)count);
        }
        // Parked accumulators: a column pair per [ParkedTokens][2][lanes]; an odd column count pads one column (the +1
        // panel).
        float* sink = acc + (long)(panels + 1) * PanelRows * ParkedTokens; // outputs of the padding column
        int lanes = TL.Count, perPanel = PanelRows / lanes, columns = panels * perPanel;
        long columnStride = (long)PanelRows * k; // floats from one converted panel to the next
        int passes = Math.Max(1, (k + DepthBlock - 1) / DepthBlock);
        int depth = (k + passes - 1) / passes;
        for (int t0 = 0; t0 < n; t0 += ChunkTokens)
        {
            int cols = Math.Min(ChunkTokens, n - t0);
            int tiles = cols / TileTokens;
            for (int from = 0; from < k; from += depth)
            {
                int to = Math.Min(k, from + depth);
                bool first = from == 0, last = to == k;
                for (int c = 0; c < columns; c += 2)
                {
                    float* w0 = converted + c / perPanel * columnStride + c % perPanel * lanes;
                    int c1 = Math.Min(c + 1, columns - 1); // an odd count repeats the last column into the sink
                    float* w1 = converted + c1 / perPanel * columnStride + c1 % perPanel * lanes;
                    float* parked = acc + (long)c * ParkedTokens * lanes; // [token][2 columns][lanes]
                    float* y0 = y + (long)t0 * yStride + c * lanes;
                    float* y1 = c1 == c ? null : y0 + lanes;
                    for (int t = 0; t < tiles; t++)
                    {
                        int tt = t * TileTokens;
                        Tile2x6<TL>(w0, w1, x + (long)(t0 + tt) * xStride, xStride, from, to, parked + tt * 2 * lanes, first,
                            last ? y0 + tt * yStride : null, y1 == null ? sink : y1 + tt * yStride, yStride, y1 == null ? 0 : yStride);
                    }
                    if (cols > tiles * TileTokens && tiles > 0)
                    {
                        int tt = cols - TileTokens;
                        Tile2x6<TL>(w0, w1, x + (long)(t0 + tt) * xStride, xStride, from, to, parked + ChunkTokens * 2 * lanes, first,
                            last ? y0 + tt * yStride : null, y1 == null ? sink : y1 + tt * yStride, yStride, y1 == null ? 0 : yStride);
                        continue;
                    }
                    for (int tt = tiles * TileTokens; tt < cols; tt++)
                    {
                        Tile2x1<TL>(w0, w1, x + (long)(t0 + tt) * xStride, from, to, parked + tt * 2 * lanes, first,
                            last ? y0 + tt * yStride : null, y1 == null ? sink : y1 + tt * yStride);
                    }
                }
            }
        }
    }

    /// <summary>
    /// Columns w0 and w1 (converted, 8 floats per k step) against 6 tokens (rows of x, xStride apart) over k in [from, to). Accumulators come from
    /// and go to parked (12 vectors) unless first / last; on the last pass they are written to y0 and y1 (token c at
    /// c * yStride; y1 at c * y1Stride, which is 0 when y1 is the sink of a padding column).
    /// </summary>
    private static void Tile2x6<TL>(float* w0, float* w1, float* x, int xStride, int from, int to, float* parked, bool first, float* y0, float* y1, long yStride, long y1Stride)
        where TL : struct, IFloatLanes<TL>
    {
        if (typeof(TL) == typeof(Lanes256) && Fma.IsSupported)
        {
            Tile2x6Fma(w0, w1, x, xStride, from, to, parked, first, y0, y1, yStride, y1Stride);
            return;
        }
        float* x0 = x, x1 = x + xStride, x2 = x + 2 * xStride, x3 = x + 3 * xStride, x4 = x + 4 * xStride, x5 = x + 5 * xStride;
        int n = TL.Count;
        TL a00, a01, a10, a11, a20, a21, a30, a31, a40, a41, a50, a51;
        if (first) a00 = a01 = a10 = a11 = a20 = a21 = a30 = a31 = a40 = a41 = a50 = a51 = TL.Zero;
        else
        {
            a00 = TL.Load(parked); a01 = TL.Load(parked + n); a10 = TL.Load(parked + 2 * n); a11 = TL.Load(parked + 3 * n);
            a20 = TL.Load(parked + 4 * n); a21 = TL.Load(parked + 5 * n); a30 = TL.Load(parked + 6 * n); a31 = TL.Load(parked + 7 * n);
            a40 = TL.Load(parked + 8 * n); a41 = TL.Load(parked + 9 * n); a50 = TL.Load(parked + 10 * n); a51 = TL.Load(parked + 11 * n);
        }
        for (int i = from; i < to; i++)
        {
            var v0 = TL.Load(w0 + i * PanelRows); var v1 = TL.Load(w1 + i * PanelRows);
            var b = TL.Broadcast(x0[i]);
            a00 = TL.FusedMultiplyAdd(v0, b, a00); a01 = TL.FusedMultiplyAdd(v1, b, a01);
            b = TL.Broadcast(x1[i]);
            a10 = TL.FusedMultiplyAdd(v0, b, a10); a11 = TL.FusedMultiplyAdd(v1, b, a11);
            b = TL.Broadcast(x2[i]);
            a20 = TL.FusedMultiplyAdd(v0, b, a20); a21 = TL.FusedMultiplyAdd(v1, b, a21);
            b = TL.Broadcast(x3[i]);
            a30 = TL.FusedMultiplyAdd(v0, b, a30); a31 = TL.FusedMultiplyAdd(v1, b, a31);
            b = TL.Broadcast(x4[i]);
            a40 = TL.FusedMultiplyAdd(v0, b, a40); a41 = TL.FusedMultiplyAdd(v1, b, a41);
            b = TL.Broadcast(x5[i]);
            a50 = TL.FusedMultiplyAdd(v0, b, a50); a51 = TL.FusedMultiplyAdd(v1, b, a51);
        }
        if (y0 != null)
        {
            long s0 = yStride, s = y1Stride;
            TL.Store(a00, y0); TL.Store(a10, y0 + s0); TL.Store(a20, y0 + 2 * s0); TL.Store(a30, y0 + 3 * s0); TL.Store(a40, y0 + 4 * s0); TL.Store(a50, y0 + 5 * s0);
            TL.Store(a01, y1); TL.Store(a11, y1 + s); TL.Store(a21, y1 + 2 * s); TL.Store(a31, y1 + 3 * s); TL.Store(a41, y1 + 4 * s); TL.Store(a51, y1 + 5 * s);
            return;
        }
        TL.Store(a00, parked); TL.Store(a01, parked + n); TL.Store(a10, parked + 2 * n); TL.Store(a11, parked + 3 * n);
        TL.Store(a20, parked + 4 * n); TL.Store(a21, parked + 5 * n); TL.Store(a30, parked + 6 * n); TL.Store(a31, parked + 7 * n);
        TL.Store(a40, parked + 8 * n); TL.Store(a41, parked + 9 * n); TL.Store(a50, parked + 10 * n); TL.Store(a51, parked + 11 * n);
    }

    /// <summary>
    /// <see cref="Tile2x6{TL}"/> on Vector256 with FMA, written without the lane wrapper: through it the JIT turns every
    /// second FMA into the 213 form plus a register copy (7 extra instructions per 12 FMAs). Same operations in the same
    /// order, so the same bits.
    /// </summary>
    private static void Tile2x6Fma(float* w0, float* w1, float* x, int xStride, int from, int to, float* parked, bool first, float* y0, float* y1, long yStride, long y1Stride)
    {
        float* x0 = x, x1 = x + xStride, x2 = x + 2 * xStride, x3 = x + 3 * xStride, x4 = x + 4 * xStride, x5 = x + 5 * xStride;
        Vector256<float> a00, a01, a10, a11, a20, a21, a30, a31, a40, a41, a50, a51;
        if (first) a00 = a01 = a10 = a11 = a20 = a21 = a30 = a31 = a40 = a41 = a50 = a51 = Vector256<float>.Zero;
        else
        {
            a00 = Vector256.Load(parked); a01 = Vector256.Load(parked + 8); a10 = Vector256.Load(parked + 16); a11 = Vector256.Load(parked + 24);
            a20 = Vector256.Load(parked + 32); a21 = Vector256.Load(parked + 40); a30 = Vector256.Load(parked + 48); a31 = Vector256.Load(parked + 56);
            a40 = Vector256.Load(parked + 64); a41 = Vector256.Load(parked + 72); a50 = Vector256.Load(parked + 80); a51 = Vector256.Load(parked + 88);
        }
        float* p0 = w0 + from * PanelRows, p1 = w1 + from * PanelRows;
        for (int i = from; i < to; i++, p0 += PanelRows, p1 += PanelRows)
        {
            var v0 = Vector256.Load(p0); var v1 = Vector256.Load(p1);
            var b = Vector256.Create(x0[i]);
            a00 = Fma.MultiplyAdd(v0, b, a00); a01 = Fma.MultiplyAdd(v1, b, a01);
            b = Vector256.Create(x1[i]);
            a10 = Fma.MultiplyAdd(v0, b, a10); a11 = Fma.MultiplyAdd(v1, b, a11);
            b = Vector256.Create(x2[i]);
            a20 = Fma.MultiplyAdd(v0, b, a20); a21 = Fma.MultiplyAdd(v1, b, a21);
            b = Vector256.Create(x3[i]);
            a30 = Fma.MultiplyAdd(v0, b, a30); a31 = Fma.MultiplyAdd(v1, b, a31);
            b = Vector256.Create(x4[i]);
            a40 = Fma.MultiplyAdd(v0, b, a40); a41 = Fma.MultiplyAdd(v1, b, a41);
            b = Vector256.Create(x5[i]);
            a50 = Fma.MultiplyAdd(v0, b, a50); a51 = Fma.MultiplyAdd(v1, b, a51);
        }
        if (y0 != null)
        {
            a00.Store(y0); a10.Store(y0 + yStride); a20.Store(y0 + 2 * yStride); a30.Store(y0 + 3 * yStride); a40.Store(y0 + 4 * yStride); a50.Store(y0 + 5 * yStride);
            a01.Store(y1); a11.Store(y1 + y1Stride); a21.Store(y1 + 2 * y1Stride); a31.Store(y1 + 3 * y1Stride); a41.Store(y1 + 4 * y1Stride); a51.Store(y1 + 5 * y1Stride);
            return;
        }
        a00.Store(parked); a01.Store(parked + 8); a10.Store(parked + 16); a11.Store(parked + 24);
        a20.Store(parked + 32); a21.Store(parked + 40); a30.Store(parked + 48); a31.Store(parked + 56);
        a40.Store(parked + 64); a41.Store(parked + 72); a50.Store(parked + 80); a51.Store(parked + 88);
    }

    private static void Tile2x1<TL>(float* w0, float* w1, float* x, int from, int to, float* parked, bool first, float* y0, float* y1)
        where TL : struct, IFloatLanes<TL>
    {
        int n = TL.Count;
        TL a0 = first ? TL.Zero : TL.Load(parked), a1 = first ? TL.Zero : TL.Load(parked + n);
        for (int i = from; i < to; i++)
        {
            var b = TL.Broadcast(x[i]);
            a0 = TL.FusedMultiplyAdd(TL.Load(w0 + i * PanelRows), b, a0);
            a1 = TL.FusedMultiplyAdd(TL.Load(w1 + i * PanelRows), b, a1);
        }
        if (y0 != null) { TL.Store(a0, y0); TL.Store(a1, y1); return; }
        TL.Store(a0, parked); TL.Store(a1, parked + n);
    }

    /// <summary>
    /// The definition: each output a scalar fused chain over k in order, from the packed values converted exactly. Every
    /// kernel above must give these bits.
    /// </summary>
    internal static void Reference(GgmlType type, byte* data, long panelStride, int panels, float* x, long xStride, int n, int k, float* y, long yStride)
    {
        for (int p = 0; p < panels; p++)
            for (int r = 0; r < PanelRows; r++)
                for (int t = 0; t < n; t++)
                {
                    float acc = 0;
                    for (int i = 0; i < k; i++) acc = MathF.FusedMultiplyAdd(Value(type, data + p * panelStride, (long)i * PanelRows + r), x[t * xStride + i], acc);
                    y[t * yStride + p * PanelRows + r] = acc;
                }
    }

    /// <summary>Packed value <paramref name="at"/> of a panel, converted exactly (the reference's and the row read-back's view).</summary>
    internal static float Value(GgmlType type, byte* panel, long at) => type switch
    {
        GgmlType.F32 => ((float*)panel)[at],
        GgmlType.F16 => (float)BitConverter.UInt16BitsToHalf(((ushort*)panel)[at]),
        _ => BitConverter.Int32BitsToSingle(((ushort*)panel)[at] << 16),
    };
}
